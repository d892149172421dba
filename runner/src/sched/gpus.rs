//! The GPUs of a local sweep as the controller sees them: which one a job goes to (least loaded
//! with room, at most `per_gpu` jobs, alone when exclusive), and each GPU's health. A GPU whose
//! attempts fail `RETIRE_AFTER` times in a row with a kind that can be the device's fault (a
//! worker that died, an unexpected library error) is retired: no new job goes there while
//! another GPU remains, and a job whose attempt failed on a GPU is retried elsewhere when another
//! has room. The last usable GPU is never retired (its jobs then fail as they would with one).
use std::collections::{BTreeSet, HashMap};

use stuffed_model::protocol::{AttemptEnd, FailureKind};

use super::local::GpuSlot;

/// Failed attempts in a row, with no success between, that retire a GPU.
pub const RETIRE_AFTER: u32 = 3;

/// A job running on a GPU, as the choice of GPU needs it.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub gpu: usize,
    pub mem_gb: f64,
    pub exclusive: bool,
}

/// What happened to a GPU after an attempt on it ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    Fine,
    /// Retired after this many failures in a row.
    Retired {
        failures: u32,
    },
}

#[derive(Debug)]
pub struct Pool {
    slots: Vec<GpuSlot>,
    per_gpu: usize,
    /// Failures in a row per GPU index, since its last success.
    streak: HashMap<usize, u32>,
    retired: BTreeSet<usize>,
}

/// Whether an attempt that ended so may be the GPU's fault: a worker that died without a final
/// event, or an unexpected error (a CUDA launch failure is one). A bad config, missing data,
/// divergence, an out-of-memory, a timeout or a stop are the job's or the user's.
fn device_suspect(end: AttemptEnd) -> bool {
    matches!(end, AttemptEnd::Failed(FailureKind::Killed | FailureKind::Internal))
}

impl Pool {
    pub fn new(slots: Vec<GpuSlot>, per_gpu: usize) -> Pool {
        Pool { slots, per_gpu: per_gpu.max(1), streak: HashMap::new(), retired: BTreeSet::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn slots(&self) -> &[GpuSlot] {
        &self.slots
    }

    /// The retired GPUs' indices, in order.
    pub fn retired(&self) -> Vec<usize> {
        self.retired.iter().copied().collect()
    }

    fn usable(&self) -> impl Iterator<Item = &GpuSlot> {
        self.slots.iter().filter(|g| !self.retired.contains(&g.index))
    }

    /// A usable GPU with room for a job of `mem` GB (alone on it when `exclusive`), the least
    /// loaded first; `avoid` (where the job's last attempt failed) only when no other has room.
    pub fn pick(&self, running: &[Load], mem: f64, exclusive: bool, avoid: Option<usize>) -> Option<usize> {
        let mut best: Option<(bool, f64, usize)> = None; // (is avoided, used GB, index)
        for g in self.usable() {
            let on: Vec<&Load> = running.iter().filter(|r| r.gpu == g.index).collect();
            if on.iter().any(|r| r.exclusive) || (exclusive && !on.is_empty()) || on.len() >= self.per_gpu {
                continue;
            }
            let used: f64 = on.iter().map(|r| r.mem_gb).sum();
            let fits = used + mem <= g.capacity_gb || (on.is_empty() && exclusive);
            let key = (avoid == Some(g.index), used, g.index);
            if fits && best.is_none_or(|b| (key.0, key.1) < (b.0, b.1)) {
                best = Some(key);
            }
        }
        best.map(|(_, _, i)| i)
    }

    /// Whether a job of `mem` GB is larger than every usable GPU by the estimate.
    pub fn too_big(&self, mem: f64) -> bool {
        self.usable().all(|g| mem > g.capacity_gb)
    }

    /// The first usable GPU (for a job larger than any: it gets one alone and tries).
    pub fn first_usable(&self) -> Option<usize> {
        self.usable().next().map(|g| g.index)
    }

    /// Records how an attempt on `gpu` ended; retires the GPU after `RETIRE_AFTER` suspect
    /// failures in a row, unless it is the last usable one.
    pub fn record(&mut self, gpu: usize, end: AttemptEnd) -> Health {
        if end == AttemptEnd::Completed {
            self.streak.insert(gpu, 0);
            return Health::Fine;
        }
        if !device_suspect(end) {
            return Health::Fine;
        }
        let n = self.streak.entry(gpu).or_insert(0);
        *n += 1;
        let failures = *n;
        let others = self.usable().filter(|g| g.index != gpu).count();
        if failures >= RETIRE_AFTER && others > 0 && self.retired.insert(gpu) {
            return Health::Retired { failures };
        }
        Health::Fine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize, gb: f64, per_gpu: usize) -> Pool {
        Pool::new((0..n).map(|i| GpuSlot { index: i, name: format!("GPU {i}"), capacity_gb: gb }).collect(), per_gpu)
    }

    fn load(gpu: usize, mem_gb: f64) -> Load {
        Load { gpu, mem_gb, exclusive: false }
    }

    /// Jobs spread over eight GPUs, least loaded first, up to the per-GPU cap and the memory.
    #[test]
    fn jobs_spread_over_eight_gpus() {
        let p = pool(8, 130.0, 4);
        let mut running = Vec::new();
        for _ in 0..8 {
            let g = p.pick(&running, 20.0, false, None).unwrap();
            running.push(load(g, 20.0));
        }
        let mut used: Vec<usize> = running.iter().map(|r| r.gpu).collect();
        used.sort();
        assert_eq!(used, (0..8).collect::<Vec<_>>(), "one job on each GPU first");
        for _ in 0..24 {
            let g = p.pick(&running, 20.0, false, None).unwrap();
            running.push(load(g, 20.0));
        }
        for g in 0..8 {
            assert_eq!(running.iter().filter(|r| r.gpu == g).count(), 4, "GPU {g} holds per_gpu jobs");
        }
        assert_eq!(p.pick(&running, 1.0, false, None), None, "every GPU at its cap");
        // Memory: two 60 GB jobs fill a 130 GB GPU.
        let p = pool(2, 130.0, 8);
        let running = vec![load(0, 60.0), load(0, 60.0), load(1, 60.0)];
        assert_eq!(p.pick(&running, 60.0, false, None), Some(1));
        let running = vec![load(0, 60.0), load(0, 60.0), load(1, 60.0), load(1, 60.0)];
        assert_eq!(p.pick(&running, 60.0, false, None), None);
    }

    /// An exclusive job (an OOM retried) waits for an empty GPU and keeps it to itself.
    #[test]
    fn exclusive_jobs_get_a_gpu_alone() {
        let p = pool(2, 80.0, 4);
        let running = vec![load(0, 10.0), load(1, 10.0)];
        assert_eq!(p.pick(&running, 10.0, true, None), None);
        let running = vec![load(0, 10.0)];
        assert_eq!(p.pick(&running, 10.0, true, None), Some(1));
        let running = vec![Load { gpu: 1, mem_gb: 10.0, exclusive: true }];
        assert_eq!(p.pick(&running, 1.0, false, None), Some(0), "nothing joins an exclusive job");
    }

    /// A retried job goes to another GPU than the one its attempt failed on, when one has room;
    /// to the same one when it is the only one with room.
    #[test]
    fn a_retry_avoids_the_gpu_it_failed_on() {
        let p = pool(3, 80.0, 2);
        assert_eq!(p.pick(&[], 10.0, false, Some(0)), Some(1));
        let running = vec![load(1, 10.0), load(1, 10.0), load(2, 10.0), load(2, 10.0)];
        assert_eq!(p.pick(&running, 10.0, false, Some(0)), Some(0), "the only GPU with room");
        // Among the others, still the least loaded.
        let running = vec![load(1, 10.0)];
        assert_eq!(p.pick(&running, 10.0, false, Some(0)), Some(2));
    }

    /// A GPU failing three attempts in a row with a suspect kind is retired and gets no more
    /// jobs; a success resets the count; the job's own faults do not count; the last usable
    /// GPU is never retired.
    #[test]
    fn a_failing_gpu_is_retired_and_the_last_one_never() {
        let killed = AttemptEnd::Failed(FailureKind::Killed);
        let internal = AttemptEnd::Failed(FailureKind::Internal);
        let mut p = pool(3, 80.0, 4);
        assert_eq!(p.record(2, killed), Health::Fine);
        assert_eq!(p.record(2, internal), Health::Fine);
        assert_eq!(p.record(2, AttemptEnd::Completed), Health::Fine, "a success resets the streak");
        assert_eq!(p.record(2, killed), Health::Fine);
        for kind in [
            FailureKind::Config,
            FailureKind::Data,
            FailureKind::Diverged,
            FailureKind::Oom,
            FailureKind::Timeout,
            FailureKind::Interrupted,
        ] {
            assert_eq!(p.record(2, AttemptEnd::Failed(kind)), Health::Fine, "{kind:?} is the job's, not the GPU's");
        }
        assert_eq!(p.record(2, internal), Health::Fine);
        assert_eq!(p.record(2, killed), Health::Retired { failures: 3 });
        assert_eq!(p.retired(), vec![2]);
        for _ in 0..6 {
            let g = p.pick(&[], 10.0, false, None).unwrap();
            assert_ne!(g, 2, "no job goes to a retired GPU");
        }
        assert_eq!(p.record(2, killed), Health::Fine, "retired once");
        // GPU 0 goes too; GPU 1 is then the last and stays, whatever fails on it.
        for _ in 0..3 {
            p.record(0, killed);
        }
        assert_eq!(p.retired(), vec![0, 2]);
        for _ in 0..10 {
            assert_eq!(p.record(1, killed), Health::Fine);
        }
        assert_eq!(p.retired(), vec![0, 2]);
        assert_eq!(p.pick(&[], 10.0, false, None), Some(1));
        assert_eq!(p.first_usable(), Some(1));
        assert!(p.too_big(81.0) && !p.too_big(79.0));
    }
}
