//! Read-only queries behind the web dashboard (`stuffed serve`): latest attempts of a sweep's
//! jobs, id-prefix lookup, metric series of a whole sweep, a change fingerprint of a sweep. Only
//! SELECT statements, every value bound.
use super::{AttemptRow, Db};

impl Db {
    /// The latest attempt of every job of `sweep` that has one.
    pub async fn latest_attempts(&self, sweep: &str) -> anyhow::Result<Vec<AttemptRow>> {
        Ok(sqlx::query_as::<_, AttemptRow>(
            "SELECT a.* FROM attempts a JOIN sweep_jobs sj ON sj.job_id = a.job_id
             WHERE sj.sweep = ? AND a.number = (SELECT MAX(a2.number) FROM attempts a2 WHERE a2.job_id = a.job_id)
             ORDER BY sj.position",
        )
        .bind(sweep)
        .fetch_all(self.pool())
        .await?)
    }

    /// Ids of the jobs whose id starts with `prefix` (LIKE wildcards in it are data), at most
    /// `limit`, in id order.
    pub async fn job_ids_with_prefix(&self, prefix: &str, limit: i64) -> anyhow::Result<Vec<String>> {
        let pattern = prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        Ok(sqlx::query_scalar("SELECT id FROM jobs WHERE id LIKE ? || '%' ESCAPE '\\' ORDER BY id LIMIT ?")
            .bind(pattern)
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }

    /// The names of the sweeps a job belongs to.
    pub async fn job_sweeps(&self, job_id: &str) -> anyhow::Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT sweep FROM sweep_jobs WHERE job_id = ? ORDER BY sweep").bind(job_id).fetch_all(self.pool()).await?)
    }

    /// One metric of a job at steps after `after`, by step.
    pub async fn metrics_after(&self, job_id: &str, key: &str, after: i64) -> anyhow::Result<Vec<(i64, f64)>> {
        Ok(sqlx::query_as("SELECT step, value FROM metrics WHERE job_id = ? AND key = ? AND step > ? ORDER BY step")
            .bind(job_id)
            .bind(key)
            .bind(after)
            .fetch_all(self.pool())
            .await?)
    }

    /// One metric of every job of `sweep`: (job id, step, value), by sweep position and step.
    pub async fn sweep_metrics(&self, sweep: &str, key: &str) -> anyhow::Result<Vec<(String, i64, f64)>> {
        Ok(sqlx::query_as(
            "SELECT m.job_id, m.step, m.value FROM metrics m JOIN sweep_jobs sj ON sj.job_id = m.job_id
             WHERE sj.sweep = ? AND m.key = ? ORDER BY sj.position, m.step",
        )
        .bind(sweep)
        .bind(key)
        .fetch_all(self.pool())
        .await?)
    }

    /// Changes whenever anything about a sweep's jobs changes (events ingested, statuses,
    /// attempts): the job count, the sum of ingested sequence numbers, the latest update time
    /// and the attempt count.
    pub async fn sweep_version(&self, sweep: &str) -> anyhow::Result<String> {
        let (n, seq, updated, attempts): (i64, i64, Option<String>, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(j.last_seq), 0), MAX(j.updated_at),
               (SELECT COUNT(*) FROM attempts a JOIN sweep_jobs s2 ON s2.job_id = a.job_id WHERE s2.sweep = ?)
             FROM sweep_jobs sj JOIN jobs j ON j.id = sj.job_id WHERE sj.sweep = ?",
        )
        .bind(sweep)
        .bind(sweep)
        .fetch_one(self.pool())
        .await?;
        Ok(format!("{n}-{seq}-{attempts}-{}", updated.unwrap_or_default()))
    }
}
