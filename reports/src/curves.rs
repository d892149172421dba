//! Two training runs' loss curves side by side: how closely a run (a backend, a kernel change,
//! a precision) follows a reference run over the same steps, data and seed. `stuffed bench
//! lossmatch` reads the two runs' event logs and calls [`compare_losses`].
//!
//! Single steps of two bf16 runs differ by rounding noise (several percent at a step where the
//! loss is about to jump), so the verdict is taken on windows: the mean loss of each run over
//! consecutive windows of `window` shared steps, relative to the reference's.
use serde::Serialize;

use crate::Error;

/// One window of shared steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LossWindow {
    /// First and last step of the window (inclusive).
    pub steps: [i64; 2],
    /// Mean training loss over the window: the run, the reference.
    pub run: f64,
    pub reference: f64,
    /// |run - reference| / |reference| of the window means.
    pub rel_diff: f64,
}

/// How a run's training losses follow a reference's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LossMatch {
    /// Steps logged by both runs (the comparison's n).
    pub n_steps: usize,
    /// Per step |run - reference| / |reference|: mean and largest (and where).
    pub mean_rel_diff: f64,
    pub max_rel_diff: f64,
    pub max_rel_diff_step: i64,
    /// The last shared step's losses.
    pub final_step: i64,
    pub final_run: f64,
    pub final_reference: f64,
    /// Shared steps per window; the last window may be shorter.
    pub window: usize,
    pub windows: Vec<LossWindow>,
    /// The largest window difference: the verdict's figure.
    pub worst_window_rel_diff: f64,
}

/// Compares `run` with `reference`, both (step, loss) in any order (a step logged twice, as
/// after a resume, counts with its last value). Only steps both logged count. Errors without
/// a shared step, with a non-finite loss at a shared step, or with `window` 0.
pub fn compare_losses(run: &[(i64, f64)], reference: &[(i64, f64)], window: usize) -> Result<LossMatch, Error> {
    if window == 0 {
        return Err(Error::Data("loss match: a window of 0 steps".into()));
    }
    let by_step = |points: &[(i64, f64)]| points.iter().copied().collect::<std::collections::BTreeMap<i64, f64>>();
    let (a, b) = (by_step(run), by_step(reference));
    let shared: Vec<(i64, f64, f64)> = a.iter().filter_map(|(&s, &x)| b.get(&s).map(|&y| (s, x, y))).collect();
    if shared.is_empty() {
        return Err(Error::Data(format!(
            "loss match: the runs share no logged step (the run logged {} steps, the reference {})",
            a.len(),
            b.len()
        )));
    }
    if let Some(&(s, x, y)) = shared.iter().find(|(_, x, y)| !x.is_finite() || !y.is_finite()) {
        return Err(Error::Data(format!("loss match: step {s} has a non-finite loss (run {x}, reference {y})")));
    }
    let rel = |x: f64, y: f64| if y == 0.0 { (x - y).abs() } else { (x - y).abs() / y.abs() };
    let diffs: Vec<f64> = shared.iter().map(|&(_, x, y)| rel(x, y)).collect();
    let (imax, &max) = diffs.iter().enumerate().max_by(|p, q| p.1.total_cmp(q.1)).expect("shared is not empty");
    let mean = |v: &mut dyn Iterator<Item = f64>, n: usize| v.sum::<f64>() / n as f64;
    let windows: Vec<LossWindow> = shared
        .chunks(window)
        .map(|c| {
            let (run, reference) = (mean(&mut c.iter().map(|p| p.1), c.len()), mean(&mut c.iter().map(|p| p.2), c.len()));
            LossWindow { steps: [c[0].0, c[c.len() - 1].0], run, reference, rel_diff: rel(run, reference) }
        })
        .collect();
    let last = shared[shared.len() - 1];
    Ok(LossMatch {
        n_steps: shared.len(),
        mean_rel_diff: mean(&mut diffs.iter().copied(), diffs.len()),
        max_rel_diff: max,
        max_rel_diff_step: shared[imax].0,
        final_step: last.0,
        final_run: last.1,
        final_reference: last.2,
        window,
        worst_window_rel_diff: windows.iter().map(|w| w.rel_diff).fold(0.0, f64::max),
        windows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_means_and_the_worst_step() {
        let reference: Vec<(i64, f64)> = (1..=5).map(|s| (s, 2.0)).collect();
        let run = vec![(1, 2.0), (2, 2.2), (3, 2.0), (4, 1.9), (5, 2.0)];
        let m = compare_losses(&run, &reference, 2).unwrap();
        assert_eq!(m.n_steps, 5);
        assert_eq!((m.max_rel_diff_step, m.final_step), (2, 5));
        assert!((m.max_rel_diff - 0.1).abs() < 1e-12);
        assert!((m.mean_rel_diff - 0.03).abs() < 1e-12);
        let steps: Vec<[i64; 2]> = m.windows.iter().map(|w| w.steps).collect();
        assert_eq!(steps, vec![[1, 2], [3, 4], [5, 5]]);
        assert!((m.windows[0].rel_diff - 0.05).abs() < 1e-12 && (m.windows[1].rel_diff - 0.025).abs() < 1e-12);
        assert!((m.worst_window_rel_diff - 0.05).abs() < 1e-12);
    }

    #[test]
    fn only_shared_steps_count_and_a_repeated_step_keeps_its_last_value() {
        // The run resumed at step 3 and logged it again; the reference logged every other step.
        let run = vec![(1, 3.0), (2, 2.5), (3, 9.0), (3, 2.0), (4, 1.5)];
        let reference = vec![(1, 3.0), (3, 2.0), (5, 1.0)];
        let m = compare_losses(&run, &reference, 20).unwrap();
        assert_eq!(m.n_steps, 2);
        assert_eq!(m.max_rel_diff, 0.0);
        assert_eq!((m.final_step, m.final_run), (3, 2.0));
    }

    #[test]
    fn refuses_what_cannot_be_compared() {
        let a = vec![(1, 1.0)];
        assert!(compare_losses(&a, &[(2, 1.0)], 20).unwrap_err().to_string().contains("share no logged step"));
        assert!(compare_losses(&a, &[(1, f64::NAN)], 20).unwrap_err().to_string().contains("step 1 has a non-finite loss"));
        assert!(compare_losses(&a, &a, 0).is_err());
    }
}
