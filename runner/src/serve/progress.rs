//! Progress and ETA of a sweep from its jobs (step / total steps) and the start and end times of
//! their latest attempts, and the database's RFC 3339 UTC timestamps as Unix seconds. Pure
//! functions.
use serde::Serialize;

/// Job statuses after which nothing more happens to a job (in this run of its sweep).
pub const FINISHED: [&str; 4] = ["completed", "failed", "diverged", "cancelled"];

/// Unix seconds of `YYYY-MM-DDTHH:MM:SS[.fff](Z|+00:00)`; `None` for anything else.
pub fn unix_seconds(ts: &str) -> Option<f64> {
    let ts = ts.trim();
    let body = ts.strip_suffix('Z').or_else(|| ts.strip_suffix("+00:00"))?;
    let (date, time) = body.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (hh, mm) = (t.next()?.parse::<i64>().ok()?, t.next()?.parse::<i64>().ok()?);
    let ss: f64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || !(0.0..61.0).contains(&ss) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60) as f64 + ss)
}

pub fn now_unix() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Fraction of a job done: 1 when finished, step / total steps while it trains.
pub fn job_fraction(status: &str, step: Option<i64>, total: Option<i64>) -> f64 {
    if FINISHED.contains(&status) {
        return 1.0;
    }
    match (step, total) {
        (Some(s), Some(t)) if t > 0 => (s as f64 / t as f64).clamp(0.0, 1.0),
        _ => 0.0,
    }
}

/// What the ETA needs to know about one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobClock {
    pub status: String,
    pub fraction: f64,
    /// Start of the latest attempt (Unix seconds).
    pub started: Option<f64>,
    /// End of the latest attempt, when it ended.
    pub ended: Option<f64>,
}

/// A sweep's progress as the pages show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// `running` (some job trains), `completed` (every job completed), `finished` (every job
    /// ended, some not completed), `cancelled`, `idle` (work left, nothing running) or `empty`.
    pub state: &'static str,
    /// Jobs in a finished status.
    pub done: usize,
    /// Mean job fraction, 0..1.
    pub fraction: f64,
    /// Estimated seconds until every job has ended; `None` when unknown or nothing runs.
    pub eta_s: Option<f64>,
}

/// Progress and ETA of a sweep's jobs at time `now`. Each running job's total duration is its
/// own pace (elapsed / fraction) blended, by its fraction, with the mean duration of the jobs
/// that completed (the pace of a job that just started is mostly its start-up); the ETA is the
/// running jobs' remaining time plus the waiting jobs at the mean duration, shared by as many
/// slots as jobs now run, and at least the longest remaining time.
pub fn sweep_progress(jobs: &[JobClock], cancelled: bool, now: f64) -> Progress {
    let n = jobs.len();
    let done = jobs.iter().filter(|j| FINISHED.contains(&j.status.as_str())).count();
    let running: Vec<&JobClock> = jobs.iter().filter(|j| j.status == "running").collect();
    let fraction = if n == 0 { 0.0 } else { jobs.iter().map(|j| j.fraction).sum::<f64>() / n as f64 };
    let state = if n == 0 {
        "empty"
    } else if !running.is_empty() {
        "running"
    } else if jobs.iter().all(|j| j.status == "completed") {
        "completed"
    } else if done == n {
        "finished"
    } else if cancelled {
        "cancelled"
    } else {
        "idle"
    };
    let waiting = if cancelled { 0 } else { n - done - running.len() };
    let completed: Vec<f64> =
        jobs.iter().filter(|j| j.status == "completed").filter_map(|j| Some(j.ended? - j.started?).filter(|d| *d > 0.0)).collect();
    let prior = (!completed.is_empty()).then(|| completed.iter().sum::<f64>() / completed.len() as f64);
    let (mut totals, mut left) = (Vec::new(), Vec::new());
    for j in &running {
        let Some(start) = j.started else { continue };
        let elapsed = (now - start).max(0.0);
        let pace = (j.fraction > 0.02).then(|| elapsed / j.fraction);
        let total = match (pace, prior) {
            (Some(p), Some(q)) => j.fraction * p + (1.0 - j.fraction) * q,
            (Some(p), None) => p,
            (None, Some(q)) => q.max(elapsed),
            (None, None) => continue,
        };
        totals.push(total);
        left.push((total - elapsed).max(0.0));
    }
    let mean = prior.or_else(|| (!totals.is_empty()).then(|| totals.iter().sum::<f64>() / totals.len() as f64));
    let eta_s = match mean {
        Some(mean) if !running.is_empty() => {
            // Running jobs without an estimate yet are assumed to take the mean duration.
            let unknown = running.len() - left.len();
            let work = left.iter().sum::<f64>() + mean * (waiting + unknown) as f64;
            let longest = left.iter().copied().fold(0.0, f64::max);
            Some((work / running.len() as f64).max(longest))
        }
        _ => None,
    };
    Progress { state, done, fraction, eta_s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_database_timestamps() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(unix_seconds("2000-03-01T00:00:01Z"), Some(951_868_801.0));
        assert_eq!(unix_seconds("2026-11-28T10:00:00.5+00:00"), Some(1_795_860_000.5));
        for bad in ["", "2026-11-28 10:00:00", "2026-13-01T00:00:00Z", "yesterday", "2026-11-28T10:00:00+02:00"] {
            assert_eq!(unix_seconds(bad), None, "{bad}");
        }
    }

    fn clock(status: &str, fraction: f64, started: Option<f64>, ended: Option<f64>) -> JobClock {
        JobClock { status: status.into(), fraction, started, ended }
    }

    #[test]
    fn eta_from_pace_and_waiting_jobs() {
        // Two jobs half done after 10 s each (20 s jobs), two waiting: 10 s + 2 x 20 s on 2 slots.
        let jobs = [
            clock("running", 0.5, Some(90.0), None),
            clock("running", 0.5, Some(90.0), None),
            clock("pending", 0.0, None, None),
            clock("pending", 0.0, None, None),
        ];
        let p = sweep_progress(&jobs, false, 100.0);
        assert_eq!(p.state, "running");
        assert_eq!(p.done, 0);
        assert!((p.fraction - 0.25).abs() < 1e-9);
        assert!((p.eta_s.unwrap() - 30.0).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn a_job_that_just_started_leans_on_completed_durations() {
        // Completed jobs took 10 s; one runs at 5% after 2 s (its pace alone says 40 s): 0.05 x 40
        // + 0.95 x 10 = 11.5 s in all, 9.5 s left, then the waiting job's 10 s.
        let jobs =
            [clock("completed", 1.0, Some(0.0), Some(10.0)), clock("running", 0.05, Some(98.0), None), clock("pending", 0.0, None, None)];
        let eta = sweep_progress(&jobs, false, 100.0).eta_s.unwrap();
        assert!((eta - 19.5).abs() < 1e-9, "{eta}");
    }

    #[test]
    fn no_eta_when_nothing_runs() {
        let done = [clock("completed", 1.0, Some(0.0), Some(5.0)), clock("failed", 1.0, Some(0.0), Some(1.0))];
        let p = sweep_progress(&done, false, 100.0);
        assert_eq!((p.state, p.done, p.eta_s), ("finished", 2, None));
        let idle = [clock("completed", 1.0, Some(0.0), Some(5.0)), clock("pending", 0.0, None, None)];
        assert_eq!(sweep_progress(&idle, false, 100.0).state, "idle");
        assert_eq!(sweep_progress(&idle, true, 100.0).state, "cancelled");
        assert_eq!(sweep_progress(&[], false, 0.0).state, "empty");
    }
}
