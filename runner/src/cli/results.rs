//! `stuffed results ...`: list, show, export (a wide table or a full, importable dump) and
//! import results, with filters on status, sweep and any config key.
use std::path::PathBuf;

use anyhow::Context;
use serde_json::{json, Value};

use super::common::{print_rows, render_rows, runtime, short_num, text_value, DbArgs, TableFormat};
use stuffed_model::protocol::EvalResult;

use crate::store::{long_columns, Cond, Db, Dump, JobRow, LongTable};
use crate::tabular::{self, Column, ColumnType};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// One line per job: status, sizes, progress, final loss, collapse verdict, T_recall.
    List(ListArgs),
    /// Everything about one job: config, attempts (host, GPU, commit, versions), metrics, evals.
    Show(ShowArgs),
    /// A wide table (one row per job: config keys, final metrics, eval summaries), a long
    /// table of metrics or evaluation points (CSV or Parquet), or a full dump that `results
    /// import` loads elsewhere.
    Export(ExportArgs),
    /// Load a dump written by `results export --format dump`.
    Import(ImportArgs),
    /// Split a dump file already written into parts (as `export --part-size` does), for a
    /// repository that refuses large files; `results import FILE.parts.json` reads them.
    Split(SplitArgs),
}

#[derive(Debug, clap::Args)]
pub struct SplitArgs {
    /// The dump file (it is replaced by its parts and their index).
    file: PathBuf,
    /// The largest part (`1900KiB`, `2MB`, bytes).
    #[arg(long, value_parser = super::corpus::parse_size)]
    part_size: u64,
}

impl SplitArgs {
    fn run(self) -> anyhow::Result<i32> {
        crate::store::read_dump(&self.file, crate::store::MAX_DUMP_BYTES)?;
        match crate::store::split_dump(&self.file, self.part_size)? {
            Some(index) => println!("split into parts of at most {} bytes: {}", self.part_size, index.display()),
            None => println!("{} fits in one part of {} bytes: left whole", self.file.display(), self.part_size),
        }
        Ok(0)
    }
}

impl Command {
    pub fn run(self) -> anyhow::Result<i32> {
        runtime()?.block_on(async {
            match self {
                Command::List(a) => a.run().await,
                Command::Show(a) => a.run().await,
                Command::Export(a) => a.run().await,
                Command::Import(a) => a.run().await,
                Command::Split(a) => a.run(),
            }
        })
    }
}

/// Job filters shared by list and export.
#[derive(Debug, Clone, clap::Args)]
pub struct Filters {
    /// Only jobs of this sweep (repeatable).
    #[arg(long)]
    sweep: Vec<String>,
    /// Only jobs with this status (pending, running, completed, failed, diverged, interrupted, cancelled).
    #[arg(long)]
    status: Option<String>,
    /// KEY OP VALUE on a column (status, label, state_size, train_len, ...) or a config path
    /// (model.d_state=64, train.seq_len>=512); OP is = != >= <= > < or ~ (contains). Repeatable.
    #[arg(long = "where", value_parser = parse_cond)]
    conds: Vec<Cond>,
}

fn parse_cond(s: &str) -> Result<Cond, String> {
    s.parse()
}

impl Filters {
    pub async fn jobs(&self, db: &Db) -> anyhow::Result<Vec<JobRow>> {
        let mut conds = self.conds.clone();
        if let Some(s) = &self.status {
            conds.push(Cond::eq("status", s));
        }
        let mut rows = Vec::new();
        if self.sweep.is_empty() {
            rows = db.jobs(&conds).await?;
        } else {
            for s in &self.sweep {
                if db.sweep(s).await?.is_none() {
                    anyhow::bail!("no sweep named '{s}' in this database");
                }
                let mut c = conds.clone();
                c.push(Cond::eq("sweep", s));
                rows.extend(db.jobs(&c).await?);
            }
        }
        Ok(rows)
    }
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    filters: Filters,
    #[arg(long, value_enum, default_value_t)]
    format: TableFormat,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Job id (or a unique prefix).
    job: String,
    /// text or json.
    #[arg(long, value_enum, default_value_t)]
    format: super::Format,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    filters: Filters,
    /// What to write (see the values); docs/results-schema.md has the columns and pandas and
    /// DuckDB examples.
    #[arg(long, value_enum, default_value_t)]
    format: ExportFormat,
    /// Write to this file instead of standard output: `.parquet` writes Parquet (csv, long and
    /// long-evals), `.gz` gzip-compresses, anything else is text.
    #[arg(long)]
    out: Option<PathBuf>,
    /// `--format dump` only: round every float of the evaluation results and metrics to this
    /// many significant digits (1-17), for dumps committed beside their reports (the measured
    /// losses carry far fewer meaningful digits than an f64 prints); a `.gz` dump with it is
    /// written without indentation.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=17))]
    digits: Option<u8>,
    /// `--format dump --out FILE` only: a dump larger than this (`1900KiB`, `2MB`, bytes) is
    /// written as parts of at most this size beside FILE (`FILE.part-000`, ...) with their sizes
    /// and sha256 in `FILE.parts.json`, which `results import` reads as the one file.
    #[arg(long, value_parser = super::corpus::parse_size)]
    part_size: Option<u64>,
}

/// What `results export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum ExportFormat {
    /// Wide rows (one per job: identity, every config key, final metrics, evaluation
    /// headlines) as an aligned text table.
    Table,
    /// Wide rows as CSV (Parquet with `--out FILE.parquet`).
    #[default]
    Csv,
    /// Wide rows as a JSON array of objects.
    Json,
    /// Tidy metrics: one row per job, key and step (`key`, `step`, `value`), with the job's
    /// sweep, label, state size, training length and varied keys as columns. CSV or Parquet.
    Long,
    /// Tidy evaluations: one row per job, evaluation, step and point (loss bucket, passkey
    /// cell, state statistic, `mean_loss`, `t_recall`), evaluations during training included.
    /// CSV or Parquet.
    LongEvals,
    /// Everything about whole sweeps as JSON, for `results import`.
    Dump,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    db: DbArgs,
    /// A dump written by `results export --format dump` (plain or .gz), or the `.parts.json`
    /// index of one written in parts (`--part-size`).
    file: PathBuf,
    /// Overwrite jobs and sweeps already in the database with different data (otherwise the
    /// import is refused, listing them).
    #[arg(long)]
    replace: bool,
    /// Refuse dumps larger than this many bytes once decompressed.
    #[arg(long, default_value_t = crate::store::MAX_DUMP_BYTES)]
    max_bytes: u64,
}

/// Collapse verdict and T_recall of a job from its stored evaluations without mitigation, and
/// whether a passkey evaluation ran (a null T_recall then means nothing was recalled).
async fn verdicts(db: &Db, job: &str) -> anyhow::Result<(Value, Value, bool)> {
    let mut collapsed: Option<bool> = None;
    let mut t_recall = Value::Null;
    let mut passkey = false;
    for e in db.evals(job).await? {
        if e.result.mitigation() != "none" {
            continue;
        }
        match &e.result {
            EvalResult::Loss(r) => {
                if let Some(c) = r.collapsed() {
                    collapsed = Some(c || collapsed.unwrap_or(false));
                }
            }
            EvalResult::Passkey(r) => {
                t_recall = json!(r.t_recall);
                passkey = true;
            }
            EvalResult::States(_) => {}
        }
    }
    Ok((json!(collapsed), t_recall, passkey))
}

/// The job table shown by `results list` and at the end of `sweep run`. In a text table a
/// passkey evaluation that recalled nothing shows T_recall `none` (null in CSV and JSON).
pub async fn list_rows(db: &Db, jobs: &[JobRow], format: TableFormat) -> anyhow::Result<(Vec<String>, Vec<Vec<Value>>)> {
    let header =
        ["id", "sweep", "label", "status", "state_size", "train_len", "step", "loss", "val_loss", "collapsed", "t_recall", "attempts"];
    let mut rows = Vec::new();
    for j in jobs {
        let (collapsed, mut t_recall, passkey) = verdicts(db, &j.id).await?;
        if format == TableFormat::Table && passkey && t_recall.is_null() {
            t_recall = json!("none");
        }
        let val = db.metrics(&j.id, "val_loss").await?.last().map(|v| json!(v.1)).unwrap_or(Value::Null);
        let step = match (j.stopped_early, j.step, j.total_steps) {
            (Some(s), _, Some(t)) => json!(format!("{s}/{t} (stopped early)")),
            (None, Some(s), Some(t)) => json!(format!("{s}/{t}")),
            (_, Some(s), None) => json!(s),
            _ => Value::Null,
        };
        rows.push(vec![
            json!(j.id),
            json!(j.sweep),
            json!(j.label),
            json!(j.status),
            json!(j.state_size),
            json!(j.train_len),
            step,
            j.last_loss.map_or(Value::Null, |l| json!(l)),
            val,
            collapsed,
            t_recall,
            json!(j.attempts),
        ]);
    }
    Ok((header.iter().map(|s| s.to_string()).collect(), rows))
}

/// Flattens a JSON object into dotted keys (lists of scalars kept as JSON text).
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, x, out);
            }
        }
        Value::Array(_) => out.push((prefix.to_string(), Value::String(v.to_string()))),
        other => out.push((prefix.to_string(), other.clone())),
    }
}

/// Adds an evaluation's headline columns to a wide row. A mitigation with parameters (often
/// templated per job, `sliding-window:r={train.seq_len}`) is named by its kind alone, with its
/// full value in a `.mitigation` column, so that every job fills the same columns; a job with
/// two of one kind keeps the full names for the second.
fn add_headline(row: &mut Vec<(String, Value)>, result: &EvalResult) {
    let headline = result.headline();
    let mitigation = result.mitigation();
    if let Some((kind, _)) = mitigation.split_once(':') {
        let short: Vec<(String, Value)> = headline.iter().map(|(k, v)| (k.replacen(mitigation, kind, 1), v.clone())).collect();
        if let Some((tag, _)) = short.first().and_then(|(k, _)| k.rsplit_once('.')) {
            let column = format!("{tag}.mitigation");
            if !row.iter().any(|(k, _)| *k == column) {
                row.push((column, json!(mitigation)));
                row.extend(short);
                return;
            }
        }
    }
    row.extend(headline);
}

/// One row per job: identity, every config key, final metrics, evaluation summaries.
pub async fn wide_rows(db: &Db, jobs: &[JobRow]) -> anyhow::Result<(Vec<String>, Vec<Vec<Value>>)> {
    let mut maps: Vec<Vec<(String, Value)>> = Vec::new();
    for j in jobs {
        let mut m = vec![
            ("id".to_string(), json!(j.id)),
            ("sweep".into(), json!(j.sweep)),
            ("label".into(), json!(j.label)),
            ("status".into(), json!(j.status)),
            ("state_size".into(), json!(j.state_size)),
            ("n_params".into(), json!(j.n_params)),
            ("train_len".into(), json!(j.train_len)),
            ("attempts".into(), json!(j.attempts)),
        ];
        if let Some(step) = j.stopped_early {
            m.push(("stopped_early".into(), json!(step)));
        }
        let mut cfg = j.config.clone();
        if let Some(o) = cfg.as_object_mut() {
            o.remove("evals");
            o.remove("name");
        }
        flatten("config", &cfg, &mut m);
        for (key, step, value) in db.latest_metrics(&j.id).await? {
            m.push((format!("final.{key}"), json!(value)));
            if key == "loss" {
                m.push(("final.step".into(), json!(step)));
            }
        }
        for e in db.evals(&j.id).await? {
            add_headline(&mut m, &e.result);
        }
        maps.push(m);
    }
    let mut header: Vec<String> = Vec::new();
    for m in &maps {
        for (k, _) in m {
            if !header.contains(k) {
                header.push(k.clone());
            }
        }
    }
    let rows = maps
        .iter()
        .map(|m| header.iter().map(|h| m.iter().find(|(k, _)| k == h).map(|(_, v)| v.clone()).unwrap_or(Value::Null)).collect())
        .collect();
    Ok((header, rows))
}

impl ListArgs {
    async fn run(self) -> anyhow::Result<i32> {
        let db = self.db.open_read_only().await?;
        let jobs = self.filters.jobs(&db).await?;
        let (h, rows) = list_rows(&db, &jobs, self.format).await?;
        print_rows(self.format, &h, &rows)?;
        Ok(0)
    }
}

impl ShowArgs {
    async fn run(self) -> anyhow::Result<i32> {
        let db = self.db.open_read_only().await?;
        let j = db.job(&self.job).await?;
        let attempts = db.attempts(&j.id).await?;
        let metrics = db.latest_metrics(&j.id).await?;
        let evals = db.evals(&j.id).await?;
        let history = db.eval_history(&j.id).await?;
        let during: Vec<_> = history.iter().filter(|h| !evals.iter().any(|e| e.eval_index == h.eval_index && e.step == h.step)).collect();
        let artifacts = db.artifacts(&j.id).await?;
        if self.format == super::Format::Json {
            let ev: Vec<&EvalResult> = evals.iter().map(|e| &e.result).collect();
            let dur: Vec<Value> = during
                .iter()
                .map(|e| json!({"eval_index": e.eval_index, "step": e.step, "tokens": e.tokens, "result": e.result}))
                .collect();
            super::common::print_json(&json!({"job": j, "config": j.config, "attempts": attempts,
                "latest_metrics": metrics, "evals": ev, "evals_during_training": dur, "artifacts": artifacts}))?;
            return Ok(0);
        }
        println!("job {}  ({}: {})", j.id, j.sweep, j.label);
        let status = match j.stopped_early {
            Some(step) => format!("{} (stopped early at step {step})", j.status),
            None => j.status.to_string(),
        };
        println!("status {status}  attempts {}  state size {}  params {}  train_len {}", j.attempts, j.state_size, j.n_params, j.train_len);
        if let Some(e) = &j.error {
            println!("error ({}): {e}", j.error_class.as_deref().unwrap_or("?"));
        }
        println!("run dir {}", j.run_dir);
        println!("\nresolved config:\n{}", stuffed_model::yaml::to_string(&j.config)?.trim_end());
        if !attempts.is_empty() {
            println!("\nattempts:");
        }
        for a in &attempts {
            println!(
                "  #{} {} {} on {}{} pid {} {} -> {} exit {} {}",
                a.number,
                a.status,
                a.backend,
                a.host.as_deref().unwrap_or("?"),
                a.gpu
                    .as_deref()
                    .map(|g| format!(" gpu {g}{}", a.gpu_name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()))
                    .unwrap_or_default(),
                a.pid.map_or("-".into(), |p| p.to_string()),
                a.started_at,
                a.ended_at.as_deref().unwrap_or("..."),
                a.exit_code.map_or("-".into(), |c| c.to_string()),
                a.error.as_deref().unwrap_or("")
            );
            println!(
                "     stuffed {} commit {}{} libtorch {} seed {} log {}",
                a.version.as_deref().unwrap_or("?"),
                a.git_commit.as_deref().unwrap_or("?"),
                if a.git_dirty == Some(1) { "-dirty" } else { "" },
                a.libtorch.as_deref().unwrap_or("?"),
                a.seed.map_or("-".into(), |s| s.to_string()),
                a.log_path.as_deref().unwrap_or("-")
            );
        }
        if !metrics.is_empty() {
            println!("\nlatest metrics:");
        }
        for (k, step, v) in &metrics {
            println!("  {k:<14} {:<14} (step {step})", short_num(*v));
        }
        let summary = |r: &EvalResult| -> String { r.headline().iter().map(|(k, v)| format!(" {k}={}", text_value(v))).collect() };
        if !evals.is_empty() {
            println!("\nevaluations:");
        }
        for e in &evals {
            println!("  #{} {}{}", e.eval_index, e.result.kind(), summary(&e.result));
        }
        if !during.is_empty() {
            println!("\nevaluations during training:");
            for e in &during {
                let tokens = e.tokens.map(|t| format!(" ({t} tokens)")).unwrap_or_default();
                println!("  #{} {} step {}{tokens}{}", e.eval_index, e.result.kind(), e.step, summary(&e.result));
            }
        }
        if !artifacts.is_empty() {
            println!("\nartifacts:");
            for (kind, path, step) in &artifacts {
                println!("  {kind} {path}{}", step.map(|s| format!(" (step {s})")).unwrap_or_default());
            }
        }
        Ok(0)
    }
}

impl ExportArgs {
    async fn run(self) -> anyhow::Result<i32> {
        let parquet = self.out.as_deref().is_some_and(|p| p.extension().is_some_and(|e| e == "parquet"));
        if parquet && !matches!(self.format, ExportFormat::Csv | ExportFormat::Long | ExportFormat::LongEvals) {
            anyhow::bail!(
                "--out {}: Parquet holds the csv, long and long-evals formats, not --format {}",
                self.out.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
                self.format_name()
            );
        }
        if self.digits.is_some() && self.format != ExportFormat::Dump {
            anyhow::bail!("--digits rounds a dump: it goes with --format dump, not --format {}", self.format_name());
        }
        if self.part_size.is_some() && (self.format != ExportFormat::Dump || self.out.is_none()) {
            anyhow::bail!("--part-size splits a dump file: it goes with --format dump and --out FILE");
        }
        let db = self.db.open_read_only().await?;
        let table = match self.format {
            ExportFormat::Dump => {
                if !self.filters.conds.is_empty() || self.filters.status.is_some() {
                    anyhow::bail!("--format dump exports whole sweeps: use --sweep, not --where/--status");
                }
                let mut dump = db.dump(&self.filters.sweep).await?;
                let compact = self.digits.is_some() && self.out.as_deref().is_some_and(|p| p.extension().is_some_and(|e| e == "gz"));
                if let Some(d) = self.digits {
                    dump.round_floats(d);
                }
                let text = if compact { serde_json::to_string(&dump)? } else { serde_json::to_string_pretty(&dump)? } + "\n";
                let code = self.write_text(text.as_bytes())?;
                if let (Some(size), Some(out)) = (self.part_size, &self.out) {
                    if let Some(index) = crate::store::split_dump(out, size)? {
                        eprintln!("split into parts of at most {size} bytes: {}", index.display());
                    }
                }
                return Ok(code);
            }
            ExportFormat::Long => LongTable::Metrics,
            ExportFormat::LongEvals => LongTable::Evals,
            ExportFormat::Table | ExportFormat::Csv | ExportFormat::Json => {
                let jobs = self.filters.jobs(&db).await?;
                let (h, rows) = wide_rows(&db, &jobs).await?;
                if parquet {
                    let columns: Vec<Column> = h
                        .iter()
                        .enumerate()
                        .map(|(i, name)| Column::new(name.clone(), ColumnType::infer(rows.iter().map(|r| &r[i]))))
                        .collect();
                    let mut sink = tabular::sink_for(self.out.as_deref(), &columns)?;
                    for r in &rows {
                        sink.write_row(r)?;
                    }
                    sink.finish()?;
                    return self.wrote();
                }
                let format = match self.format {
                    ExportFormat::Table => TableFormat::Table,
                    ExportFormat::Json => TableFormat::Json,
                    _ => TableFormat::Csv,
                };
                let mut buf = Vec::new();
                render_rows(format, &h, &rows, &mut buf)?;
                return self.write_text(&buf);
            }
        };
        let jobs = self.filters.jobs(&db).await?;
        let columns = long_columns(table, &jobs);
        let mut sink = tabular::sink_for(self.out.as_deref(), &columns)?;
        let n = db.long_rows(table, &jobs, sink.as_mut()).await?;
        sink.finish()?;
        if let Some(p) = &self.out {
            eprintln!("wrote {} ({n} rows)", p.display());
        }
        Ok(0)
    }

    /// The `--format` value as typed.
    fn format_name(&self) -> String {
        use clap::ValueEnum;
        self.format.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default()
    }

    /// Writes text to `--out` (gzip-compressed for `.gz`) or standard output.
    fn write_text(&self, bytes: &[u8]) -> anyhow::Result<i32> {
        match &self.out {
            Some(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                }
                write_maybe_gz(p, bytes).with_context(|| format!("writing {}", p.display()))?;
            }
            None => super::common::write_stdout(bytes)?,
        }
        self.wrote()
    }

    /// Names the file written, if any.
    fn wrote(&self) -> anyhow::Result<i32> {
        if let Some(p) = &self.out {
            eprintln!("wrote {}", p.display());
        }
        Ok(0)
    }
}

/// Writes `bytes`, gzip-compressed when the name ends with `.gz` (deterministically: no
/// timestamp or name in the gzip header).
fn write_maybe_gz(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if path.extension().is_some_and(|e| e == "gz") {
        let f = std::fs::File::create(path)?;
        let mut gz = flate2::GzBuilder::new().mtime(0).write(f, flate2::Compression::best());
        gz.write_all(bytes)?;
        gz.finish()?.sync_all()
    } else {
        std::fs::write(path, bytes)
    }
}

impl ImportArgs {
    async fn run(self) -> anyhow::Result<i32> {
        let dump: Dump = crate::store::read_dump(&self.file, self.max_bytes)?;
        crate::store::check_dump(&dump).with_context(|| format!("{}: refused", self.file.display()))?;
        let db = self.db.open().await?;
        let s = db.import_checked(&dump, self.replace).await.with_context(|| format!("importing {}", self.file.display()))?;
        println!(
            "imported {} sweep(s), {} job(s), {} metric rows, {} evaluations into {}",
            s.sweeps,
            s.jobs,
            s.metrics,
            s.evals,
            self.db.db.display()
        );
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passkey(mitigation: &str, t_recall: i64) -> EvalResult {
        let params = json!({"lengths": [256], "depths": [0.5], "n": 1, "seed": 1, "mitigation": mitigation, "precision": "fp32", "answer_tokens": 8});
        EvalResult::from_json(&json!({"kind": "passkey", "params": params, "cells": [], "t_recall": t_recall}).to_string()).unwrap()
    }

    fn keys(row: &[(String, Value)]) -> Vec<&str> {
        row.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn a_templated_mitigation_fills_one_column_of_the_export() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        add_headline(&mut a, &passkey("sliding-window:r=64", 64));
        add_headline(&mut b, &passkey("sliding-window:r=128", 128));
        for row in [&a, &b] {
            assert_eq!(keys(row), ["passkey[sliding-window].mitigation", "passkey[sliding-window].t_recall"]);
        }
        assert_eq!(b[0].1, "sliding-window:r=128");
        assert_eq!(b[1].1, 128);
        // A second of the same kind in one job keeps its full name; plain mitigations are as before.
        add_headline(&mut a, &passkey("sliding-window:r=32", 32));
        add_headline(&mut a, &passkey("rri", 16));
        add_headline(&mut a, &passkey("none", 8));
        assert_eq!(&keys(&a)[2..], ["passkey[sliding-window:r=32].t_recall", "passkey[rri].t_recall", "passkey.t_recall"]);
    }
}
