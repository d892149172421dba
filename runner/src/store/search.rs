//! The adaptive search's record (`search_steps`): written by the controller each round,
//! read by `sweep status`, the dump and the report.
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use stuffed_model::protocol::{SearchDecision, SearchStep};

use super::{now, Db};

/// Reads a `search_steps` row (a JSON column that does not parse reads as null).
fn step_from_row(row: SqliteRow) -> sqlx::Result<SearchStep> {
    let json = |name: &str| -> sqlx::Result<Option<Value>> {
        let s: Option<String> = row.try_get(name)?;
        Ok(s.and_then(|s| serde_json::from_str(&s).ok()))
    };
    let decision: String = row.try_get("decision")?;
    let decision: SearchDecision = serde_json::from_str(&decision)
        .map_err(|e| sqlx::Error::ColumnDecode { index: "decision".into(), source: e.to_string().into() })?;
    Ok(SearchStep {
        sweep: row.try_get("sweep")?,
        cell: row.try_get("cell")?,
        round: row.try_get("round")?,
        probe: row.try_get("probe")?,
        value: json("value")?.unwrap_or(Value::Null),
        job_id: row.try_get("job_id")?,
        answer: row.try_get("answer")?,
        decision,
        lo: json("lo")?,
        hi: json("hi")?,
    })
}

impl Db {
    /// Records a cell's rounds as replayed: the cell's rows replaced by `steps` in one
    /// transaction (the replay is the whole history, so a changed spec leaves no stale round).
    pub async fn record_search_cell(&self, sweep: &str, cell: &str, steps: &[SearchStep]) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM search_steps WHERE sweep = ? AND cell = ?").bind(sweep).bind(cell).execute(&mut *tx).await?;
        for s in steps {
            insert_step(&mut tx, s).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The search steps of a sweep: cells in the order they were written (the sweep's), each
    /// by round and probe.
    pub async fn search_steps(&self, sweep: &str) -> anyhow::Result<Vec<SearchStep>> {
        Ok(sqlx::query(
            "SELECT sweep, cell, round, probe, value, job_id, answer, decision, lo, hi FROM search_steps
             WHERE sweep = ? ORDER BY rowid",
        )
        .bind(sweep)
        .try_map(step_from_row)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// Inserts one step (the controller's record, or an imported dump's).
pub(super) async fn insert_step(tx: &mut sqlx::SqliteConnection, s: &SearchStep) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT OR REPLACE INTO search_steps (sweep, cell, round, probe, value, job_id, answer, decision, lo, hi, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&s.sweep)
    .bind(&s.cell)
    .bind(s.round)
    .bind(s.probe)
    .bind(s.value.to_string())
    .bind(&s.job_id)
    .bind(&s.answer)
    .bind(serde_json::to_string(&s.decision)?)
    .bind(s.lo.as_ref().map(Value::to_string))
    .bind(s.hi.as_ref().map(Value::to_string))
    .bind(now())
    .execute(tx)
    .await?;
    Ok(())
}
