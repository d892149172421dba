//! What `results import` checks before it loads a dump (a file from another machine, trusted
//! for nothing): it is read as a stream with a bounded decompressed size (a small gzip may
//! expand to gigabytes), its names are safe, its rows are consistent (no duplicate keys, no
//! reference to a job it does not hold: no raw "FOREIGN KEY constraint failed"), and it does not
//! silently overwrite different data already in the database. Paths inside it (run
//! directories, logs, artifacts) are provenance: stored as they are, never acted on.
use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};

use super::export::{DUMP_FORMAT, DUMP_VERSION, DUMP_VERSIONS};
use super::{job_from_row, JOB_COLUMNS};
use super::{Db, Dump, ImportSummary};
use crate::safety::{check_id, check_sweep_name, short};
use stuffed_model::protocol::{EvalResult, JobRecord, JobStatus};

/// The largest dump read, decompressed (1 GiB; the study's whole export is 3.5 MB).
pub const MAX_DUMP_BYTES: u64 = 1 << 30;

/// A reader that fails once more than `left` bytes came through it.
struct Bounded<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(std::io::Error::other(format!(
                "file too large: more than {} bytes decompressed, limit {}",
                self.limit, self.limit
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Parses a dump from `path` (gunzipped when it ends with `.gz`), streaming, refusing a file that
/// is not regular or that expands past `limit` bytes; a parts index (`FILE.parts.json`) is read
/// as the file its checked parts make.
pub fn read_dump(path: &Path, limit: u64) -> anyhow::Result<Dump> {
    if super::dump_parts::is_index(path) {
        let (bytes, file) = super::dump_parts::join(path, limit)?;
        return parse_dump(std::io::Cursor::new(bytes), file.ends_with(".gz"), limit, path);
    }
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_file() {
        bail!("{}: not a regular file (a device, a pipe or a directory): refusing to read it", path.display());
    }
    if meta.len() > limit {
        bail!("{}: file too large: {} bytes, limit {limit}", path.display(), meta.len());
    }
    let f = std::io::BufReader::new(std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?);
    parse_dump(f, path.extension().is_some_and(|e| e == "gz"), limit, path)
}

/// Parses a dump from `f` (gunzipped when `gz`), refusing more than `limit` bytes decompressed;
/// errors name `path`.
fn parse_dump(f: impl Read + 'static, gz: bool, limit: u64, path: &Path) -> anyhow::Result<Dump> {
    let inner: Box<dyn Read> = if gz { Box::new(flate2::read::GzDecoder::new(f)) } else { Box::new(f) };
    let reader = std::io::BufReader::new(Bounded { inner, left: limit, limit });
    serde_json::from_reader(reader).map_err(|e| {
        let io = e.io_error_kind().is_some();
        let what = if io { "cannot read it" } else { "not a stuffed results export" };
        anyhow::anyhow!("{}: {what}: {e}", path.display())
    })
}

/// Duplicates among `keys`, shown.
fn duplicates<T: Ord + std::fmt::Debug>(what: &str, keys: impl Iterator<Item = T>) -> anyhow::Result<()> {
    let mut seen = BTreeSet::new();
    for k in keys {
        if let Some(k) = seen.replace(k) {
            bail!("the dump holds {what} {k:?} twice: refusing to merge them silently");
        }
    }
    Ok(())
}

/// The dump's own consistency: format, safe names and ids, no duplicate keys, every row about
/// a job or sweep the dump holds.
pub fn check_dump(d: &Dump) -> anyhow::Result<()> {
    if d.format != DUMP_FORMAT {
        bail!("not a stuffed results export (format '{}', expected '{DUMP_FORMAT}')", short(&d.format));
    }
    if !DUMP_VERSIONS.contains(&d.version) {
        bail!("results export version {} is not supported (expected 1 to {DUMP_VERSION})", d.version);
    }
    for s in &d.sweeps {
        check_sweep_name(&s.name).map_err(|e| anyhow::anyhow!("the dump's sweep {e}"))?;
    }
    for j in &d.jobs {
        check_id(&j.id).map_err(|e| anyhow::anyhow!("the dump's job {e}"))?;
    }
    duplicates("the sweep", d.sweeps.iter().map(|s| s.name.as_str()))?;
    duplicates("the job", d.jobs.iter().map(|j| j.id.as_str()))?;
    duplicates("the sweep/job pair", d.sweep_jobs.iter().map(|s| (s.sweep.as_str(), s.job_id.as_str())))?;
    duplicates("the attempt (job, number)", d.attempts.iter().map(|a| (a.job_id.as_str(), a.number)))?;
    duplicates("the evaluation (job, index, step)", d.evals.iter().map(|e| (e.job_id.as_str(), e.eval_index, e.step)))?;
    for e in &d.evals {
        if e.step < 0 || e.tokens.is_some_and(|t| t < 0) {
            bail!("the dump's evaluation {} of job {:?} has a negative step or token count", e.eval_index, short(&e.job_id));
        }
        check_eval(e)?;
    }
    for j in &d.jobs {
        if let Some(s) = j.stopped_early {
            if j.status != JobStatus::Completed || s < 1 || j.total_steps.is_some_and(|t| s > t) {
                bail!(
                    "the dump's job {:?} stopped early at step {s}, which a {} job of {} steps cannot have",
                    short(&j.id),
                    j.status,
                    j.total_steps.map_or("?".into(), |t| t.to_string())
                );
            }
        }
    }
    let sweeps: BTreeSet<&str> = d.sweeps.iter().map(|s| s.name.as_str()).collect();
    let jobs: BTreeSet<&str> = d.jobs.iter().map(|j| j.id.as_str()).collect();
    let unknown_job = |what: &str, id: &str| -> anyhow::Result<()> {
        if jobs.contains(id) {
            Ok(())
        } else {
            bail!("the dump's {what} refers to job {:?}, which it does not hold", short(id))
        }
    };
    for sj in &d.sweep_jobs {
        if !sweeps.contains(sj.sweep.as_str()) {
            bail!("the dump lists job {:?} in sweep {:?}, which it does not hold", short(&sj.job_id), short(&sj.sweep));
        }
        unknown_job("sweep list", &sj.job_id)?;
    }
    for a in &d.attempts {
        unknown_job("attempt", &a.job_id)?;
    }
    for (job, ..) in &d.metrics {
        unknown_job("metric", job)?;
    }
    for e in &d.evals {
        unknown_job("evaluation", &e.job_id)?;
    }
    for (job, ..) in &d.artifacts {
        unknown_job("artifact", job)?;
    }
    check_search_steps(d, &sweeps, &jobs)
}

/// An evaluation of the dump is one the readers can read: its result parses as the protocol's
/// [`EvalResult`] of its `kind`, its parameters are an object.
fn check_eval(e: &super::export::EvalDump) -> anyhow::Result<()> {
    let at = || format!("the dump's evaluation {} of job {:?} (step {})", e.eval_index, short(&e.job_id), e.step);
    let r = EvalResult::from_value(&e.result).map_err(|err| anyhow::anyhow!("{}: {}", at(), short(&err.to_string())))?;
    if r.kind() != e.kind {
        bail!("{}: its kind is {:?} but its result is a {} result", at(), short(&e.kind), r.kind());
    }
    if !e.params.is_object() {
        bail!("{}: its parameters are not a JSON object", at());
    }
    Ok(())
}

/// Most search steps a dump may carry per sweep (cells x rounds x probes of any real search).
const MAX_SEARCH_STEPS: usize = 100_000;

/// The dump's search steps: about sweeps and jobs it holds, bounded, no duplicate keys.
fn check_search_steps(d: &Dump, sweeps: &BTreeSet<&str>, jobs: &BTreeSet<&str>) -> anyhow::Result<()> {
    if d.search_steps.len() > MAX_SEARCH_STEPS * d.sweeps.len().max(1) {
        bail!("the dump holds {} search steps, more than {MAX_SEARCH_STEPS} per sweep", d.search_steps.len());
    }
    duplicates(
        "the search step (sweep, cell, round, probe)",
        d.search_steps.iter().map(|s| (s.sweep.as_str(), s.cell.as_str(), s.round, s.probe)),
    )?;
    for s in &d.search_steps {
        if !sweeps.contains(s.sweep.as_str()) {
            bail!("the dump has search steps of sweep {:?}, which it does not hold", short(&s.sweep));
        }
        if s.cell.len() > 4096
            || !(0..=crate::sweep::search::MAX_VALUES as i64).contains(&s.round)
            || !(-1..crate::sweep::search::MAX_VALUES as i64).contains(&s.probe)
        {
            bail!("the dump's search step (cell {:?}, round {}, probe {}) is out of bounds", short(&s.cell), s.round, s.probe);
        }
        if let Some(id) = &s.job_id {
            if !jobs.contains(id.as_str()) {
                bail!("the dump's search step refers to job {:?}, which it does not hold", short(id));
            }
        }
    }
    Ok(())
}

impl Db {
    /// Jobs and sweeps of `d` already in this database with different data.
    pub async fn import_conflicts(&self, d: &Dump) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        for s in &d.sweeps {
            if let Some(have) = self.sweep(&s.name).await? {
                if serde_json::to_value(&have)? != serde_json::to_value(s)? {
                    out.push(format!("sweep {}", s.name));
                }
            }
        }
        for j in &d.jobs {
            let q = format!(
                "SELECT {JOB_COLUMNS} FROM jobs j JOIN sweep_jobs sj ON sj.rowid = (SELECT MIN(rowid) FROM sweep_jobs WHERE job_id = j.id) WHERE j.id = ?"
            );
            let have = sqlx::query(&q).bind(&j.id).try_map(job_from_row).fetch_optional(&self.pool).await?;
            if have.is_some_and(|h| !same_stored_job(&h, j)) {
                out.push(format!("job {}", j.id));
            }
        }
        Ok(out)
    }

    /// Checks a dump and loads it. Rows equal to the database's are no-ops (importing twice
    /// changes nothing); different data for an existing job or sweep is refused, listing the
    /// conflicts, unless `replace`.
    pub async fn import_checked(&self, d: &Dump, replace: bool) -> anyhow::Result<ImportSummary> {
        check_dump(d)?;
        let conflicts = self.import_conflicts(d).await?;
        if !conflicts.is_empty() && !replace {
            let n = conflicts.len();
            let shown: Vec<&str> = conflicts.iter().take(10).map(String::as_str).collect();
            bail!(
                "{n} job(s) or sweep(s) of the dump are already in this database with different data ({}{}): nothing imported; --replace overwrites them",
                shown.join(", "),
                if n > 10 { ", ..." } else { "" }
            );
        }
        self.import(d).await
    }
}

/// Whether two job rows hold the same stored data (the columns of the `jobs` table a dump
/// carries; sweep membership, resolved sizes and bookkeeping are not compared).
fn same_stored_job(a: &JobRecord, b: &JobRecord) -> bool {
    (&a.id, &a.config, a.state_size, a.n_params, a.train_len, &a.run_dir, a.status, a.attempts)
        == (&b.id, &b.config, b.state_size, b.n_params, b.train_len, &b.run_dir, b.status, b.attempts)
        && (&a.error, &a.error_class, a.step, a.total_steps, a.last_loss, a.tokens_per_s, a.peak_mem_gb)
            == (&b.error, &b.error_class, b.step, b.total_steps, b.last_loss, b.tokens_per_s, b.peak_mem_gb)
        && (&a.created_at, &a.finished_at) == (&b.created_at, &b.finished_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dump() -> Dump {
        serde_json::from_value(json!({
            "format": DUMP_FORMAT, "version": 1,
            "sweeps": [{"name": "s", "description": "", "spec": "name: s\n", "source_path": null, "backend": "local", "created_at": "t", "updated_at": "t", "cancelled_at": null}],
            "jobs": [{"id": "abc1", "config": {}, "state_size": 1, "n_params": 1, "train_len": 1, "run_dir": "/elsewhere/abc1", "status": "completed", "attempts": 1,
                      "error": null, "error_class": null, "step": 1, "total_steps": 1, "last_loss": 1.0, "tokens_per_s": null, "peak_mem_gb": null, "created_at": "t", "finished_at": null}],
            "sweep_jobs": [{"sweep": "s", "job_id": "abc1", "label": "l", "varied": {}, "position": 0}],
            "attempts": [], "metrics": [["abc1", "loss", 1, 2.0]], "evals": [],
            "artifacts": [["abc1", "checkpoint", "../../../../etc/passwd", 1]]
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn hostile_dumps_are_refused_before_anything_is_written() {
        let db = Db::open_memory().await.unwrap();
        let mut bad = Vec::new();
        let mut d = dump();
        d.jobs.push(d.jobs[0].clone());
        bad.push((d, "job \"abc1\" twice"));
        let mut d = dump();
        d.sweeps[0].name = "..".into();
        bad.push((d, "not a valid sweep name"));
        let mut d = dump();
        d.jobs[0].id = "../x".into();
        bad.push((d, "is not a job id"));
        let mut d = dump();
        d.metrics.push(("nope".into(), "loss".into(), 1, 1.0));
        bad.push((d, "refers to job \"nope\""));
        let mut d = dump();
        d.sweep_jobs[0].sweep = "other".into();
        bad.push((d, "which it does not hold"));
        let step = |sweep: &str, job: Option<&str>, round: i64| stuffed_model::protocol::SearchStep {
            sweep: sweep.into(),
            cell: "c".into(),
            round,
            probe: 0,
            value: json!(64),
            job_id: job.map(str::to_string),
            answer: None,
            decision: stuffed_model::protocol::SearchDecision::AllYes,
            lo: None,
            hi: None,
        };
        let mut d = dump();
        d.search_steps.push(step("other", None, 0));
        bad.push((d, "search steps of sweep \"other\""));
        let mut d = dump();
        d.search_steps.push(step("s", Some("nope"), 0));
        bad.push((d, "search step refers to job \"nope\""));
        let mut d = dump();
        d.search_steps.push(step("s", Some("abc1"), 1 << 40));
        bad.push((d, "out of bounds"));
        let mut d = dump();
        d.search_steps.extend([step("s", None, 0), step("s", None, 0)]);
        bad.push((d, "twice"));
        for (d, want) in bad {
            let e = db.import_checked(&d, false).await.unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        assert!(db.sweep_names().await.unwrap().is_empty(), "nothing was written");
        // A clean dump imports, twice without conflict; different data needs --replace.
        db.import_checked(&dump(), false).await.unwrap();
        db.import_checked(&dump(), false).await.unwrap();
        let mut d = dump();
        d.jobs[0].status = stuffed_model::protocol::JobStatus::Failed;
        let e = db.import_checked(&d, false).await.unwrap_err().to_string();
        assert!(e.contains("job abc1") && e.contains("--replace"), "{e}");
        db.import_checked(&d, true).await.unwrap();
    }

    /// The version-1 fixture (JSON columns as text), as committed.
    pub(crate) fn fixture_v1() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/dump-v1.json")
    }

    #[tokio::test]
    async fn a_version_1_dump_imports_and_dumps_again_with_objects() {
        let mut old = read_dump(&fixture_v1(), MAX_DUMP_BYTES).unwrap();
        old.evals.sort_by(|a, b| (&a.job_id, a.eval_index, a.step).cmp(&(&b.job_id, b.eval_index, b.step)));
        assert_eq!((old.version, old.evals.len()), (1, 5));
        assert!(old.evals.iter().all(|e| e.result.is_object() && e.params.is_object()), "JSON text read as objects");
        let db = Db::open_memory().await.unwrap();
        db.import_checked(&old, false).await.unwrap();
        let new = db.dump(&[]).await.unwrap();
        assert_eq!(new.version, super::DUMP_VERSION);
        assert!(new.evals == old.evals, "the same evaluations, as objects");
        let text = serde_json::to_value(&new).unwrap();
        assert!(text["evals"][0]["result"]["buckets"].is_array() && text["evals"][0]["params"]["len"].is_number(), "{}", text["evals"][0]);
        // The new dump imports into the same database without conflict, and into a fresh one.
        db.import_checked(&new, false).await.unwrap();
        let fresh = Db::open_memory().await.unwrap();
        fresh.import_checked(&serde_json::from_value(text).unwrap(), false).await.unwrap();
        assert!(fresh.dump(&[]).await.unwrap().evals == old.evals);
    }

    #[tokio::test]
    async fn evaluations_that_no_reader_can_read_are_refused() {
        let db = Db::open_memory().await.unwrap();
        let eval = |kind: &str, result: serde_json::Value| json!({"job_id": "abc1", "eval_index": 0, "step": 1, "kind": kind, "params": {}, "result": result, "tokens": null});
        for (e, want) in [
            (eval("loss", json!("{not json")), "holds no JSON"),
            (eval("loss", json!({"kind": "vibes"})), "evaluation 0 of job \"abc1\" (step 1): malformed evaluation result"),
            (eval("passkey", json!({"kind": "loss"})), "its kind is \"passkey\" but its result is a loss result"),
            (
                json!({"job_id": "abc1", "eval_index": 0, "step": 1, "kind": "loss", "params": [1], "result": {"kind": "loss"}}),
                "not a JSON object",
            ),
        ] {
            let mut v = serde_json::to_value(dump()).unwrap();
            v["evals"] = json!([e]);
            let e = match serde_json::from_value::<Dump>(v) {
                Ok(d) => db.import_checked(&d, false).await.unwrap_err().to_string(),
                Err(e) => e.to_string(),
            };
            assert!(e.contains(want), "{want}: {e}");
        }
        let mut d = dump();
        d.version = 3;
        let e = db.import_checked(&d, false).await.unwrap_err().to_string();
        assert!(e.contains("version 3 is not supported (expected 1 to 2)"), "{e}");
        assert!(db.sweep_names().await.unwrap().is_empty(), "nothing was written");
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bomb.json.gz");
        let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&p).unwrap(), flate2::Compression::best());
        gz.write_all(b"{\"format\": \"").unwrap();
        let zeros = vec![b'0'; 1 << 20];
        for _ in 0..64 {
            gz.write_all(&zeros).unwrap();
        }
        gz.finish().unwrap();
        assert!(std::fs::metadata(&p).unwrap().len() < 1 << 20, "64 MiB compress to little");
        let e = read_dump(&p, 8 << 20).unwrap_err().to_string();
        assert!(e.contains("file too large") && e.contains("limit 8388608"), "{e}");
        let e = read_dump(Path::new("/dev/zero"), MAX_DUMP_BYTES).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
