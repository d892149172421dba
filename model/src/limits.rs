//! Limits on what a config or a file may ask for, so that a hostile or careless value is a
//! clear configuration error instead of an overflow, a panic inside libtorch, or a process that
//! eats the machine's memory: the largest file read whole, the largest model sizes and
//! sequence lengths, and checked arithmetic for the sizes derived from them.
use std::io::Read;
use std::path::Path;

use crate::{Error, Result};

/// The largest config, sweep or CSV file read whole (16 MiB: configs are a few KB).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Upper bounds of model sizes, far above any model this study trains (the 2.7b preset has
/// d_model 2560, 64 layers, d_state 128): above them a value is a typo or an attack.
pub const MODEL_BOUNDS: &[(&str, i64)] = &[
    ("d_model", 1 << 16),
    ("n_layer", 1 << 10),
    ("vocab_size", 1 << 24),
    ("ssm_cfg.d_state", 1 << 16),
    ("ssm_cfg.d_conv", 1 << 10),
    ("ssm_cfg.expand", 1 << 6),
    ("ssm_cfg.headdim", 1 << 16),
    ("ssm_cfg.ngroups", 1 << 16),
    ("ssm_cfg.chunk_size", 1 << 16),
    ("pad_vocab_size_multiple", 1 << 16),
];

/// The largest parameter count a config may describe (10^12).
pub const MAX_PARAMS: i64 = 1_000_000_000_000;

/// The longest sequence anything is asked to handle: a training length, an evaluation or a
/// passkey prompt (2^24 = 16.8M tokens; the longest evaluation of the study is 1M).
pub const MAX_SEQ_LEN: i64 = 1 << 24;

/// The largest batch, prompt count or sample count.
pub const MAX_COUNT: i64 = 1 << 20;

/// The most tokens one optimizer step may take (batch x sequence length).
pub const MAX_TOKENS_PER_STEP: i64 = 1 << 28;

/// The most optimizer steps a job may ask for.
pub const MAX_STEPS: i64 = 1 << 40;

/// A file read whole, refused when it is not a regular file (`/dev/zero`, a FIFO, a directory)
/// or larger than `limit` bytes ("file too large: N bytes, limit M"). A file that grows while
/// it is read is cut at the limit and refused too.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::at(path, "not a regular file (a device, a pipe or a directory): refusing to read it"));
    }
    if meta.len() > limit {
        return Err(Error::at(path, format!("file too large: {} bytes, limit {limit}", meta.len())));
    }
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = Vec::with_capacity(meta.len() as usize);
    f.take(limit + 1).read_to_end(&mut buf).map_err(|e| Error::io(path, e))?;
    if buf.len() as u64 > limit {
        return Err(Error::at(path, format!("file too large: more than {limit} bytes (it grew while read), limit {limit}")));
    }
    Ok(buf)
}

/// `read_bounded` as UTF-8 text.
pub fn read_text_bounded(path: &Path, limit: u64) -> Result<String> {
    String::from_utf8(read_bounded(path, limit)?).map_err(|_| Error::at(path, "not UTF-8 text"))
}

/// A positive integer within its bound, as a config problem otherwise.
pub fn check_bound(key: &str, v: i64, max: i64) -> std::result::Result<(), String> {
    if v > max {
        Err(format!("{key} = {v} is larger than the limit {max}"))
    } else {
        Ok(())
    }
}

/// a * b * ..., None on overflow.
pub fn checked_product(xs: &[i64]) -> Option<i64> {
    xs.iter().try_fold(1i64, |acc, x| acc.checked_mul(*x))
}

/// Every value of a job config above its limit, as (key path, message): lengths, counts,
/// steps, and the tokens of one step (checked, never wrapped).
pub fn job_problems(job: &crate::train::JobConfig) -> Vec<(String, String)> {
    use crate::train::config::EvalSpec;
    let t = &job.train;
    let mut checks: Vec<(String, Option<i64>, i64)> = vec![
        ("train.seq_len".into(), Some(t.seq_len), MAX_SEQ_LEN),
        ("train.batch_size".into(), t.batch_size, MAX_COUNT),
        ("train.micro_batch_size".into(), t.micro_batch_size, MAX_COUNT),
        ("train.tokens_per_step".into(), t.tokens_per_step, MAX_TOKENS_PER_STEP),
        ("train.steps".into(), t.steps, MAX_STEPS),
        ("train.val_batches".into(), Some(t.val_batches), MAX_COUNT),
    ];
    for (i, e) in job.evals.iter().enumerate() {
        let k = |name: &str| format!("evals[{i}].{name}");
        match e {
            EvalSpec::Loss(l) => checks.extend([
                (k("len"), Some(l.len), MAX_SEQ_LEN),
                (k("chunk"), Some(l.chunk), MAX_SEQ_LEN),
                (k("prompts"), Some(l.prompts), MAX_COUNT),
            ]),
            EvalSpec::Passkey(p) => {
                checks.push((k("n"), Some(p.n), MAX_COUNT));
                checks.extend(
                    p.lengths.listed().iter().enumerate().map(|(j, l)| (format!("evals[{i}].lengths[{j}]"), Some(*l), MAX_SEQ_LEN)),
                );
            }
            EvalSpec::States(s) => checks.extend([(k("len"), Some(s.len), MAX_SEQ_LEN), (k("prompts"), Some(s.prompts), MAX_COUNT)]),
        }
    }
    let mut p: Vec<(String, String)> =
        checks.into_iter().filter_map(|(key, v, max)| v.and_then(|v| check_bound(&key, v, max).err()).map(|msg| (key, msg))).collect();
    if p.is_empty() {
        if let Some(b) = t.batch_size {
            match checked_product(&[b, t.seq_len]) {
                Some(n) if n <= MAX_TOKENS_PER_STEP => {}
                n => p.push((
                    "train.batch_size".into(),
                    format!(
                        "batch_size x seq_len = {} tokens per step, more than the limit {MAX_TOKENS_PER_STEP}",
                        n.map_or("overflowing".into(), |n| n.to_string())
                    ),
                )),
            }
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounded_and_regular_files_only() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("c.yaml");
        std::fs::write(&f, "a: 1\n").unwrap();
        assert_eq!(read_text_bounded(&f, 100).unwrap(), "a: 1\n");
        let e = read_bounded(&f, 3).unwrap_err().to_string();
        assert!(e.contains("file too large: 5 bytes, limit 3"), "{e}");
        for p in ["/dev/zero", "/dev/urandom"] {
            if Path::new(p).exists() {
                let e = read_bounded(Path::new(p), MAX_CONFIG_BYTES).unwrap_err().to_string();
                assert!(e.contains("not a regular file"), "{p}: {e}");
            }
        }
        assert!(read_bounded(d.path(), 100).unwrap_err().to_string().contains("not a regular file"));
        assert!(read_bounded(&d.path().join("missing"), 100).is_err());
    }

    #[test]
    fn products_overflow_to_none() {
        assert_eq!(checked_product(&[2, 3, 4]), Some(24));
        assert_eq!(checked_product(&[i64::MAX, 2]), None);
    }
}
