//! Ingestion of worker events (docs/results-schema.md) into the database, idempotently: only
//! events with a sequence number above the job's `last_seq` are applied, all in one
//! transaction with the new `last_seq`; metric rows are keyed by (job, key, step) and
//! evaluations by (job, eval index, step), so a crash or a resume never duplicates a row.
use serde::Serialize;
use stuffed_model::protocol::{Done, Envelope, Event};

use super::{now, Db};

#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestSummary {
    pub applied: usize,
    pub last_seq: i64,
    /// The `done` event, when one was applied.
    pub done: Option<Done>,
}

impl Db {
    /// Applies the events newer than the job's last ingested sequence number.
    pub async fn ingest(&self, job_id: &str, events: &[Envelope]) -> anyhow::Result<IngestSummary> {
        let mut tx = self.pool.begin().await?;
        let (last, run_dir): (i64, String) =
            sqlx::query_as("SELECT last_seq, run_dir FROM jobs WHERE id = ?").bind(job_id).fetch_one(&mut *tx).await?;
        let mut sum = IngestSummary { last_seq: last, ..Default::default() };
        for ev in events {
            let seq = i64::try_from(ev.seq).unwrap_or(i64::MAX);
            if seq <= sum.last_seq {
                continue;
            }
            match &ev.event {
                Event::Start { total_steps, ssd, .. } | Event::Resume { total_steps, ssd, .. } => {
                    sqlx::query("UPDATE jobs SET total_steps = ? WHERE id = ?").bind(total_steps).bind(job_id).execute(&mut *tx).await?;
                    if let Some(ssd) = ssd {
                        sqlx::query("UPDATE attempts SET ssd = ? WHERE id = (SELECT MAX(id) FROM attempts WHERE job_id = ?)")
                            .bind(ssd)
                            .bind(job_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                Event::Train { step, tokens, loss, lr, grad_norm, tokens_per_s, mem_gb } => {
                    let metrics = [
                        ("loss", *loss),
                        ("lr", *lr),
                        ("grad_norm", *grad_norm),
                        ("tokens_per_s", *tokens_per_s),
                        ("mem_gb", *mem_gb),
                        ("tokens", *tokens as f64),
                    ];
                    for (key, v) in metrics.into_iter().filter(|(_, v)| v.is_finite()) {
                        upsert_metric(&mut tx, job_id, key, *step, v, seq).await?;
                    }
                    sqlx::query(
                        "UPDATE jobs SET step = ?, last_loss = ?, tokens_per_s = ?,
                           peak_mem_gb = MAX(COALESCE(peak_mem_gb, 0), COALESCE(?, 0)) WHERE id = ?",
                    )
                    .bind(step)
                    .bind(loss.is_finite().then_some(*loss))
                    .bind(tokens_per_s)
                    .bind(mem_gb)
                    .bind(job_id)
                    .execute(&mut *tx)
                    .await?;
                }
                Event::Val { step, loss, .. } => {
                    if loss.is_finite() {
                        upsert_metric(&mut tx, job_id, "val_loss", *step, *loss, seq).await?;
                    }
                }
                Event::Checkpoint { step, path, .. } => {
                    let path = format!("{}/{}", run_dir.trim_end_matches('/'), path);
                    sqlx::query(
                        "INSERT OR REPLACE INTO artifacts (job_id, kind, path, step, created_at) VALUES (?, 'checkpoint', ?, ?, ?)",
                    )
                    .bind(job_id)
                    .bind(path)
                    .bind(step)
                    .bind(&ev.time)
                    .execute(&mut *tx)
                    .await?;
                }
                Event::Eval { eval_index, step, tokens, result } => {
                    sqlx::query(
                        "INSERT OR REPLACE INTO evals (job_id, eval_index, step, kind, params, result, seq, tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    )
                    .bind(job_id)
                    .bind(eval_index)
                    .bind(step)
                    .bind(result.kind())
                    .bind(result.params_json().to_string())
                    .bind(serde_json::to_string(result)?)
                    .bind(seq)
                    .bind(tokens)
                    .execute(&mut *tx)
                    .await?;
                }
                Event::EarlyStop { step, .. } => set_stopped_early(&mut tx, job_id, *step).await?,
                Event::Done(d) => {
                    if let Some(step) = d.early_stop {
                        set_stopped_early(&mut tx, job_id, step).await?;
                    }
                    sum.done = Some(d.clone());
                }
                Event::Interrupted { .. } | Event::Diverged { .. } => {}
            }
            sum.applied += 1;
            sum.last_seq = seq;
        }
        sqlx::query("UPDATE jobs SET last_seq = ?, updated_at = ? WHERE id = ?")
            .bind(sum.last_seq)
            .bind(now())
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(sum)
    }
}

async fn set_stopped_early(tx: &mut sqlx::SqliteConnection, job: &str, step: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE jobs SET stopped_early = ? WHERE id = ?").bind(step).bind(job).execute(tx).await?;
    Ok(())
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

/// Reads the complete lines of an event file after byte `offset`; returns the events and the
/// offset just past the last complete line (a line still being written is left for later).
/// A line that is not an event of this protocol (a newer worker's kind, garbage) is skipped.
pub fn read_events(path: &std::path::Path, offset: u64) -> std::io::Result<(Vec<Envelope>, u64)> {
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
    let events = buf[..end].split(|&b| b == b'\n').filter(|l| !l.is_empty()).filter_map(|l| Envelope::parse(l).ok()).collect();
    Ok((events, offset + end as u64))
}

#[cfg(test)]
mod tests {
    use stuffed_model::protocol::criterion::Answer;
    use stuffed_model::protocol::eval::{EvalResult, LossResult};
    use stuffed_model::protocol::{Envelope, Event};

    use crate::store::{Db, NewJob};

    fn ev(seq: u64, event: Event) -> Envelope {
        Envelope::new(seq, event, "2026-12-01T00:00:00Z".into())
    }

    fn start(seq: u64) -> Envelope {
        let e = Event::Start {
            total_steps: 10,
            batch: 1,
            seq_len: 8,
            params: 1,
            state_size: 1,
            device: "cpu".into(),
            precision: "Float".into(),
            ssd: None,
        };
        ev(seq, e)
    }

    fn train(seq: u64, step: i64) -> Envelope {
        ev(seq, Event::Train { step, tokens: step * 8, loss: 2.0, lr: 1e-3, grad_norm: 1.0, tokens_per_s: 1.0, mem_gb: 0.0 })
    }

    async fn db_with_job() -> Db {
        let db = Db::open_memory().await.unwrap();
        db.upsert_sweep("s", "", "name: s\n", None, "local").await.unwrap();
        let (v, c) = (serde_json::json!({}), serde_json::json!({}));
        let j = NewJob {
            id: "j1",
            sweep: "s",
            label: "",
            varied: &v,
            position: 0,
            config: &c,
            state_size: 1,
            n_params: 1,
            train_len: 8,
            run_dir: "r/j1",
        };
        db.add_job(&j).await.unwrap();
        db
    }

    /// Security issue 25, item 4: a run directory that lost its event file mid-job. The retry's
    /// worker numbers its events above the last ingested one (`--seq-floor`), so they are all
    /// applied; a file that restarted at 1 would have been dropped, and the database must then
    /// never call the job complete.
    #[tokio::test]
    async fn a_restarted_event_file_is_ingested_above_the_floor_and_a_short_job_is_never_complete() {
        let db = db_with_job().await;
        let first: Vec<Envelope> = vec![start(1), train(2, 3), train(3, 4)];
        assert_eq!(db.ingest("j1", &first).await.unwrap().last_seq, 3);
        // The directory vanished: a new file from 1 is below the floor, nothing of it applies.
        let stale = vec![start(1), train(2, 10)];
        assert_eq!(db.ingest("j1", &stale).await.unwrap().applied, 0);
        let missing = db.incomplete("j1", 1).await.unwrap().expect("incomplete");
        assert!(missing.contains("step is 4 of 10"), "{missing}");
        // The retry numbered above the floor (EventLog::open_after(path, 3)): every event lands.
        let retry = vec![start(4), train(5, 10)];
        assert_eq!(db.ingest("j1", &retry).await.unwrap().applied, 2);
        let missing = db.incomplete("j1", 1).await.unwrap().expect("the evaluation is missing");
        assert!(missing.contains("0 of its 1 evaluations"), "{missing}");
        let result = EvalResult::Loss(LossResult::default());
        db.ingest("j1", &[ev(6, Event::Eval { eval_index: 0, step: 10, tokens: Some(80), result })]).await.unwrap();
        assert_eq!(db.incomplete("j1", 1).await.unwrap(), None);
    }

    /// Issue 19: evaluations during training keep one row per (job, index, step), with their
    /// tokens; `evals` reads the final ones; an early stop completes the job at its step.
    #[tokio::test]
    async fn evaluations_at_several_steps_are_kept_and_an_early_stop_completes_the_job_there() {
        let db = db_with_job().await;
        let eval = |seq, step| {
            let result = EvalResult::Loss(LossResult::default());
            ev(seq, Event::Eval { eval_index: 0, step, tokens: Some(step * 8), result })
        };
        db.ingest("j1", &[start(1), train(2, 2), eval(3, 2), train(4, 4), eval(5, 4), eval(6, 4)]).await.unwrap();
        let history = db.eval_history("j1").await.unwrap();
        assert_eq!(history.iter().map(|e| (e.step, e.tokens)).collect::<Vec<_>>(), [(2, Some(16)), (4, Some(32))]);
        assert_eq!(db.evals("j1").await.unwrap().iter().map(|e| e.step).collect::<Vec<_>>(), [4]);
        // Stopped early at step 4 of 10: complete, with its evaluation at that step.
        assert!(db.incomplete("j1", 1).await.unwrap().expect("not yet").contains("step is 4 of 10"));
        let stop = Event::EarlyStop { step: 4, tokens: 32, criterion: "ratio > 1.5".into(), answer: Answer::Yes };
        db.ingest("j1", &[ev(7, stop)]).await.unwrap();
        assert_eq!(db.incomplete("j1", 1).await.unwrap(), None);
        assert_eq!(db.job("j1").await.unwrap().stopped_early, Some(4));
    }
}
