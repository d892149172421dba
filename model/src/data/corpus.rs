//! Token corpora on disk: `tokens.bin` (all documents back to back, little-endian u16 when the
//! vocabulary fits, else u32), `index.bin` (u64 document offsets, n_docs + 1 of them, train
//! documents first, then validation documents) and `manifest.json` (tokenizer, counts, split,
//! checksums, sources, bad records). Built in parallel from text files, directories and JSONL
//! (plain, .gz, .zst); opened memory-mapped.
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

pub const TOKENS_FILE: &str = "tokens.bin";
pub const INDEX_FILE: &str = "index.bin";
pub const MANIFEST_FILE: &str = "manifest.json";

/// One input of a corpus build: a file or a directory (walked recursively, symlinks skipped),
/// filtered by file-name suffixes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputSpec {
    pub path: PathBuf,
    /// Only files whose names end with one of these (empty: all).
    #[serde(default)]
    pub include: Vec<String>,
    /// Files whose names end with one of these are skipped.
    #[serde(default)]
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub inputs: Vec<InputSpec>,
    /// JSON field holding the text in JSONL inputs (`text`; RedPajama: `raw_content`).
    pub field: String,
    /// Documents shorter than this many tokens are dropped (counted as `short`).
    pub min_doc_tokens: usize,
    /// Fraction of documents held out for validation (chosen by a hash of the text).
    pub val_fraction: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BadRecords {
    pub invalid_utf8: u64,
    pub missing_field: u64,
    pub invalid_json: u64,
    pub empty: u64,
    pub short: u64,
}

impl BadRecords {
    pub fn total(&self) -> u64 {
        self.invalid_utf8 + self.missing_field + self.invalid_json + self.empty + self.short
    }
    fn add(&mut self, o: &BadRecords) {
        self.invalid_utf8 += o.invalid_utf8;
        self.missing_field += o.missing_field;
        self.invalid_json += o.invalid_json;
        self.empty += o.empty;
        self.short += o.short;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceSummary {
    pub path: String,
    pub files: u64,
    pub documents: u64,
    pub tokens: u64,
    pub bad: BadRecords,
    /// First few bad records, as `file[:line]: reason`.
    pub bad_examples: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitCounts {
    pub documents: u64,
    pub tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub tokenizer: String,
    pub vocab_size: i64,
    pub eos: u32,
    /// `u16` or `u32`.
    pub dtype: String,
    pub field: String,
    pub min_doc_tokens: usize,
    pub val_fraction: f64,
    pub train: SplitCounts,
    pub val: SplitCounts,
    pub sources: Vec<SourceSummary>,
    pub bad: BadRecords,
    /// sha256 of tokens.bin and index.bin (and docs.bin in cleaned builds).
    pub checksums: std::collections::BTreeMap<String, String>,
    /// Cleaning figures of a cleaned build (`pipeline.rs`): sources with versions and
    /// licenses, filters, duplicates, composition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean: Option<crate::data::pipeline::CleanReport>,
}

use crate::data::reader::Record;

fn file_records(path: &Path, field: &str) -> Result<Vec<Record>> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if crate::data::reader::layout(name) == crate::data::reader::Layout::Parquet {
        return crate::data::reader::parquet_records(path, field);
    }
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let reader: Box<dyn Read> = if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::new(file).map_err(|e| Error::io(path, e))?)
    } else {
        Box::new(file)
    };
    let base = name.trim_end_matches(".gz").trim_end_matches(".zst");
    let where_ = |line: Option<usize>| match line {
        Some(l) => format!("{}:{l}", path.display()),
        None => path.display().to_string(),
    };
    if base.ends_with(".jsonl") || base.ends_with(".ndjson") {
        let mut out = Vec::new();
        for (i, line) in BufReader::new(reader).split(b'\n').enumerate() {
            let line = line.map_err(|e| Error::io(path, e))?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let at = where_(Some(i + 1));
            out.push(crate::data::reader::jsonl_record(&line, field, at));
        }
        Ok(out)
    } else {
        let mut bytes = Vec::new();
        let mut reader = reader;
        reader.read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
        Ok(vec![match String::from_utf8(bytes) {
            Ok(s) => Record::Text(s),
            Err(_) => Record::Bad("invalid_utf8", where_(None)),
        }])
    }
}

/// The files of one input, sorted (deterministic corpora).
pub(crate) fn list_files(spec: &InputSpec) -> Result<Vec<PathBuf>> {
    let p = &spec.path;
    let meta = std::fs::metadata(p).map_err(|e| Error::io(p, e))?;
    let keep = |f: &Path| {
        let n = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        (spec.include.is_empty() || spec.include.iter().any(|s| n.ends_with(s.as_str())))
            && !spec.exclude.iter().any(|s| n.ends_with(s.as_str()))
    };
    if meta.is_file() {
        return Ok(vec![p.clone()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![p.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let ft = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() && keep(&entry.path()) {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn is_val(tokens: &[u32], val_fraction: f64) -> bool {
    let mut h = Sha256::new();
    for t in tokens.iter().take(4096) {
        h.update(t.to_le_bytes());
    }
    h.update((tokens.len() as u64).to_le_bytes());
    let d = h.finalize();
    let x = u64::from_le_bytes(d[..8].try_into().expect("8 bytes")) as f64 / u64::MAX as f64;
    x < val_fraction
}

/// Progress of a build: (files done, files total, tokens so far).
pub type Progress<'a> = &'a (dyn Fn(u64, u64, u64) + Sync);

/// Builds a corpus into `out` (created; an existing corpus there is replaced).
#[allow(clippy::type_complexity)]
pub fn build(tok: &Tokenizer, opts: &BuildOptions, out: &Path, progress: Progress) -> Result<Manifest> {
    if !(0.0..1.0).contains(&opts.val_fraction) {
        return Err(Error::Data(format!("val_fraction must be in [0, 1), got {}", opts.val_fraction)));
    }
    let mut files_per_source = Vec::new();
    for spec in &opts.inputs {
        files_per_source.push(list_files(spec)?);
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let total_files: u64 = files_per_source.iter().map(|f| f.len() as u64).sum();
    let wide = tok.vocab_size() > u16::MAX as i64 + 1;
    // Train and validation documents go to two temporary token files, joined at the end.
    let tmp_train = out.join("tokens.train.tmp");
    let tmp_val = out.join("tokens.val.tmp");
    let mut w_train = BufWriter::new(File::create(&tmp_train).map_err(|e| Error::io(&tmp_train, e))?);
    let mut w_val = BufWriter::new(File::create(&tmp_val).map_err(|e| Error::io(&tmp_val, e))?);
    let (mut train_lens, mut val_lens) = (Vec::<u64>::new(), Vec::<u64>::new());
    let mut sources = Vec::new();
    let mut all_bad = BadRecords::default();
    let mut done = 0u64;
    let mut tokens_so_far = 0u64;
    for (spec, files) in opts.inputs.iter().zip(&files_per_source) {
        let mut s = SourceSummary {
            path: spec.path.display().to_string(),
            files: files.len() as u64,
            documents: 0,
            tokens: 0,
            bad: BadRecords::default(),
            bad_examples: Vec::new(),
        };
        // Files in parallel batches; results consumed in order so the corpus is deterministic.
        for batch in files.chunks(64) {
            let results: Vec<Result<Vec<std::result::Result<Vec<u32>, (&'static str, String)>>>> = batch
                .par_iter()
                .map(|f| {
                    let recs = file_records(f, &opts.field)?;
                    Ok(recs
                        .into_par_iter()
                        .map(|r| match r {
                            Record::Bad(kind, at) => Err((kind, at)),
                            Record::Text(t) if t.trim().is_empty() => Err(("empty", f.display().to_string())),
                            Record::Text(t) => {
                                let ids = tok.encode(&t);
                                if ids.len() < opts.min_doc_tokens.max(1) {
                                    Err(("short", f.display().to_string()))
                                } else {
                                    Ok(ids)
                                }
                            }
                        })
                        .collect())
                })
                .collect();
            for r in results {
                for doc in r? {
                    match doc {
                        Ok(ids) => {
                            let (w, lens) =
                                if is_val(&ids, opts.val_fraction) { (&mut w_val, &mut val_lens) } else { (&mut w_train, &mut train_lens) };
                            write_ids(w, &ids, wide).map_err(|e| Error::io(out, e))?;
                            lens.push(ids.len() as u64);
                            s.documents += 1;
                            s.tokens += ids.len() as u64;
                            tokens_so_far += ids.len() as u64;
                        }
                        Err((kind, at)) => {
                            match kind {
                                "invalid_utf8" => s.bad.invalid_utf8 += 1,
                                "missing_field" => s.bad.missing_field += 1,
                                "invalid_json" => s.bad.invalid_json += 1,
                                "empty" => s.bad.empty += 1,
                                _ => s.bad.short += 1,
                            }
                            if s.bad_examples.len() < 5 {
                                s.bad_examples.push(format!("{at}: {kind}"));
                            }
                        }
                    }
                }
                done += 1;
                progress(done, total_files, tokens_so_far);
            }
        }
        all_bad.add(&s.bad);
        sources.push(s);
    }
    w_train.flush().map_err(|e| Error::io(&tmp_train, e))?;
    w_val.flush().map_err(|e| Error::io(&tmp_val, e))?;
    drop((w_train, w_val));

    // tokens.bin = train then val; index.bin = cumulative offsets.
    let tokens_path = out.join(TOKENS_FILE);
    {
        let mut dst = BufWriter::new(File::create(&tokens_path).map_err(|e| Error::io(&tokens_path, e))?);
        for t in [&tmp_train, &tmp_val] {
            let mut src = File::open(t).map_err(|e| Error::io(t, e))?;
            std::io::copy(&mut src, &mut dst).map_err(|e| Error::io(&tokens_path, e))?;
        }
        dst.flush().map_err(|e| Error::io(&tokens_path, e))?;
    }
    let _ = std::fs::remove_file(&tmp_train);
    let _ = std::fs::remove_file(&tmp_val);
    let index_path = out.join(INDEX_FILE);
    let mut offsets = Vec::with_capacity(train_lens.len() + val_lens.len() + 1);
    let mut acc = 0u64;
    offsets.push(0u64);
    for l in train_lens.iter().chain(&val_lens) {
        acc += l;
        offsets.push(acc);
    }
    let bytes: Vec<u8> = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
    std::fs::write(&index_path, &bytes).map_err(|e| Error::io(&index_path, e))?;

    let manifest = Manifest {
        format_version: 1,
        tokenizer: tok.spec(),
        vocab_size: tok.vocab_size(),
        eos: tok.eos(),
        dtype: if wide { "u32".into() } else { "u16".into() },
        field: opts.field.clone(),
        min_doc_tokens: opts.min_doc_tokens,
        val_fraction: opts.val_fraction,
        train: SplitCounts { documents: train_lens.len() as u64, tokens: train_lens.iter().sum() },
        val: SplitCounts { documents: val_lens.len() as u64, tokens: val_lens.iter().sum() },
        sources,
        bad: all_bad,
        clean: None,
        checksums: [(TOKENS_FILE.to_string(), sha256_file(&tokens_path)?), (INDEX_FILE.to_string(), sha256_file(&index_path)?)]
            .into_iter()
            .collect(),
    };
    crate::checkpoint::write_json_atomic(&out.join(MANIFEST_FILE), &manifest)?;
    Ok(manifest)
}

pub(crate) fn write_ids(w: &mut impl Write, ids: &[u32], wide: bool) -> std::io::Result<()> {
    if wide {
        let b: Vec<u8> = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
        w.write_all(&b)
    } else {
        let b: Vec<u8> = ids.iter().flat_map(|&i| (i as u16).to_le_bytes()).collect();
        w.write_all(&b)
    }
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Which documents of a corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
}

/// A built corpus, memory-mapped.
pub struct Corpus {
    pub dir: PathBuf,
    pub manifest: Manifest,
    tokens: memmap2::Mmap,
    offsets: Vec<u64>,
    wide: bool,
    /// Per document: source index | kind << 16 (`docs.bin`; cleaned builds only).
    doc_info: Option<Vec<u32>>,
}

impl std::fmt::Debug for Corpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Corpus({})", self.dir.display())
    }
}

impl Corpus {
    pub fn open(dir: &Path) -> Result<Corpus> {
        let mpath = dir.join(MANIFEST_FILE);
        if !mpath.exists() {
            return Err(Error::at(dir, "no corpus here (manifest.json missing): build one with `stuffed corpus build`"));
        }
        let text = std::fs::read_to_string(&mpath).map_err(|e| Error::io(&mpath, e))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| Error::at(&mpath, e.to_string()))?;
        let tpath = dir.join(TOKENS_FILE);
        let f = File::open(&tpath).map_err(|e| Error::io(&tpath, e))?;
        // Safety: the corpus files are written once by `build` and only read afterwards.
        let tokens = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| Error::io(&tpath, e))?;
        let ipath = dir.join(INDEX_FILE);
        let raw = std::fs::read(&ipath).map_err(|e| Error::io(&ipath, e))?;
        let offsets: Vec<u64> = raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
        let wide = manifest.dtype == "u32";
        let width = if wide { 4 } else { 2 };
        let n_docs = (manifest.train.documents + manifest.val.documents) as usize;
        if offsets.len() != n_docs + 1 || offsets.last().copied().unwrap_or(0) * width != tokens.len() as u64 {
            return Err(Error::at(dir, "corpus files are inconsistent (index, tokens and manifest disagree): rebuild it"));
        }
        let dpath = dir.join(crate::data::pipeline::DOCS_FILE);
        let doc_info = match std::fs::read(&dpath) {
            Ok(raw) => {
                let info: Vec<u32> = raw.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
                if info.len() != n_docs {
                    return Err(Error::at(dir, "corpus files are inconsistent (docs.bin and index disagree): rebuild it"));
                }
                Some(info)
            }
            Err(_) => None,
        };
        Ok(Corpus { dir: dir.to_path_buf(), manifest, tokens, offsets, wide, doc_info })
    }

    /// Document indices of a split.
    pub fn docs(&self, split: Split) -> std::ops::Range<usize> {
        let n_train = self.manifest.train.documents as usize;
        match split {
            Split::Train => 0..n_train,
            Split::Val => n_train..n_train + self.manifest.val.documents as usize,
        }
    }

    /// Source index (into `manifest.clean.sources`) and kind of document `i`, when the corpus
    /// records them (cleaned builds).
    pub fn doc_source(&self, i: usize) -> Option<(usize, crate::data::clean::DocKind)> {
        let v = *self.doc_info.as_ref()?.get(i)?;
        Some(((v & 0xFFFF) as usize, crate::data::clean::DocKind::from_u8((v >> 16) as u8)?))
    }

    pub fn doc_len(&self, i: usize) -> usize {
        (self.offsets[i + 1] - self.offsets[i]) as usize
    }

    /// Appends tokens `start..end` of document `i` to `out`.
    pub fn read(&self, i: usize, start: usize, end: usize, out: &mut Vec<u32>) {
        let base = self.offsets[i] as usize;
        let (a, b) = (base + start, base + end);
        if self.wide {
            out.extend(self.tokens[a * 4..b * 4].chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))));
        } else {
            out.extend(self.tokens[a * 2..b * 2].chunks_exact(2).map(|c| u16::from_le_bytes(c.try_into().expect("2 bytes")) as u32));
        }
    }

    pub fn eos(&self) -> u32 {
        self.manifest.eos
    }

    /// `prompts` held-out inputs of exactly `len` tokens each, from disjoint documents:
    /// validation documents of at least `min_doc_tokens` tokens (the training split when there
    /// is no validation split), longest first, dealt out in order; each prompt concatenates
    /// whole documents with EOS and cuts the last one at `len`; no document serves two prompts.
    /// Fails when the documents run out.
    pub fn val_prompts(&self, len: usize, prompts: usize, min_doc_tokens: usize) -> Result<EvalPrompts> {
        let mut docs: Vec<usize> = self.docs(Split::Val).collect();
        let mut split = Split::Val;
        if docs.is_empty() {
            docs = self.docs(Split::Train).collect();
            split = Split::Train;
        }
        docs.retain(|&d| self.doc_len(d) >= min_doc_tokens.max(1));
        docs.sort_by_key(|&d| (std::cmp::Reverse(self.doc_len(d)), d));
        let mut next = docs.iter();
        let mut out = Vec::with_capacity(prompts);
        let mut documents = 0;
        for k in 0..prompts {
            let mut p = Vec::with_capacity(len);
            while p.len() < len {
                let Some(&d) = next.next() else {
                    return Err(Error::at(
                        &self.dir,
                        format!(
                            "{} {split:?} documents of at least {min_doc_tokens} tokens fill only {k} of {prompts} disjoint prompts of {len} tokens",
                            docs.len()
                        ),
                    ));
                };
                let take = self.doc_len(d).min(len - p.len());
                self.read(d, 0, take, &mut p);
                if p.len() < len {
                    p.push(self.eos());
                }
                documents += 1;
            }
            out.push(p);
        }
        Ok(EvalPrompts { prompts: out, documents, split })
    }
}

/// Evaluation prompts with their provenance.
#[derive(Debug, Clone)]
pub struct EvalPrompts {
    pub prompts: Vec<Vec<u32>>,
    /// Distinct documents used (each in exactly one prompt).
    pub documents: usize,
    /// The split they came from (`Train` only when the corpus has no validation split).
    pub split: Split,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Five documents "aaaaaaaaaa" (10 bytes), "b" x 20, ..., "e" x 50, all in one split.
    fn corpus(dir: &Path) -> Corpus {
        let src = dir.join("src");
        std::fs::create_dir_all(&src).unwrap();
        for (i, c) in ['a', 'b', 'c', 'd', 'e'].iter().enumerate() {
            std::fs::write(src.join(format!("{c}.txt")), c.to_string().repeat(10 * (i + 1))).unwrap();
        }
        let opts = BuildOptions {
            inputs: vec![InputSpec { path: src, include: vec![], exclude: vec![] }],
            field: "text".into(),
            min_doc_tokens: 1,
            val_fraction: 0.0,
        };
        let out = dir.join("corpus");
        build(&Tokenizer::from_spec("bytes").unwrap(), &opts, &out, &|_, _, _| {}).unwrap();
        Corpus::open(&out).unwrap()
    }

    fn text(ids: &[u32]) -> String {
        ids.iter().map(|&t| if t == 256 { '|' } else { t as u8 as char }).collect()
    }

    #[test]
    fn val_prompts_use_disjoint_documents_longest_first() {
        let dir = tempfile::tempdir().unwrap();
        let c = corpus(dir.path());
        let p = c.val_prompts(25, 2, 20).unwrap();
        assert_eq!(p.prompts.iter().map(|p| text(p)).collect::<Vec<_>>(), ["e".repeat(25), "d".repeat(25)]);
        assert_eq!(p.documents, 2);
        let p = c.val_prompts(60, 2, 1).unwrap();
        assert_eq!(text(&p.prompts[0]), format!("{}|{}", "e".repeat(50), "d".repeat(9)));
        assert_eq!(text(&p.prompts[1]), format!("{}|{}|{}", "c".repeat(30), "b".repeat(20), "a".repeat(8)));
        assert_eq!(p.documents, 5);
    }

    #[test]
    fn val_prompts_apply_min_doc_tokens_and_fail_when_documents_run_out() {
        let dir = tempfile::tempdir().unwrap();
        let c = corpus(dir.path());
        // Only "d" and "e" have >= 40 tokens: two prompts of 30, not three.
        assert_eq!(c.val_prompts(30, 2, 40).unwrap().documents, 2);
        let err = c.val_prompts(30, 3, 40).unwrap_err().to_string();
        assert!(err.contains("2 Train documents of at least 40 tokens fill only 2 of 3"), "{err}");
    }
}
