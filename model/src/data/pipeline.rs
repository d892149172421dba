//! The cleaned corpus build (`stuffed corpus build --preset large`, `--clean`): text
//! extraction, quality filters, exact and near-duplicate removal, a document-level split that
//! holds out long documents, and the memory-mapped format of `corpus.rs` plus `docs.bin` (each
//! document's source and kind). Three stages, each restartable:
//! 1. files are grouped into shards of about `shard_bytes`; each shard is read, cleaned and
//!    signed in parallel (rayon) and written to `work/shard-NNNNN.{txt,meta,json}`, the .json
//!    last (atomic rename): a killed build resumes at the first shard without it;
//! 2. deduplication and the split run over the shard signatures in order (memory: about 150
//!    bytes per document, never the text);
//! 3. kept documents are tokenized shard by shard into `*.tmp` files renamed into place;
//!    `manifest.json` is written last, so a directory with a manifest is a complete corpus.
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::clean::{self, DocKind, Quality, Reject};
use crate::data::corpus::{self, BadRecords, InputSpec, Manifest, SourceSummary, SplitCounts};
use crate::data::dedup::{self, Dedup, Verdict, BANDS};
use crate::data::reader::{self, Layout, Record};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

pub const DOCS_FILE: &str = "docs.bin";
/// Bumped whenever extraction or filtering changes, so that stale shards are not reused.
const PIPELINE_VERSION: u32 = 2;
const WORK_DIR: &str = "work";

/// One source of a cleaned build: a package (or any directory or file) with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceSpec {
    pub name: String,
    pub version: String,
    pub license: String,
    /// Kind of files whose names do not tell (`.c` is code and `.rst` prose whatever this says).
    pub kind: DocKind,
    pub root: PathBuf,
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub sources: Vec<SourceSpec>,
    /// Text column of JSONL and Parquet inputs.
    pub field: String,
    pub quality: Quality,
    /// Longer texts are split at paragraph boundaries into documents of about this size.
    pub max_doc_bytes: usize,
    /// Documents shorter than this many tokens are dropped after tokenization.
    pub min_doc_tokens: usize,
    /// Fraction of documents held out for validation (by a hash of the text).
    pub val_fraction: f64,
    /// Long documents: at least this many tokens (estimated from bytes before tokenizing:
    /// 1 byte a token for `bytes`, 4 for BPE tokenizers).
    pub val_long_tokens: usize,
    /// Hold out (at least) this many long documents as well.
    pub val_long_docs: usize,
    /// Keep only documents of this kind.
    pub only: Option<DocKind>,
    /// One document in this many is also tokenized with GPT-2 to estimate the GPT-2 token
    /// count (1: all, exact; 0: none).
    pub gpt2_sample: u64,
    pub shard_bytes: u64,
    /// Stop with an error after this many new shards (tests: an interrupted build).
    pub stop_after_shards: Option<usize>,
}

/// Where a build stands, for a progress display.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub stage: &'static str,
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub tokens: u64,
}

/// Per-source figures of a cleaned build.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceReport {
    pub name: String,
    pub version: String,
    pub license: String,
    pub root: String,
    pub files: u64,
    pub bytes_read: u64,
    /// Documents that passed the filters (before deduplication).
    pub candidates: u64,
    pub rejected: BTreeMap<Reject, u64>,
    pub exact_duplicates: u64,
    pub near_duplicates: u64,
    /// Documents of the other kind under `only`, and documents under `min_doc_tokens`.
    pub excluded: u64,
    pub documents: u64,
    pub tokens: u64,
    pub prose_tokens: u64,
    pub code_tokens: u64,
    pub gpt2_tokens_estimate: u64,
    pub errors: Vec<String>,
}

/// The cleaning figures a manifest carries (`manifest.clean`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CleanReport {
    pub sources: Vec<SourceReport>,
    pub files: u64,
    pub bytes_read: u64,
    pub candidates: u64,
    pub exact_duplicates: u64,
    pub near_duplicates: u64,
    /// (exact + near duplicates) / candidates.
    pub duplicate_rate: f64,
    pub rejected: BTreeMap<Reject, u64>,
    pub kinds: BTreeMap<DocKind, SplitCounts>,
    pub prose_share: f64,
    pub gpt2_tokens: u64,
    /// `exact` when every document was tokenized with GPT-2, else `sampled 1/N`.
    pub gpt2_count: String,
    pub val_long_tokens: usize,
    /// Validation documents of at least `val_long_tokens` tokens.
    pub val_long_docs: u64,
    pub only: Option<DocKind>,
    pub max_doc_bytes: usize,
    pub min_doc_bytes: usize,
}

/// One document of a shard (fixed-size record in `shard-N.meta`).
#[derive(Debug, Clone, Copy)]
struct DocMeta {
    off: u64,
    len: u64,
    exact: u64,
    gpt2: u64,
    bands: [u64; BANDS],
    source: u32,
    kind: u32,
}

const META_BYTES: usize = 8 * (4 + BANDS) + 8;
const NO_GPT2: u64 = u64::MAX;

impl DocMeta {
    fn write(&self, out: &mut Vec<u8>) {
        for v in [self.off, self.len, self.exact, self.gpt2].iter().chain(self.bands.iter()) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.source.to_le_bytes());
        out.extend_from_slice(&self.kind.to_le_bytes());
    }
    fn read(b: &[u8]) -> DocMeta {
        let u = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let mut bands = [0u64; BANDS];
        for (k, v) in bands.iter_mut().enumerate() {
            *v = u(4 + k);
        }
        let t = 8 * (4 + BANDS);
        DocMeta {
            off: u(0),
            len: u(1),
            exact: u(2),
            gpt2: u(3),
            bands,
            source: u32::from_le_bytes(b[t..t + 4].try_into().expect("4 bytes")),
            kind: u32::from_le_bytes(b[t + 4..t + 8].try_into().expect("4 bytes")),
        }
    }
}

/// Per-source counts of one shard (`shard-N.json`, the shard's completion marker).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ShardStats {
    sources: BTreeMap<u32, SourceCounts>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SourceCounts {
    files: u64,
    bytes_read: u64,
    candidates: u64,
    rejected: BTreeMap<Reject, u64>,
    bad: BadRecords,
    errors: Vec<String>,
}

struct FileOut {
    source: u32,
    bytes_read: u64,
    docs: Vec<(String, DocKind)>,
    rejected: Vec<Reject>,
    bad: BadRecords,
    error: Option<String>,
}

fn read_file(path: &Path, spec: &SourceSpec, opts: &PipelineOptions, source: u32) -> FileOut {
    let mut out = FileOut { source, bytes_read: 0, docs: Vec::new(), rejected: Vec::new(), bad: BadRecords::default(), error: None };
    let name = path.to_string_lossy();
    let kind = clean::classify(&name, spec.kind);
    let texts: Vec<(String, bool)> = match reader::layout(&name) {
        Layout::Text => {
            let mut bytes = Vec::new();
            let r = reader::open(path).and_then(|mut r| r.read_to_end(&mut bytes).map_err(|e| Error::io(path, e)));
            if let Err(e) = r {
                out.error = Some(e.to_string());
                return out;
            }
            out.bytes_read = bytes.len() as u64;
            match reader::decode_text(bytes) {
                Some(t) => vec![(t, true)],
                None => {
                    out.rejected.push(Reject::Binary);
                    return out;
                }
            }
        }
        _ => match reader::records(path, &opts.field) {
            Err(e) => {
                out.error = Some(e.to_string());
                return out;
            }
            Ok(recs) => recs
                .into_iter()
                .filter_map(|r| match r {
                    Record::Text(t) => {
                        out.bytes_read += t.len() as u64;
                        Some((t, false))
                    }
                    Record::Bad(k, _) => {
                        match k {
                            "invalid_utf8" => out.bad.invalid_utf8 += 1,
                            "invalid_json" => out.bad.invalid_json += 1,
                            _ => out.bad.missing_field += 1,
                        }
                        None
                    }
                })
                .collect(),
        },
    };
    for (raw, is_file) in texts {
        let text = if is_file { clean::extract(&name, &raw) } else { clean::tidy(&raw) };
        if let Some(r) = clean::check(&name, &text, kind, &opts.quality) {
            out.rejected.push(r);
            continue;
        }
        for part in clean::split_long(&text, opts.max_doc_bytes) {
            if part.len() < opts.quality.min_bytes {
                out.rejected.push(Reject::Short);
            } else {
                out.docs.push((part.to_string(), kind));
            }
        }
    }
    out
}

/// The files of every source (sorted, skippable formats left out) with their sizes.
fn plan(opts: &PipelineOptions) -> Result<Vec<(u32, PathBuf, u64)>> {
    let mut files = Vec::new();
    for (i, s) in opts.sources.iter().enumerate() {
        let spec = InputSpec { path: s.root.clone(), include: s.include.clone(), exclude: s.exclude.clone() };
        for f in corpus::list_files(&spec)? {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if clean::skip_file(name) {
                continue;
            }
            let size = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
            files.push((i as u32, f, size));
        }
    }
    Ok(files)
}

fn shards(files: &[(u32, PathBuf, u64)], shard_bytes: u64) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut acc) = (0, 0u64);
    for (i, f) in files.iter().enumerate() {
        acc += f.2.max(1);
        if acc >= shard_bytes || i + 1 - start >= 4096 {
            out.push(start..i + 1);
            start = i + 1;
            acc = 0;
        }
    }
    if start < files.len() {
        out.push(start..files.len());
    }
    out
}

/// A fingerprint of everything stage 1 depends on: a work directory made with another one is
/// discarded.
fn fingerprint(opts: &PipelineOptions, files: &[(u32, PathBuf, u64)]) -> String {
    let mut h = format!(
        "v{PIPELINE_VERSION} {} {} {} {} {}\n",
        opts.field, opts.quality.min_bytes, opts.max_doc_bytes, opts.gpt2_sample, opts.shard_bytes
    );
    for s in &opts.sources {
        h.push_str(&format!("{s:?}\n"));
    }
    let mut x = dedup::hash_bytes(h.as_bytes());
    for (s, p, n) in files {
        x = dedup::hash_bytes(format!("{x} {s} {} {n}", p.display()).as_bytes());
    }
    format!("{x:016x}")
}

fn shard_path(work: &Path, i: usize, ext: &str) -> PathBuf {
    work.join(format!("shard-{i:05}.{ext}"))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Stage 1 for one shard.
fn clean_shard(work: &Path, i: usize, files: &[(u32, PathBuf, u64)], opts: &PipelineOptions, gpt2: Option<&Tokenizer>) -> Result<u64> {
    let outs: Vec<FileOut> = files.par_iter().map(|(s, p, _)| read_file(p, &opts.sources[*s as usize], opts, *s)).collect();
    // Signatures in parallel, then one sequential write in file order.
    let docs: Vec<(&str, DocKind, u32)> = outs.iter().flat_map(|o| o.docs.iter().map(move |(t, k)| (t.as_str(), *k, o.source))).collect();
    let sigs: Vec<(u64, [u64; BANDS], u64)> = docs
        .par_iter()
        .map(|(t, _, _)| {
            let exact = dedup::exact_hash(t);
            let g = match gpt2 {
                Some(tok) if opts.gpt2_sample > 0 && exact.is_multiple_of(opts.gpt2_sample) => tok.encode(t).len() as u64,
                _ => NO_GPT2,
            };
            (exact, dedup::bands(t), g)
        })
        .collect();
    let mut text = Vec::new();
    let mut meta = Vec::with_capacity(docs.len() * META_BYTES);
    for ((t, kind, source), (exact, bands, gpt2)) in docs.iter().zip(&sigs) {
        DocMeta {
            off: text.len() as u64,
            len: t.len() as u64,
            exact: *exact,
            gpt2: *gpt2,
            bands: *bands,
            source: *source,
            kind: kind.as_u8() as u32,
        }
        .write(&mut meta);
        text.extend_from_slice(t.as_bytes());
    }
    let mut stats = ShardStats::default();
    for o in &outs {
        let c = stats.sources.entry(o.source).or_default();
        c.files += 1;
        c.bytes_read += o.bytes_read;
        c.candidates += o.docs.len() as u64;
        for r in &o.rejected {
            *c.rejected.entry(*r).or_default() += 1;
        }
        c.bad.invalid_utf8 += o.bad.invalid_utf8;
        c.bad.invalid_json += o.bad.invalid_json;
        c.bad.missing_field += o.bad.missing_field;
        if let Some(e) = &o.error {
            if c.errors.len() < 5 {
                c.errors.push(e.clone());
            }
        }
    }
    write_atomic(&shard_path(work, i, "txt"), &text)?;
    write_atomic(&shard_path(work, i, "meta"), &meta)?;
    write_atomic(&shard_path(work, i, "json"), &serde_json::to_vec(&stats)?)?;
    Ok(text.len() as u64)
}

/// A kept document: where its text is and which split it goes to.
struct Kept {
    shard: u32,
    off: u64,
    len: u64,
    source: u32,
    kind: u8,
    val: bool,
}

/// Builds a cleaned corpus into `out` (stage files under `out/work`, removed at the end).
pub fn build(tok: &Tokenizer, opts: &PipelineOptions, out: &Path, progress: &(dyn Fn(Progress) + Sync)) -> Result<Manifest> {
    if !(0.0..1.0).contains(&opts.val_fraction) {
        return Err(Error::Data(format!("val_fraction must be in [0, 1), got {}", opts.val_fraction)));
    }
    let work = out.join(WORK_DIR);
    std::fs::create_dir_all(&work).map_err(|e| Error::io(&work, e))?;
    // Whatever happens next, `out` is not a complete corpus until the manifest is rewritten.
    let mpath = out.join(corpus::MANIFEST_FILE);
    if mpath.exists() {
        std::fs::remove_file(&mpath).map_err(|e| Error::io(&mpath, e))?;
    }
    let files = plan(opts)?;
    let fp = fingerprint(opts, &files);
    let fp_path = work.join("plan.txt");
    if std::fs::read_to_string(&fp_path).ok().as_deref() != Some(fp.as_str()) {
        std::fs::remove_dir_all(&work).map_err(|e| Error::io(&work, e))?;
        std::fs::create_dir_all(&work).map_err(|e| Error::io(&work, e))?;
        write_atomic(&fp_path, fp.as_bytes())?;
    }
    let plan = shards(&files, opts.shard_bytes);
    let gpt2 = match tok {
        Tokenizer::Gpt2(_) => None,
        _ if opts.gpt2_sample > 0 => Some(Tokenizer::from_spec("gpt2")?),
        _ => None,
    };
    let mut p =
        Progress { stage: "clean", files_total: files.len() as u64, bytes_total: files.iter().map(|f| f.2).sum(), ..Default::default() };
    let mut fresh = 0;
    for (i, r) in plan.iter().enumerate() {
        let batch = &files[r.clone()];
        if !shard_path(&work, i, "json").exists() {
            if opts.stop_after_shards == Some(fresh) {
                return Err(Error::Data(format!("build stopped after {fresh} shards (stop_after_shards)")));
            }
            clean_shard(&work, i, batch, opts, gpt2.as_ref())?;
            fresh += 1;
        }
        p.files_done += batch.len() as u64;
        p.bytes_done += batch.iter().map(|f| f.2).sum::<u64>();
        p.tokens += std::fs::metadata(shard_path(&work, i, "txt")).map(|m| m.len()).unwrap_or(0);
        progress(p);
    }

    let (kept, mut report) = select(&work, plan.len(), opts, tok)?;
    let m = write_tokens(tok, opts, out, &work, &kept, &mut report, progress)?;
    std::fs::remove_dir_all(&work).map_err(|e| Error::io(&work, e))?;
    Ok(m)
}

/// Stage 2: per-source counts, deduplication and the split.
fn select(work: &Path, n_shards: usize, opts: &PipelineOptions, tok: &Tokenizer) -> Result<(Vec<Kept>, CleanReport)> {
    let mut report = CleanReport {
        sources: opts
            .sources
            .iter()
            .map(|s| SourceReport {
                name: s.name.clone(),
                version: s.version.clone(),
                license: s.license.clone(),
                root: s.root.display().to_string(),
                ..Default::default()
            })
            .collect(),
        val_long_tokens: opts.val_long_tokens,
        only: opts.only,
        max_doc_bytes: opts.max_doc_bytes,
        min_doc_bytes: opts.quality.min_bytes,
        ..Default::default()
    };
    let mut gpt2_sample: Vec<(u64, u64)> = vec![(0, 0); opts.sources.len()];
    let mut dd = Dedup::default();
    let mut kept = Vec::new();
    let mut long: Vec<(u64, usize)> = Vec::new();
    let bytes_per_token = if matches!(tok, Tokenizer::Bytes) { 1 } else { 4 };
    for i in 0..n_shards {
        let sp = shard_path(work, i, "json");
        let stats: ShardStats = serde_json::from_slice(&std::fs::read(&sp).map_err(|e| Error::io(&sp, e))?)?;
        for (s, c) in stats.sources {
            let r = &mut report.sources[s as usize];
            r.files += c.files;
            r.bytes_read += c.bytes_read;
            r.candidates += c.candidates;
            for (k, v) in c.rejected {
                *r.rejected.entry(k).or_default() += v;
            }
            r.errors.extend(c.errors.into_iter().take(5usize.saturating_sub(r.errors.len())));
        }
        let mp = shard_path(work, i, "meta");
        let meta = std::fs::read(&mp).map_err(|e| Error::io(&mp, e))?;
        for d in meta.chunks_exact(META_BYTES).map(DocMeta::read) {
            let r = &mut report.sources[d.source as usize];
            if opts.only.is_some_and(|k| k.as_u8() as u32 != d.kind) {
                r.excluded += 1;
                continue;
            }
            match dd.check(d.exact, &d.bands) {
                Verdict::Exact => r.exact_duplicates += 1,
                Verdict::Near => r.near_duplicates += 1,
                Verdict::Unique => {
                    if d.gpt2 != NO_GPT2 {
                        let g = &mut gpt2_sample[d.source as usize];
                        g.0 += d.len;
                        g.1 += d.gpt2;
                    }
                    let h = dedup::hash_bytes(&d.exact.to_le_bytes());
                    let val = (h as f64 / u64::MAX as f64) < opts.val_fraction;
                    if d.len as usize >= opts.val_long_tokens * bytes_per_token {
                        long.push((h, kept.len()));
                    }
                    kept.push(Kept { shard: i as u32, off: d.off, len: d.len, source: d.source, kind: d.kind as u8, val });
                }
            }
        }
    }
    // The long documents with the smallest hashes are held out too (deterministic).
    long.sort_unstable();
    for &(_, k) in long.iter().take(opts.val_long_docs) {
        kept[k].val = true;
    }
    // GPT-2 tokens per 1e9 bytes, per source (the pooled ratio where a source had no sample);
    // write_tokens scales it by the bytes kept.
    let (all_b, all_g) = gpt2_sample.iter().fold((0u64, 0u64), |a, s| (a.0 + s.0, a.1 + s.1));
    let pooled = if all_b > 0 { all_g as f64 / all_b as f64 } else { 0.0 };
    for (r, (bytes, g)) in report.sources.iter_mut().zip(&gpt2_sample) {
        let ratio = if *bytes > 0 { *g as f64 / *bytes as f64 } else { pooled };
        r.gpt2_tokens_estimate = (ratio * 1e9) as u64;
    }
    Ok((kept, report))
}

/// Stage 3: tokens.bin (train documents, then validation documents), index.bin, docs.bin and
/// the manifest.
fn write_tokens(
    tok: &Tokenizer,
    opts: &PipelineOptions,
    out: &Path,
    work: &Path,
    kept: &[Kept],
    report: &mut CleanReport,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Manifest> {
    let wide = tok.vocab_size() > u16::MAX as i64 + 1;
    let tokens_path = out.join(corpus::TOKENS_FILE);
    let tmp_tokens = out.join("tokens.bin.tmp");
    let mut w = BufWriter::with_capacity(1 << 22, File::create(&tmp_tokens).map_err(|e| Error::io(&tmp_tokens, e))?);
    let mut lens: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    let mut doc_meta: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
    let mut kept_bytes = vec![0u64; opts.sources.len()];
    let mut kinds: BTreeMap<DocKind, SplitCounts> = BTreeMap::new();
    let total: u64 = kept.iter().map(|k| k.len).sum::<u64>();
    let mut p = Progress { stage: "tokenize", bytes_total: total, ..Default::default() };
    for (split, val) in [false, true].into_iter().enumerate() {
        let mut start = 0;
        while start < kept.len() {
            let shard = kept[start].shard;
            let end = start + kept[start..].iter().take_while(|k| k.shard == shard).count();
            let docs: Vec<&Kept> = kept[start..end].iter().filter(|k| k.val == val).collect();
            start = end;
            if docs.is_empty() {
                continue;
            }
            let tp = shard_path(work, shard as usize, "txt");
            let text = std::fs::read(&tp).map_err(|e| Error::io(&tp, e))?;
            let ids: Vec<Vec<u32>> = docs
                .par_iter()
                .map(|k| {
                    let t = std::str::from_utf8(&text[k.off as usize..(k.off + k.len) as usize]).unwrap_or("");
                    tok.encode(t)
                })
                .collect();
            for (k, ids) in docs.iter().zip(ids) {
                p.bytes_done += k.len;
                let r = &mut report.sources[k.source as usize];
                if ids.len() < opts.min_doc_tokens.max(1) {
                    r.excluded += 1;
                    continue;
                }
                corpus::write_ids(&mut w, &ids, wide).map_err(|e| Error::io(&tmp_tokens, e))?;
                let n = ids.len() as u64;
                lens[split].push(n);
                doc_meta[split].push(k.source | (k.kind as u32) << 16);
                kept_bytes[k.source as usize] += k.len;
                r.documents += 1;
                r.tokens += n;
                let kind = DocKind::from_u8(k.kind).unwrap_or(DocKind::Code);
                match kind {
                    DocKind::Prose => r.prose_tokens += n,
                    DocKind::Code => r.code_tokens += n,
                }
                let c = kinds.entry(kind).or_insert(SplitCounts { documents: 0, tokens: 0 });
                c.documents += 1;
                c.tokens += n;
                if val && n as usize >= opts.val_long_tokens {
                    report.val_long_docs += 1;
                }
                p.tokens += n;
            }
            progress(p);
        }
    }
    w.flush().map_err(|e| Error::io(&tmp_tokens, e))?;
    drop(w);

    let index_path = out.join(corpus::INDEX_FILE);
    let mut index = Vec::with_capacity((lens[0].len() + lens[1].len() + 1) * 8);
    let mut acc = 0u64;
    index.extend_from_slice(&acc.to_le_bytes());
    for l in lens[0].iter().chain(&lens[1]) {
        acc += l;
        index.extend_from_slice(&acc.to_le_bytes());
    }
    let docs_path = out.join(DOCS_FILE);
    let docs_bytes: Vec<u8> = doc_meta[0].iter().chain(&doc_meta[1]).flat_map(|d| d.to_le_bytes()).collect();
    write_atomic(&docs_path, &docs_bytes)?;
    write_atomic(&index_path, &index)?;
    std::fs::rename(&tmp_tokens, &tokens_path).map_err(|e| Error::io(&tokens_path, e))?;

    // Totals.
    let gpt2_exact = matches!(tok, Tokenizer::Gpt2(_));
    for (r, b) in report.sources.iter_mut().zip(&kept_bytes) {
        r.gpt2_tokens_estimate = if gpt2_exact { r.tokens } else { (r.gpt2_tokens_estimate as f64 * *b as f64 / 1e9) as u64 };
    }
    let rs = &report.sources;
    report.files = rs.iter().map(|r| r.files).sum();
    report.bytes_read = rs.iter().map(|r| r.bytes_read).sum();
    report.candidates = rs.iter().map(|r| r.candidates).sum();
    report.exact_duplicates = rs.iter().map(|r| r.exact_duplicates).sum();
    report.near_duplicates = rs.iter().map(|r| r.near_duplicates).sum();
    report.duplicate_rate = (report.exact_duplicates + report.near_duplicates) as f64 / report.candidates.max(1) as f64;
    report.gpt2_tokens = rs.iter().map(|r| r.gpt2_tokens_estimate).sum();
    report.gpt2_count = if gpt2_exact {
        "exact".into()
    } else if opts.gpt2_sample == 0 {
        "none".into()
    } else {
        format!("sampled 1/{}", opts.gpt2_sample)
    };
    let mut rejected = BTreeMap::new();
    for r in rs {
        for (k, v) in &r.rejected {
            *rejected.entry(*k).or_default() += v;
        }
    }
    report.rejected = rejected;
    let all: u64 = kinds.values().map(|c| c.tokens).sum();
    report.prose_share = kinds.get(&DocKind::Prose).map(|c| c.tokens as f64 / all.max(1) as f64).unwrap_or(0.0);
    report.kinds = kinds;

    let sources = report
        .sources
        .iter()
        .map(|r| SourceSummary {
            path: format!("{} ({})", r.name, r.root),
            files: r.files,
            documents: r.documents,
            tokens: r.tokens,
            bad: BadRecords::default(),
            bad_examples: r.errors.clone(),
        })
        .collect();
    let count = |l: &Vec<u64>| SplitCounts { documents: l.len() as u64, tokens: l.iter().sum() };
    let mut checksums = BTreeMap::new();
    for f in [corpus::TOKENS_FILE, corpus::INDEX_FILE, DOCS_FILE] {
        checksums.insert(f.to_string(), corpus::sha256_file(&out.join(f))?);
    }
    let manifest = Manifest {
        format_version: 1,
        tokenizer: tok.spec(),
        vocab_size: tok.vocab_size(),
        eos: tok.eos(),
        dtype: if wide { "u32".into() } else { "u16".into() },
        field: opts.field.clone(),
        min_doc_tokens: opts.min_doc_tokens,
        val_fraction: opts.val_fraction,
        train: count(&lens[0]),
        val: count(&lens[1]),
        sources,
        bad: BadRecords::default(),
        checksums,
        clean: Some(report.clone()),
    };
    crate::checkpoint::write_json_atomic(&out.join(corpus::MANIFEST_FILE), &manifest)?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Corpus;

    /// Prose-like text that differs per seed (no two seeds near-duplicate).
    fn words(seed: u64, n: usize) -> String {
        let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
        let mut out = String::new();
        for i in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.push_str(["the", "river", "stone", "over", "quiet", "light", "house", "winter", "open", "carried"][(x % 10) as usize]);
            out.push_str(&format!("{} ", x % 97));
            if i % 12 == 11 {
                out.push_str(".\n");
            }
        }
        out
    }

    fn fixture(dir: &Path) -> PathBuf {
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("docs")).expect("mkdir");
        for i in 0..30 {
            std::fs::write(src.join("docs").join(format!("doc{i:02}.txt")), words(i, 150 + 40 * i as usize)).expect("write");
        }
        // An exact duplicate (whitespace changed), a near duplicate, and files the filters reject.
        std::fs::write(src.join("docs/copy.txt"), words(3, 270).replace(". \n", ".\n\n")).expect("write");
        let near: String =
            words(5, 350).split(' ').enumerate().map(|(i, w)| if i == 100 { "CHANGED" } else { w }).collect::<Vec<_>>().join(" ");
        std::fs::write(src.join("docs/near.txt"), near).expect("write");
        std::fs::write(src.join("docs/tiny.txt"), "too short").expect("write");
        std::fs::write(src.join("docs/gen.c"), format!("/* Automatically generated file. DO NOT EDIT. */\n{}", words(99, 200)))
            .expect("write");
        std::fs::write(src.join("docs/COPYING"), words(98, 200)).expect("write");
        std::fs::write(src.join("docs/page.html"), format!("<html><body><p>{}</p></body></html>", words(50, 300))).expect("write");
        std::fs::write(src.join("docs/prog.c"), format!("int main(void) {{\n{}\n}}\n", words(60, 300).replace('\n', ";\n")))
            .expect("write");
        src
    }

    fn opts(src: &Path) -> PipelineOptions {
        PipelineOptions {
            sources: vec![SourceSpec {
                name: "fixture".into(),
                version: "1".into(),
                license: "MIT".into(),
                kind: DocKind::Prose,
                root: src.to_path_buf(),
                include: vec![],
                exclude: vec![],
            }],
            field: "text".into(),
            quality: Quality { min_bytes: 64 },
            max_doc_bytes: 1 << 20,
            min_doc_tokens: 1,
            val_fraction: 0.1,
            val_long_tokens: 5000,
            val_long_docs: 3,
            only: None,
            gpt2_sample: 4,
            shard_bytes: 16 * 1024,
            stop_after_shards: None,
        }
    }

    fn texts(c: &Corpus) -> Vec<Vec<u32>> {
        (0..c.docs(crate::data::Split::Train).end + c.docs(crate::data::Split::Val).len())
            .map(|i| {
                let mut v = Vec::new();
                c.read(i, 0, c.doc_len(i), &mut v);
                v
            })
            .collect()
    }

    #[test]
    fn cleaned_build_filters_dedups_and_holds_out_long_documents() {
        let dir = tempfile::tempdir().expect("tmp");
        let src = fixture(dir.path());
        let out = dir.path().join("out");
        let m = build(&Tokenizer::Bytes, &opts(&src), &out, &|_| {}).expect("build");
        let c = m.clean.as_ref().expect("clean report");
        assert_eq!(c.exact_duplicates, 1, "{c:?}");
        assert_eq!(c.near_duplicates, 1, "{c:?}");
        assert_eq!(c.rejected.get(&Reject::Short), Some(&1));
        assert_eq!(c.rejected.get(&Reject::Generated), Some(&1));
        assert_eq!(c.rejected.get(&Reject::License), Some(&1));
        assert_eq!(m.train.documents + m.val.documents, 32, "30 documents + page.html + prog.c");
        assert!(c.val_long_docs >= 3, "{c:?}");
        assert!(c.kinds.contains_key(&DocKind::Code) && c.prose_share > 0.9);
        assert!(c.gpt2_tokens > 0);
        assert!(!out.join(WORK_DIR).exists(), "work files removed");
        let corpus = Corpus::open(&out).expect("open");
        let code = (0..32).filter(|&i| corpus.doc_source(i).map(|s| s.1) == Some(DocKind::Code)).count();
        assert_eq!(code, 1);
        // The HTML page lost its markup.
        assert!(!String::from_utf8(texts(&corpus).concat().iter().map(|&t| t as u8).collect()).expect("utf8").contains("<p>"));
        // --only prose drops the code.
        let mut o = opts(&src);
        o.only = Some(DocKind::Prose);
        let m2 = build(&Tokenizer::Bytes, &o, &dir.path().join("prose"), &|_| {}).expect("build");
        assert_eq!(m2.train.documents + m2.val.documents, 31);
    }

    #[test]
    fn restart_after_an_interrupted_build_gives_the_same_corpus() {
        let dir = tempfile::tempdir().expect("tmp");
        let src = fixture(dir.path());
        let whole = dir.path().join("whole");
        build(&Tokenizer::Bytes, &opts(&src), &whole, &|_| {}).expect("build");

        let out = dir.path().join("resumed");
        // A previous corpus in the directory must not survive as if complete.
        build(&Tokenizer::Bytes, &opts(&src), &out, &|_| {}).expect("first build");
        let mut o = opts(&src);
        o.stop_after_shards = Some(2);
        std::fs::write(src.join("docs/extra.txt"), words(77, 400)).expect("write");
        assert!(build(&Tokenizer::Bytes, &o, &out, &|_| {}).is_err());
        assert!(Corpus::open(&out).is_err(), "an interrupted build leaves no manifest");
        let shards_done = std::fs::read_dir(out.join(WORK_DIR))
            .expect("work")
            .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json")))
            .count();
        assert_eq!(shards_done, 2);
        // A half-written shard (killed mid-write) is redone.
        std::fs::write(out.join(WORK_DIR).join("shard-00002.txt.tmp"), b"garbage").expect("write");
        std::fs::remove_file(src.join("docs/extra.txt")).expect("rm");
        // The file list changed back: the plan matches `whole` again, so stale shards are dropped.
        build(&Tokenizer::Bytes, &opts(&src), &out, &|_| {}).expect("resumed build");
        assert_eq!(texts(&Corpus::open(&out).expect("open")), texts(&Corpus::open(&whole).expect("open")));

        // Interrupt and resume with the same plan: the shards already done are reused.
        let again = dir.path().join("again");
        let mut o = opts(&src);
        o.stop_after_shards = Some(1);
        assert!(build(&Tokenizer::Bytes, &o, &again, &|_| {}).is_err());
        build(&Tokenizer::Bytes, &opts(&src), &again, &|_| {}).expect("resumed");
        let a = Corpus::open(&again).expect("open");
        let w = Corpus::open(&whole).expect("open");
        assert_eq!(texts(&a), texts(&w));
        assert_eq!(a.manifest.checksums, w.manifest.checksums);
    }
}
