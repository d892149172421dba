//! A small deterministic RNG (SplitMix64) whose whole state is one u64: data sampling and
//! passkeys are reproducible from a seed and resumable from a saved state.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rng {
    pub state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed ^ 0x9E37_79B9_7F4A_7C15 }
    }

    /// An independent stream derived from a seed and labels (e.g. seed, length, depth, index).
    pub fn derive(seed: u64, labels: &[u64]) -> Rng {
        let mut r = Rng::new(seed);
        for &l in labels {
            r.state ^= l.wrapping_mul(0xD1B5_4A32_D192_ED03);
            r.next_u64();
        }
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, n) (n > 0), by rejection (no modulo bias).
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// Runs `f` with torch's global generator seeded with `seed`, holding a process-wide lock.
/// That generator is shared by every thread: a draw made while another thread reseeds it (two
/// models initialised at once, tests running in parallel) would otherwise take values from the
/// other thread's stream, and the same seed would no longer give the same weights.
pub fn with_torch_seed<T>(seed: i64, f: impl FnOnce() -> T) -> T {
    static TORCH_SEED: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = TORCH_SEED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    tch::manual_seed(seed);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_bounds() {
        let (mut a, mut b) = (Rng::new(5), Rng::new(5));
        for _ in 0..100 {
            let x = a.below(7);
            assert_eq!(x, b.below(7));
            assert!(x < 7);
        }
        assert_ne!(Rng::derive(1, &[2]).next_u64(), Rng::derive(1, &[3]).next_u64());
    }
}
