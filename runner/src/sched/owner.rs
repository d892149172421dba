//! Proving that a process is one of our workers before signalling it. A pid stored in the
//! database is only a hint (the worker may be gone and its pid reused, the row may come from an
//! import): a process is ours when it runs on this host and holds the `flock` of the job's run
//! directory (`/proc/locks` names the holder's pid and the lock file's device and inode).
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// This machine's host name.
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|s| s.trim().to_string())
}

/// Whether process `pid` holds the flock of `run_dir`'s lock file.
pub fn holds_lock(run_dir: &Path, pid: i64) -> bool {
    let Ok(meta) = std::fs::metadata(run_dir.join(crate::cli::worker::LOCK_FILE)) else { return false };
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else { return false };
    let dev = meta.dev();
    let id = format!("{:02x}:{:02x}:{}", libc::major(dev), libc::minor(dev), meta.ino());
    locks.lines().any(|l| lock_line_matches(l, pid, &id))
}

/// A `/proc/locks` line (`1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF`) of a granted flock
/// held by `pid` on the file `dev_ino` (blocked waiters, marked `->`, hold nothing).
fn lock_line_matches(line: &str, pid: i64, dev_ino: &str) -> bool {
    let f: Vec<&str> = line.split_whitespace().collect();
    f.len() >= 6 && f[1] == "FLOCK" && f[4].parse::<i64>().ok() == Some(pid) && f[5] == dev_ino
}

/// Whether `pid` is proven to be the worker of `run_dir`: a positive pid, the attempt's host
/// this one (when recorded), and the run directory's lock held by that very pid.
pub fn is_our_worker(run_dir: &Path, pid: Option<i64>, host: Option<&str>) -> bool {
    let Some(pid) = pid.filter(|p| *p > 0 && *p <= i64::from(i32::MAX)) else { return false };
    if host.is_some_and(|h| Some(h) != hostname().as_deref()) {
        return false;
    }
    holds_lock(run_dir, pid)
}

/// Sends `sig` to the worker of `run_dir` if it is proven ours; whether it was sent.
pub fn signal_worker(run_dir: &Path, pid: Option<i64>, host: Option<&str>, sig: i32) -> bool {
    if !is_our_worker(run_dir, pid, host) {
        return false;
    }
    // Safety: kill(2) on a pid proven above to hold this job's run-directory lock.
    unsafe { libc::kill(pid.unwrap_or(0) as i32, sig) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_locks_lines() {
        assert!(lock_line_matches("1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF", 4242, "08:01:1234"));
        assert!(!lock_line_matches("1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF", 4243, "08:01:1234"));
        assert!(!lock_line_matches("1: FLOCK  ADVISORY  WRITE 4242 08:01:1235 0 EOF", 4242, "08:01:1234"));
        assert!(!lock_line_matches("1: -> FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF", 4242, "08:01:1234"));
        assert!(!lock_line_matches("2: POSIX  ADVISORY  WRITE 4242 08:01:1234 0 EOF", 4242, "08:01:1234"));
    }

    #[test]
    fn an_unrelated_process_with_the_stored_pid_is_never_signalled() {
        if std::fs::read_to_string("/proc/locks").is_err() {
            println!("SKIPPED: no /proc/locks here, the lock holder cannot be checked");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        // This test process holds the run directory's lock, as a worker would.
        let _lock = crate::cli::worker::lock_run_dir(d.path()).unwrap();
        let me = std::process::id() as i64;
        assert!(is_our_worker(d.path(), Some(me), None));
        assert!(is_our_worker(d.path(), Some(me), hostname().as_deref()));
        assert!(!is_our_worker(d.path(), Some(me), Some("another-host.example")));
        let mut other = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = other.id() as i64;
        for p in [Some(pid), Some(0), Some(-1), Some(1), None, Some(i64::MAX)] {
            assert!(!signal_worker(d.path(), p, None, libc::SIGTERM), "{p:?}");
        }
        assert!(matches!(other.try_wait(), Ok(None)), "the unrelated process was signalled");
        let _ = other.kill();
        let _ = other.wait();
        let empty = tempfile::tempdir().unwrap();
        assert!(!is_our_worker(empty.path(), Some(me), None), "no lock file");
    }
}
