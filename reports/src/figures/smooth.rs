// Display smoothing of loss-vs-position curves: on a logarithmic position axis, the buckets of a
// curve are averaged into log-spaced bins (edges at 2^(k/n) for integer k, the same for every
// curve of a figure), weighted by bucket width. Only figures use it: collapse verdicts and tables
// read the raw buckets.

/// About this many bins per curve over a figure's position range.
pub const TARGET_BINS: f64 = 60.0;
/// Bounds on the bins per doubling.
pub const MIN_PER_DOUBLING: u32 = 2;
pub const MAX_PER_DOUBLING: u32 = 12;

/// Bins per doubling for positions spanning `lo..=hi` (both > 0): about [`TARGET_BINS`] bins over
/// the range, clamped to [`MIN_PER_DOUBLING`]..=[`MAX_PER_DOUBLING`].
pub fn bins_per_doubling(lo: f64, hi: f64) -> u32 {
    let doublings = if lo > 0.0 && hi > lo { (hi / lo).log2() } else { 1.0 };
    let n = (TARGET_BINS / doublings.max(1e-9)).round();
    (n.clamp(MIN_PER_DOUBLING as f64, MAX_PER_DOUBLING as f64)) as u32
}

/// The log-spaced bin of a position: floor(n·log2 x).
fn bin_of(x: f64, per_doubling: u32) -> i64 {
    (x.log2() * per_doubling as f64).floor() as i64
}

/// Average `points` (x, y) into log-spaced bins with `per_doubling` bins per doubling of x.
/// Each point counts with its weight (`weights[i]`, e.g. the bucket width; all 1 when `weights`
/// is empty or of another length). A bin's point is the weighted mean of its x and of its y, so a
/// bin holding one point keeps it unchanged. Points with x ≤ 0, a non-finite coordinate or a
/// weight ≤ 0 are left out; bins come out in ascending x.
pub fn log_binned(points: &[(f64, f64)], weights: &[f64], per_doubling: u32) -> Vec<(f64, f64)> {
    let per_doubling = per_doubling.max(1);
    let weight = |i: usize| {
        if weights.len() == points.len() {
            weights[i]
        } else {
            1.0
        }
    };
    // (bin, Σw, Σw·x, Σw·y), in first-seen order; sorted by bin below
    let mut bins: Vec<(i64, f64, f64, f64)> = Vec::new();
    for (i, &(x, y)) in points.iter().enumerate() {
        let w = weight(i);
        if !(x > 0.0 && x.is_finite() && y.is_finite() && w > 0.0 && w.is_finite()) {
            continue;
        }
        let b = bin_of(x, per_doubling);
        match bins.iter_mut().find(|e| e.0 == b) {
            Some(e) => {
                e.1 += w;
                e.2 += w * x;
                e.3 += w * y;
            }
            None => bins.push((b, w, w * x, w * y)),
        }
    }
    bins.sort_by_key(|e| e.0);
    bins.into_iter().map(|(_, w, wx, wy)| (wx / w, wy / w)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_per_doubling_targets_about_60_bins_over_the_range() {
        // 16-token buckets to 32K: 12 doublings of midpoints 8..32760
        assert_eq!(bins_per_doubling(8.0, 32760.0), 5);
        assert_eq!(bins_per_doubling(64.0, 8192.0), 9);
        assert_eq!(bins_per_doubling(100.0, 200.0), MAX_PER_DOUBLING);
        assert_eq!(bins_per_doubling(1.0, 1e30), MIN_PER_DOUBLING);
    }

    #[test]
    fn binning_averages_by_weight_and_keeps_lone_points() {
        // one bin per doubling: [1,2) [2,4) [4,8) [8,16)
        let pts = [(1.5, 1.0), (2.5, 2.0), (3.5, 4.0), (12.0, 7.0), (-1.0, 9.0), (5.0, f64::NAN)];
        let got = log_binned(&pts, &[1.0, 1.0, 3.0, 2.0, 1.0, 1.0], 1);
        assert_eq!(got, vec![(1.5, 1.0), (3.25, 3.5), (12.0, 7.0)]);
        // unweighted when the weights do not match the points
        let got = log_binned(&pts[..3], &[], 1);
        assert_eq!(got, vec![(1.5, 1.0), (3.0, 3.0)]);
    }

    #[test]
    fn fine_buckets_shrink_to_a_few_dozen_points() {
        // 2048 buckets of 16 tokens up to 32768, noisy
        let pts: Vec<(f64, f64)> = (0..2048).map(|i| (16.0 * i as f64 + 8.0, 1.0 + if i % 2 == 0 { 0.5 } else { -0.5 })).collect();
        let n = bins_per_doubling(8.0, 32760.0);
        let got = log_binned(&pts, &vec![16.0; pts.len()], n);
        assert!((40..=60).contains(&got.len()), "{} bins", got.len());
        // noise averages out where bins hold many buckets
        let last = got.last().copied().unwrap_or_default();
        assert!((last.1 - 1.0).abs() < 0.01, "{last:?}");
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
