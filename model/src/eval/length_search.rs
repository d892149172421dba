//! T_recall by bisection instead of a full grid of lengths (`lengths: {search: [LO, HI],
//! resolution: R}` in a passkey evaluation). Pure: the probe is a closure, so the search is
//! tested without a model.
//!
//! The lengths a search may probe are LO and HI as written and the multiples of R strictly
//! between them (ends need not be multiples: `[1000, 5000]` by 1024 is 1000, 1024, 2048, 3072,
//! 4096, 5000); neighbours are at most R apart. LO and HI are probed first: LO not recalled means
//! T_recall is below the range; HI recalled means T_recall >= HI (right-censored); otherwise the
//! search halves the bracket (LO recalled, HI not) until its ends are neighbours. Recall is
//! assumed monotone in the length; a contradiction among the probes is reported, not hidden.
use stuffed_protocol::eval::{SearchOutcome, SearchRange};

use crate::limits::MAX_SEQ_LEN;

/// Most probes a search may need in the worst case (LO, HI and the bisection steps); a range
/// too fine for it is a configuration error (a coarser resolution is the fix).
pub const MAX_SEARCH_PROBES: usize = 24;

/// The lengths one search may probe, by index: 0 is LO, `points() - 1` is HI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthGrid {
    lo: i64,
    hi: i64,
    resolution: i64,
    /// Index (in units of the resolution) of the first multiple above LO.
    first: i64,
    /// Multiples of the resolution strictly between LO and HI.
    interior: i64,
}

/// Which key of `{search: [LO, HI], resolution: R}` a problem is about, and the problem.
pub type RangeProblem = (&'static str, String);

impl LengthGrid {
    /// The grid of a range, or the first problem with it: `search` needs 0 < LO < HI <= the
    /// longest sequence (`limits::MAX_SEQ_LEN`), `resolution` must be positive and coarse enough
    /// for [`MAX_SEARCH_PROBES`].
    pub fn new(range: SearchRange) -> Result<LengthGrid, RangeProblem> {
        let ([lo, hi], resolution) = (range.range, range.resolution);
        if lo <= 0 || hi <= lo {
            return Err(("search", format!("needs [LO, HI] with 0 < LO < HI, got [{lo}, {hi}]")));
        }
        if hi > MAX_SEQ_LEN {
            return Err(("search", format!("HI = {hi} is larger than the limit {MAX_SEQ_LEN}")));
        }
        if resolution <= 0 {
            return Err(("resolution", format!("must be a positive integer, got {resolution}")));
        }
        let first = lo / resolution + 1;
        let interior = ((hi - 1) / resolution - first + 1).max(0);
        let grid = LengthGrid { lo, hi, resolution, first, interior };
        if grid.max_probes() > MAX_SEARCH_PROBES {
            return Err((
                "resolution",
                format!(
                    "{resolution} leaves {} lengths between {lo} and {hi}: the search could need {} probes, more than the limit {MAX_SEARCH_PROBES}; use a coarser resolution",
                    grid.points(),
                    grid.max_probes()
                ),
            ));
        }
        Ok(grid)
    }

    /// Lengths the search may probe, LO and HI included.
    pub fn points(&self) -> i64 {
        self.interior + 2
    }

    /// The length at index `i` (0 = LO, `points() - 1` = HI).
    pub fn at(&self, i: i64) -> i64 {
        if i <= 0 {
            self.lo
        } else if i > self.interior {
            self.hi
        } else {
            (self.first + i - 1) * self.resolution
        }
    }

    /// Probes in the worst case: LO, HI, and ceil(log2(points - 1)) halvings.
    pub fn max_probes(&self) -> usize {
        let gap = (self.points() - 1) as u64;
        2 + (u64::BITS - (gap - 1).leading_zeros()) as usize
    }

    pub fn range(&self) -> SearchRange {
        SearchRange { range: [self.lo, self.hi], resolution: self.resolution }
    }
}

/// What a search found: every probe in the order run, and the bracket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bisection {
    /// (length, recalled) in the order probed.
    pub probes: Vec<(i64, bool)>,
    pub outcome: SearchOutcome,
    /// The longest length recalled.
    pub last_pass: Option<i64>,
    /// The shortest length probed above `last_pass` that was not recalled.
    pub first_fail: Option<i64>,
    /// No recalled probe is longer than one that was not recalled.
    pub monotone: bool,
}

/// Searches `grid` for the longest recalled length, asking `recalled(len)` once per probe.
pub fn bisect<E>(grid: &LengthGrid, mut recalled: impl FnMut(i64) -> Result<bool, E>) -> Result<Bisection, E> {
    let mut probes = Vec::new();
    let mut probe = |len: i64| -> Result<bool, E> {
        let r = recalled(len)?;
        probes.push((len, r));
        Ok(r)
    };
    let top = grid.points() - 1;
    let (lo_ok, hi_ok) = (probe(grid.at(0))?, probe(grid.at(top))?);
    let (outcome, last_pass, first_fail) = match (lo_ok, hi_ok) {
        (true, false) => {
            // Invariant: `a` recalled, `b` not.
            let (mut a, mut b) = (0, top);
            while b - a > 1 {
                let m = a + (b - a) / 2;
                if probe(grid.at(m))? {
                    a = m;
                } else {
                    b = m;
                }
            }
            (SearchOutcome::Bracketed, Some(grid.at(a)), Some(grid.at(b)))
        }
        (true, true) => (SearchOutcome::AboveRange, Some(grid.at(top)), None),
        (false, false) => (SearchOutcome::BelowRange, None, Some(grid.at(0))),
        (false, true) => (SearchOutcome::NonMonotone, Some(grid.at(top)), None),
    };
    let monotone = is_monotone(&probes);
    Ok(Bisection { probes, outcome, last_pass, first_fail, monotone })
}

/// Whether every recalled probe is shorter than every probe that was not.
pub fn is_monotone(probes: &[(i64, bool)]) -> bool {
    let longest_pass = probes.iter().filter(|p| p.1).map(|p| p.0).max();
    let shortest_fail = probes.iter().filter(|p| !p.1).map(|p| p.0).min();
    match (longest_pass, shortest_fail) {
        (Some(p), Some(f)) => p < f,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    fn grid(lo: i64, hi: i64, resolution: i64) -> LengthGrid {
        LengthGrid::new(SearchRange { range: [lo, hi], resolution }).unwrap()
    }

    /// The search for a monotone recall that holds up to `t` tokens.
    fn search(g: &LengthGrid, t: i64) -> Bisection {
        bisect(g, |len| Ok::<_, Infallible>(len <= t)).unwrap()
    }

    fn all(g: &LengthGrid) -> Vec<i64> {
        (0..g.points()).map(|i| g.at(i)).collect()
    }

    #[test]
    fn monotone_recall_is_bracketed_between_neighbours() {
        let g = grid(1024, 262_144, 1024);
        assert_eq!((g.points(), g.max_probes()), (256, 10));
        for t in [1024, 1025, 5000, 131_072, 262_143] {
            let b = search(&g, t);
            let last = (t / 1024) * 1024;
            assert_eq!((b.outcome, b.last_pass, b.first_fail), (SearchOutcome::Bracketed, Some(last), Some(last + 1024)), "t = {t}");
            assert_eq!(&b.probes[..2], &[(1024, true), (262_144, false)]);
            assert!(b.probes.len() <= g.max_probes() && b.monotone, "{b:?}");
            // Every probe answered as the truth does; the bracket ends were probed.
            assert!(b.probes.iter().all(|&(l, r)| r == (l <= t)));
            assert!(b.probes.contains(&(last, true)) && b.probes.contains(&(last + 1024, false)));
        }
    }

    #[test]
    fn all_recalled_is_censored_above_and_none_below_the_range() {
        let g = grid(256, 4096, 256);
        let b = search(&g, 1 << 20);
        assert_eq!((b.outcome, b.last_pass, b.first_fail), (SearchOutcome::AboveRange, Some(4096), None));
        assert_eq!(b.probes, vec![(256, true), (4096, true)]);
        let b = search(&g, 100);
        assert_eq!((b.outcome, b.last_pass, b.first_fail), (SearchOutcome::BelowRange, None, Some(256)));
        assert_eq!(b.probes, vec![(256, false), (4096, false)]);
        assert!(b.monotone);
    }

    #[test]
    fn off_grid_ends_are_probed_as_written_and_the_interior_on_multiples() {
        let g = grid(1000, 5000, 1024);
        assert_eq!(all(&g), vec![1000, 1024, 2048, 3072, 4096, 5000]);
        let b = search(&g, 4500);
        assert_eq!((b.last_pass, b.first_fail), (Some(4096), Some(5000)));
        let b = search(&g, 1010);
        assert_eq!((b.last_pass, b.first_fail), (Some(1000), Some(1024)));
        // Ends on the grid are not repeated; a range shorter than the resolution has its ends only.
        assert_eq!(all(&grid(1024, 4096, 1024)), vec![1024, 2048, 3072, 4096]);
        assert_eq!(all(&grid(100, 150, 1024)), vec![100, 150]);
    }

    #[test]
    fn a_one_step_range_needs_only_its_ends() {
        let g = grid(2048, 3072, 1024);
        assert_eq!((g.points(), g.max_probes()), (2, 2));
        let b = search(&g, 2500);
        assert_eq!(b.probes, vec![(2048, true), (3072, false)]);
        assert_eq!((b.outcome, b.last_pass, b.first_fail), (SearchOutcome::Bracketed, Some(2048), Some(3072)));
    }

    #[test]
    fn worst_case_probes_bound_every_search() {
        for (lo, hi, r) in [(1, 2, 1), (1, 3, 1), (1, 5, 1), (1, 6, 1), (7, 1000, 13), (1024, 262_144, 1024)] {
            let g = grid(lo, hi, r);
            let most = (lo..=hi).map(|t| search(&g, t).probes.len()).max().unwrap();
            assert_eq!(most, g.max_probes(), "[{lo}, {hi}] by {r}");
        }
    }

    #[test]
    fn a_contradiction_is_reported() {
        let g = grid(256, 4096, 256);
        // Not recalled at the short end, recalled at the long one.
        let b = bisect(&g, |len| Ok::<_, Infallible>(len > 1000)).unwrap();
        assert_eq!((b.outcome, b.last_pass, b.monotone), (SearchOutcome::NonMonotone, Some(4096), false));
        assert_eq!(b.probes.len(), 2);
        assert!(!is_monotone(&[(256, true), (512, false), (1024, true)]));
        assert!(is_monotone(&[(256, true), (1024, false), (512, true)]));
    }

    #[test]
    fn probe_errors_stop_the_search() {
        let g = grid(256, 4096, 256);
        let mut n = 0;
        let e = bisect(&g, |len| {
            n += 1;
            if len == 4096 {
                Err(format!("out of memory at {len}"))
            } else {
                Ok(true)
            }
        });
        assert_eq!((e, n), (Err("out of memory at 4096".to_string()), 2));
    }

    #[test]
    fn bad_ranges_name_their_key() {
        let bad = |lo, hi, resolution| LengthGrid::new(SearchRange { range: [lo, hi], resolution }).unwrap_err();
        assert_eq!(bad(4096, 1024, 1024).0, "search");
        assert!(bad(1024, 1 << 40, 1 << 30).1.contains("larger than the limit"));
        assert_eq!(bad(0, 1024, 1024).0, "search");
        assert_eq!(bad(1024, 1024, 1024).0, "search");
        assert_eq!(bad(1024, 4096, 0).0, "resolution");
        let (key, msg) = bad(1, 1 << 24, 1);
        assert!(key == "resolution" && msg.contains("more than the limit 24"), "{msg}");
    }
}
