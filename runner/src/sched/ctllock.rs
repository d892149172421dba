//! One controller per sweep and database. Two controllers on the same sweep would adopt each
//! other's workers and settle them as killed, so `sweep run` and `sweep sync` hold an exclusive
//! lock on `<db>.<sweep>.controller.lock` for their lifetime. The file names the holder (host,
//! pid, start time) for the refusal message; the lock itself is an `flock`, released by the OS
//! when the holder exits however it exits, so a killed controller never blocks a restart. The
//! file is left in place on exit: removing it could let a third controller lock a new file
//! while a second still waits on the old one.
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct ControllerLock {
    _file: File,
    path: PathBuf,
}

impl ControllerLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The lock file of sweep `sweep` on database `db`: beside the database.
pub fn lock_path(db: &Path, sweep: &str) -> anyhow::Result<PathBuf> {
    crate::safety::check_sweep_name(sweep).map_err(anyhow::Error::msg)?;
    let mut name = db.file_name().with_context(|| format!("the database path {} names no file", db.display()))?.to_os_string();
    name.push(format!(".{sweep}.controller.lock"));
    Ok(db.with_file_name(name))
}

/// Takes the controller lock of `sweep` on `db`, or fails naming the controller that holds it.
pub fn acquire(db: &Path, sweep: &str) -> anyhow::Result<ControllerLock> {
    let path = lock_path(db, sweep)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening the controller lock {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut owner = String::new();
            let _ = file.read_to_string(&mut owner);
            let mut it = owner.split_whitespace();
            match (it.next(), it.next(), it.next()) {
                (Some(host), Some(pid), Some(since)) => {
                    bail!("sweep {sweep} is already run by pid {pid} on host {host} (since {since}); lock {}", path.display())
                }
                _ => bail!("sweep {sweep} is already run by another controller (it is starting; lock {})", path.display()),
            }
        }
        Err(TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
    }
    let host = super::owner::hostname().unwrap_or_else(|| "unknown".into());
    let since = stuffed_model::train::events::now_rfc3339();
    let owner = format!("{host} {} {since}\n", std::process::id());
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(owner.as_bytes()))
        .and_then(|()| file.flush())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(ControllerLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_controller_is_refused_with_the_owner_and_a_released_lock_is_free() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("stuffed.db");
        let first = acquire(&db, "sw").unwrap();
        assert_eq!(first.path(), d.path().join("stuffed.db.sw.controller.lock"));
        let e = acquire(&db, "sw").unwrap_err().to_string();
        let me = format!("pid {} on host ", std::process::id());
        assert!(e.starts_with("sweep sw is already run by ") && e.contains(&me) && e.contains("(since "), "{e}");
        let other = acquire(&db, "other").unwrap();
        drop(first);
        let again = acquire(&db, "sw").unwrap();
        drop((again, other));
        assert!(acquire(&db, "../x").is_err(), "a sweep name that is a path");
    }
}
