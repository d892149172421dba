//! Corpora in transit: `pack` writes a corpus directory as zstd chunks of at most
//! `chunk_size` bytes (`PREFIX.0000.zst`, ...; each an independent zstd frame) and a
//! checksummed index (`PREFIX.index.json`: every chunk's and every corpus file's size and
//! sha256). `unpack` checks all chunks first (a missing or corrupt one is refused by name),
//! then reassembles the files and verifies them. The stream the chunks cut is the corpus files
//! back to back, in the index's order.
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::corpus::{sha256_file, INDEX_FILE, MANIFEST_FILE, TOKENS_FILE};
use crate::data::pipeline::DOCS_FILE;
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackedFile {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackIndex {
    pub format_version: u32,
    pub chunk_size: u64,
    /// Corpus files, in stream order.
    pub files: Vec<PackedFile>,
    /// Chunks (file names relative to the index), in stream order; `bytes` is compressed.
    pub chunks: Vec<PackedFile>,
    pub raw_bytes: u64,
    pub compressed_bytes: u64,
    /// Training + validation tokens of the corpus.
    pub tokens: u64,
}

/// Counts what goes through to the inner writer.
struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let k = self.inner.write(b)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn index_path(prefix: &Path) -> PathBuf {
    PathBuf::from(format!("{}.index.json", prefix.display()))
}

fn chunk_name(prefix: &Path, i: usize) -> String {
    format!("{}.{i:04}.zst", prefix.file_name().and_then(|n| n.to_str()).unwrap_or("corpus"))
}

/// Packs the corpus in `dir` into chunks `PREFIX.NNNN.zst` of at most `chunk_size` bytes.
pub fn pack(dir: &Path, prefix: &Path, chunk_size: u64, level: i32) -> Result<PackIndex> {
    if chunk_size < 64 * 1024 {
        return Err(Error::Data(format!("chunk size {chunk_size} is too small (at least 64 KiB)")));
    }
    let corpus = crate::data::Corpus::open(dir)?;
    let tokens = corpus.manifest.train.tokens + corpus.manifest.val.tokens;
    drop(corpus);
    let mut files = Vec::new();
    for name in [MANIFEST_FILE, INDEX_FILE, DOCS_FILE, TOKENS_FILE] {
        let p = dir.join(name);
        if p.exists() {
            let bytes = std::fs::metadata(&p).map_err(|e| Error::io(&p, e))?.len();
            files.push(PackedFile { name: name.to_string(), bytes, sha256: sha256_file(&p)? });
        }
    }
    let out_dir = prefix.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    // Input blocks small enough that one more block cannot overflow a chunk.
    let block = (chunk_size / 8).min(1 << 20) as usize;
    let mut stream: Box<dyn Read> = Box::new(std::io::empty());
    for f in &files {
        let p = dir.join(&f.name);
        let r = File::open(&p).map_err(|e| Error::io(&p, e))?;
        stream = Box::new(stream.chain(BufReader::with_capacity(1 << 20, r)));
    }
    let mut chunks = Vec::new();
    let mut buf = vec![0u8; block];
    let mut done = false;
    while !done {
        let name = chunk_name(prefix, chunks.len());
        let path = out_dir.join(&name);
        let f = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut enc =
            zstd::stream::write::Encoder::new(Counting { inner: BufWriter::new(f), n: 0 }, level).map_err(|e| Error::io(&path, e))?;
        let mut wrote = false;
        loop {
            let n = read_full(&mut stream, &mut buf).map_err(|e| Error::io(dir, e))?;
            if n == 0 {
                done = true;
                break;
            }
            wrote = true;
            enc.write_all(&buf[..n]).map_err(|e| Error::io(&path, e))?;
            enc.flush().map_err(|e| Error::io(&path, e))?;
            if enc.get_ref().n + block as u64 + (block as u64 / 8) + 4096 > chunk_size {
                break;
            }
        }
        let mut w = enc.finish().map_err(|e| Error::io(&path, e))?;
        w.flush().map_err(|e| Error::io(&path, e))?;
        drop(w);
        if !wrote && !chunks.is_empty() {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            break;
        }
        let bytes = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
        chunks.push(PackedFile { name, bytes, sha256: sha256_file(&path)? });
    }
    let index = PackIndex {
        format_version: 1,
        chunk_size,
        raw_bytes: files.iter().map(|f| f.bytes).sum(),
        compressed_bytes: chunks.iter().map(|c| c.bytes).sum(),
        files,
        chunks,
        tokens,
    };
    crate::checkpoint::write_json_atomic(&index_path(prefix), &index)?;
    Ok(index)
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Reads the index of a pack (`PREFIX.index.json`, or the index file itself).
pub fn read_index(prefix: &Path) -> Result<(PackIndex, PathBuf)> {
    let p = if prefix.to_string_lossy().ends_with(".index.json") { prefix.to_path_buf() } else { index_path(prefix) };
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
    let index: PackIndex = serde_json::from_str(&text).map_err(|e| Error::at(&p, e.to_string()))?;
    let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    Ok((index, dir))
}

/// Checks every chunk of a pack (present, right size and sha256) without unpacking.
pub fn verify(prefix: &Path) -> Result<PackIndex> {
    let (index, dir) = read_index(prefix)?;
    let missing: Vec<&str> = index.chunks.iter().filter(|c| !dir.join(&c.name).exists()).map(|c| c.name.as_str()).collect();
    if !missing.is_empty() {
        return Err(Error::at(&dir, format!("missing chunk(s): {}", missing.join(", "))));
    }
    for c in &index.chunks {
        let p = dir.join(&c.name);
        let bytes = std::fs::metadata(&p).map_err(|e| Error::io(&p, e))?.len();
        if bytes != c.bytes || sha256_file(&p)? != c.sha256 {
            return Err(Error::at(&p, format!("chunk {} is corrupt (size or sha256 differs from the index)", c.name)));
        }
    }
    Ok(index)
}

/// Reassembles a pack into `out` (created), after checking every chunk; each file is verified
/// against the index and renamed into place only then.
pub fn unpack(prefix: &Path, out: &Path) -> Result<PackIndex> {
    let index = verify(prefix)?;
    let (_, dir) = read_index(prefix)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut stream: Box<dyn Read> = Box::new(std::io::empty());
    for c in &index.chunks {
        let p = dir.join(&c.name);
        let f = File::open(&p).map_err(|e| Error::io(&p, e))?;
        stream = Box::new(stream.chain(zstd::stream::read::Decoder::new(f).map_err(|e| Error::io(&p, e))?));
    }
    // The manifest goes last: a directory with a manifest is a complete corpus.
    let mut order: Vec<&PackedFile> = index.files.iter().collect();
    let mut staged = Vec::new();
    for f in order.drain(..) {
        let tmp = out.join(format!("{}.unpack.tmp", f.name));
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(|e| Error::io(&tmp, e))?);
        let copied = std::io::copy(&mut (&mut stream).take(f.bytes), &mut w).map_err(|e| Error::io(&tmp, e))?;
        w.flush().map_err(|e| Error::io(&tmp, e))?;
        drop(w);
        if copied != f.bytes || sha256_file(&tmp)? != f.sha256 {
            return Err(Error::at(&tmp, format!("{} does not match the index after unpacking", f.name)));
        }
        staged.push((tmp, out.join(&f.name)));
    }
    staged.sort_by_key(|(_, dst)| dst.ends_with(MANIFEST_FILE));
    for (tmp, dst) in staged {
        std::fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))?;
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::corpus::{build, BuildOptions, InputSpec};
    use crate::tokenizer::Tokenizer;

    fn corpus(dir: &Path) -> PathBuf {
        let src = dir.join("src");
        std::fs::create_dir_all(&src).expect("mkdir");
        let mut x = 1u64;
        for i in 0..80 {
            // Poorly compressible text so the pack needs several small chunks.
            let t: String = (0..6000)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (b'a' + (x >> 59) as u8) as char
                })
                .collect();
            std::fs::write(src.join(format!("{i}.txt")), t).expect("write");
        }
        let out = dir.join("corpus");
        let opts = BuildOptions {
            inputs: vec![InputSpec { path: src, include: vec![], exclude: vec![] }],
            field: "text".into(),
            min_doc_tokens: 1,
            val_fraction: 0.1,
        };
        build(&Tokenizer::Bytes, &opts, &out, &|_, _, _| {}).expect("build");
        out
    }

    #[test]
    fn pack_unpack_round_trip_is_identical() {
        let dir = tempfile::tempdir().expect("tmp");
        let src = corpus(dir.path());
        let prefix = dir.path().join("packed/corpus");
        let idx = pack(&src, &prefix, 64 * 1024, 3).expect("pack");
        assert!(idx.chunks.len() > 2, "{} chunks", idx.chunks.len());
        for c in &idx.chunks {
            assert!(c.bytes <= 64 * 1024, "{} is {} bytes", c.name, c.bytes);
        }
        let out = dir.path().join("unpacked");
        unpack(&prefix, &out).expect("unpack");
        for f in [MANIFEST_FILE, INDEX_FILE, TOKENS_FILE] {
            assert_eq!(std::fs::read(src.join(f)).expect("src"), std::fs::read(out.join(f)).expect("out"), "{f}");
        }
        crate::data::Corpus::open(&out).expect("opens");
    }

    #[test]
    fn unpack_refuses_a_missing_or_corrupt_chunk_by_name() {
        let dir = tempfile::tempdir().expect("tmp");
        let src = corpus(dir.path());
        let prefix = dir.path().join("p/c");
        let idx = pack(&src, &prefix, 64 * 1024, 3).expect("pack");
        let second = dir.path().join("p").join(&idx.chunks[1].name);
        let saved = std::fs::read(&second).expect("read");
        let mut bad = saved.clone();
        bad[100] ^= 0xFF;
        std::fs::write(&second, &bad).expect("corrupt");
        let e = unpack(&prefix, &dir.path().join("o1")).expect_err("corrupt refused").to_string();
        assert!(e.contains(&idx.chunks[1].name) && e.contains("corrupt"), "{e}");
        std::fs::remove_file(&second).expect("rm");
        let e = unpack(&prefix, &dir.path().join("o2")).expect_err("missing refused").to_string();
        assert!(e.contains(&idx.chunks[1].name) && e.contains("missing"), "{e}");
        assert!(!dir.path().join("o2").join(MANIFEST_FILE).exists());
    }
}
