//! Ingestion of worker events (docs/results-schema.md) into the database, idempotently: only
//! events with a sequence number above the job's `last_seq` are applied, all in one
//! transaction with the new `last_seq`; metric rows are keyed by (job, key, step) and
//! evaluations by (job, eval index), so a crash or a resume never duplicates a row.
use serde::Serialize;
use serde_json::Value;

use super::{now, Db};

#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestSummary {
    pub applied: usize,
    pub last_seq: i64,
    /// The `done` event, when one was applied.
    pub done: Option<Value>,
}

const TRAIN_METRICS: [&str; 6] = ["loss", "lr", "grad_norm", "tokens_per_s", "mem_gb", "tokens"];

impl Db {
    /// Applies the events newer than the job's last ingested sequence number.
    pub async fn ingest(&self, job_id: &str, events: &[Value]) -> anyhow::Result<IngestSummary> {
        let mut tx = self.pool.begin().await?;
        let (last, run_dir): (i64, String) = sqlx::query_as("SELECT last_seq, run_dir FROM jobs WHERE id = ?").bind(job_id).fetch_one(&mut *tx).await?;
        let mut sum = IngestSummary { last_seq: last, ..Default::default() };
        for ev in events {
            let Some(seq) = ev["seq"].as_i64() else { continue };
            if seq <= sum.last_seq {
                continue;
            }
            let step = ev["step"].as_i64();
            match ev["kind"].as_str().unwrap_or("") {
                "start" | "resume" => {
                    sqlx::query("UPDATE jobs SET total_steps = COALESCE(?, total_steps) WHERE id = ?")
                        .bind(ev["total_steps"].as_i64())
                        .bind(job_id)
                        .execute(&mut *tx)
                        .await?;
                    if let Some(ssd) = ev["ssd"].as_str() {
                        sqlx::query("UPDATE attempts SET ssd = ? WHERE id = (SELECT MAX(id) FROM attempts WHERE job_id = ?)")
                            .bind(ssd)
                            .bind(job_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                "train" => {
                    let step = step.unwrap_or(0);
                    for key in TRAIN_METRICS {
                        if let Some(v) = ev[key].as_f64() {
                            upsert_metric(&mut tx, job_id, key, step, v, seq).await?;
                        }
                    }
                    sqlx::query(
                        "UPDATE jobs SET step = ?, last_loss = ?, tokens_per_s = ?,
                           peak_mem_gb = MAX(COALESCE(peak_mem_gb, 0), COALESCE(?, 0)) WHERE id = ?",
                    )
                    .bind(step)
                    .bind(ev["loss"].as_f64())
                    .bind(ev["tokens_per_s"].as_f64())
                    .bind(ev["mem_gb"].as_f64())
                    .bind(job_id)
                    .execute(&mut *tx)
                    .await?;
                }
                "val" => {
                    if let (Some(s), Some(v)) = (step, ev["loss"].as_f64()) {
                        upsert_metric(&mut tx, job_id, "val_loss", s, v, seq).await?;
                    }
                }
                "checkpoint" => {
                    let path = format!("{}/{}", run_dir.trim_end_matches('/'), ev["path"].as_str().unwrap_or(""));
                    sqlx::query("INSERT OR REPLACE INTO artifacts (job_id, kind, path, step, created_at) VALUES (?, 'checkpoint', ?, ?, ?)")
                        .bind(job_id)
                        .bind(path)
                        .bind(step)
                        .bind(ev["time"].as_str().map(String::from).unwrap_or_else(now))
                        .execute(&mut *tx)
                        .await?;
                }
                "eval" => {
                    let r = &ev["result"];
                    sqlx::query("INSERT OR REPLACE INTO evals (job_id, eval_index, step, kind, params, result, seq) VALUES (?, ?, ?, ?, ?, ?, ?)")
                        .bind(job_id)
                        .bind(ev["eval_index"].as_i64().unwrap_or(0))
                        .bind(step.unwrap_or(0))
                        .bind(r["kind"].as_str().unwrap_or("unknown"))
                        .bind(r["params"].to_string())
                        .bind(r.to_string())
                        .bind(seq)
                        .execute(&mut *tx)
                        .await?;
                }
                "done" => sum.done = Some(ev.clone()),
                _ => {}
            }
            sum.applied += 1;
            sum.last_seq = seq;
        }
        sqlx::query("UPDATE jobs SET last_seq = ?, updated_at = ? WHERE id = ?").bind(sum.last_seq).bind(now()).bind(job_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(sum)
    }
}

async fn upsert_metric(tx: &mut sqlx::SqliteConnection, job: &str, key: &str, step: i64, value: f64, seq: i64) -> anyhow::Result<()> {
    sqlx::query("INSERT OR REPLACE INTO metrics (job_id, key, step, value, seq) VALUES (?, ?, ?, ?, ?)")
        .bind(job)
        .bind(key)
        .bind(step)
        .bind(value)
        .bind(seq)
        .execute(tx)
        .await?;
    Ok(())
}

/// Reads the complete JSON lines of an event file after byte `offset`; returns the events and
/// the offset just past the last complete line (a line still being written is left for later).
pub fn read_events(path: &std::path::Path, offset: u64) -> std::io::Result<(Vec<Value>, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    if len < offset {
        // The file was truncated (a torn last line dropped on reopen): start over; the sequence
        // numbers make the replay harmless.
        return read_events(path, 0);
    }
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let end = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let events = buf[..end]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
        .collect();
    Ok((events, offset + end as u64))
}
