//! `stuffed worker --run-dir DIR`: the process a scheduler starts for one job. Runs DIR/job.yaml
//! under an exclusive lock on DIR (so a job never runs twice at once), writing only to DIR.
use std::path::PathBuf;

use anyhow::{bail, Context};
use stuffed_model::protocol::Event;
use stuffed_model::train::{EventLog, JobConfig};

use crate::job::{failure_of, run_job, EVENTS_FILE, JOB_FILE};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run directory holding job.yaml; events, checkpoints and logs go there.
    #[arg(long)]
    run_dir: PathBuf,
    /// The last event sequence number the controller ingested for this job: new events are
    /// numbered above it, even if the run directory lost its event file.
    #[arg(long, default_value_t = 0)]
    seq_floor: u64,
}

pub use stuffed_model::protocol::rundir::LOCK_FILE;

/// Takes the run directory's exclusive lock (released when the process exits, however).
pub fn lock_run_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join(LOCK_FILE);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => bail!("another worker is running the job in {}", dir.display()),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

impl Args {
    pub fn run(self) -> anyhow::Result<i32> {
        // The stop flag first: a SIGTERM that arrives while the job is still loading then ends
        // in a clean checkpoint and a final event, not in a killed worker.
        let stop = super::train::stop_flag()?;
        let _lock = lock_run_dir(&self.run_dir)?;
        // A test aid (tests/faults.rs, with STUFFED_TEST_GPUS): a worker placed on the GPU this
        // names dies at once without a final event, as on a failed device.
        if let (Ok(broken), Ok(visible)) = (std::env::var("STUFFED_TEST_BROKEN_GPU"), std::env::var("CUDA_VISIBLE_DEVICES")) {
            if !broken.is_empty() && broken.trim() == visible.trim() {
                eprintln!("STUFFED_TEST_BROKEN_GPU={broken}: this worker's GPU is marked broken; aborting");
                std::process::abort();
            }
        }
        if let Some(n) = std::env::var("STUFFED_THREADS").ok().and_then(|s| s.parse::<i32>().ok()).filter(|n| *n > 0) {
            tch::set_num_threads(n);
        }
        let job = match JobConfig::load(&self.run_dir.join(JOB_FILE)) {
            Ok(job) => job,
            Err(e) => {
                // A job that cannot even be read still ends with a final event, so the
                // controller classifies it (a configuration error, never retried).
                let e = anyhow::Error::from(e);
                let mut log = EventLog::open_after(&self.run_dir.join(EVENTS_FILE), self.seq_floor)?;
                log.emit(Event::Done(failure_of(&e)))?;
                return Err(e);
            }
        };
        let mut printer = super::train::step_printer(job.train.log_every);
        run_job(&job, &self.run_dir, self.seq_floor, &stop, &mut printer)?;
        Ok(0)
    }
}
