// Capacity-law fits to censored thresholds. A threshold measured on a grid of lengths is an
// interval (lo, hi]: T_forget lies between the largest collapsed and the smallest non-collapsed
// training length; when every length tried collapses it is only a lower bound (lo, ∞), when
// none does an upper bound (0, hi]. Exact values have lo = hi.
//
// Method (docs/methodology.md): maximum likelihood with Gaussian errors on T (additive, one σ
// for all points, as the paper's least squares on T): an exact point contributes the density
// φ((T − f(S))/σ)/σ, an interval Φ((hi − f)/σ) − Φ((lo − f)/σ), a lower bound 1 − Φ((lo − f)/σ),
// an upper bound Φ((hi − f)/σ). σ is estimated with the law's parameters but kept at or above
// a quarter of the median interval width (below that, laws that pass through every interval
// are equally likely and the fit would stop anywhere among them; the floor makes it prefer
// interval centres). Nelder–Mead from the least-squares fit to the interval midpoints (bounds
// at their bound); bootstrap 95% intervals by resampling points. R² is computed on the
// midpoints of the two-sided points.
use crate::fit::{self, Fit, FitModel};
use crate::rng::SplitMix64;
use crate::Error;

/// One censored observation at x: the value lies in (lo, hi]; `None` is unbounded on that side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Censored {
    pub x: f64,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
}

impl Censored {
    pub fn exact(x: f64, y: f64) -> Self {
        Censored { x, lo: Some(y), hi: Some(y) }
    }

    /// The value used for starting values and R²: the midpoint, or the bound when one-sided.
    fn pseudo(&self) -> Option<f64> {
        match (self.lo, self.hi) {
            (Some(l), Some(h)) => Some(0.5 * (l + h)),
            (Some(l), None) => Some(l),
            (None, Some(h)) => Some(h),
            (None, None) => None,
        }
    }

    pub fn is_two_sided(&self) -> bool {
        self.lo.is_some() && self.hi.is_some()
    }
}

/// How many points of each kind a fit used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub exact: usize,
    pub interval: usize,
    pub lower_bound: usize,
    pub upper_bound: usize,
}

impl Counts {
    pub fn of(points: &[Censored]) -> Counts {
        let mut c = Counts::default();
        for p in points {
            match (p.lo, p.hi) {
                (Some(l), Some(h)) if l == h => c.exact += 1,
                (Some(_), Some(_)) => c.interval += 1,
                (Some(_), None) => c.lower_bound += 1,
                (None, Some(_)) => c.upper_bound += 1,
                (None, None) => {}
            }
        }
        c
    }

    /// Points with a value or a two-sided interval.
    pub fn measured(&self) -> usize {
        self.exact + self.interval
    }

    pub fn bounded(&self) -> usize {
        self.lower_bound + self.upper_bound
    }
}

const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// ln erfc(x) for x >= 0 (Numerical Recipes' erfcc, relative error < 1.2e-7 everywhere,
/// computed in log space so it does not underflow).
fn ln_erfc_pos(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.5 * x);
    let poly = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07 + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    t.ln() + poly
}

/// ln Φ(z) of the standard normal.
pub fn ln_cdf(z: f64) -> f64 {
    let u = z / std::f64::consts::SQRT_2;
    if u <= 0.0 {
        ln_erfc_pos(-u) - std::f64::consts::LN_2
    } else {
        (-0.5 * ln_erfc_pos(u).exp()).ln_1p()
    }
}

/// ln(Φ(b) − Φ(a)) for a < b, stable in both tails.
fn ln_cdf_diff(a: f64, b: f64) -> f64 {
    if b <= 0.0 {
        let (la, lb) = (ln_cdf(a), ln_cdf(b));
        lb + (-(la - lb).exp()).ln_1p()
    } else if a >= 0.0 {
        ln_cdf_diff(-b, -a)
    } else {
        (ln_cdf(b).exp() - ln_cdf(a).exp()).ln()
    }
}

/// Negative log-likelihood of the law with parameters `p` (fit order) and σ.
fn nll(model: FitModel, p: &[f64], sigma: f64, pts: &[Censored]) -> f64 {
    let mut s = 0.0;
    for q in pts {
        let f = model.eval(p, q.x);
        let ll = match (q.lo, q.hi) {
            (Some(l), Some(h)) if h - l <= 1e-12 * h.abs().max(1.0) => {
                let z = (l - f) / sigma;
                -0.5 * z * z - sigma.ln() - LN_SQRT_2PI
            }
            (Some(l), Some(h)) => ln_cdf_diff((l - f) / sigma, (h - f) / sigma),
            (Some(l), None) => ln_cdf((f - l) / sigma),
            (None, Some(h)) => ln_cdf((h - f) / sigma),
            (None, None) => 0.0,
        };
        s -= ll;
    }
    if s.is_finite() {
        s
    } else {
        f64::INFINITY
    }
}

/// Minimise `f` from `x0` with initial steps `step` (Nelder–Mead, standard coefficients).
fn nelder_mead(f: &dyn Fn(&[f64]) -> f64, x0: &[f64], step: &[f64], iters: usize) -> (Vec<f64>, f64) {
    let n = x0.len();
    let mut simplex: Vec<(Vec<f64>, f64)> = Vec::with_capacity(n + 1);
    simplex.push((x0.to_vec(), f(x0)));
    for (i, s) in step.iter().enumerate() {
        let mut x = x0.to_vec();
        x[i] += s;
        let v = f(&x);
        simplex.push((x, v));
    }
    for _ in 0..iters {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        let (best, worst) = (simplex[0].1, simplex[n].1);
        if (worst - best).abs() <= 1e-12 * (1.0 + best.abs()) {
            break;
        }
        let centroid: Vec<f64> = (0..n).map(|j| simplex[..n].iter().map(|s| s.0[j]).sum::<f64>() / n as f64).collect();
        let along = |t: f64| -> Vec<f64> { (0..n).map(|j| centroid[j] + t * (simplex[n].0[j] - centroid[j])).collect() };
        let xr = along(-1.0);
        let fr = f(&xr);
        if fr < simplex[0].1 {
            let xe = along(-2.0);
            let fe = f(&xe);
            simplex[n] = if fe < fr { (xe, fe) } else { (xr, fr) };
        } else if fr < simplex[n - 1].1 {
            simplex[n] = (xr, fr);
        } else {
            let xc = if fr < simplex[n].1 { along(-0.5) } else { along(0.5) };
            let fc = f(&xc);
            if fc < fr.min(simplex[n].1) {
                simplex[n] = (xc, fc);
            } else {
                let x0 = simplex[0].0.clone();
                for s in simplex.iter_mut().skip(1) {
                    s.0 = (0..n).map(|j| x0[j] + 0.5 * (s.0[j] - x0[j])).collect();
                    s.1 = f(&s.0);
                }
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    simplex.swap_remove(0)
}

/// The σ floor: a quarter of the median two-sided interval width (1e-3 of the value scale when
/// there is none).
fn sigma_floor(pts: &[Censored]) -> f64 {
    let mut w: Vec<f64> = pts.iter().filter_map(|p| Some(p.hi? - p.lo?)).filter(|w| *w > 0.0).collect();
    w.sort_by(f64::total_cmp);
    if w.is_empty() {
        let scale = pts.iter().filter_map(Censored::pseudo).fold(0.0f64, |m, v| m.max(v.abs()));
        return 1e-3 * scale.max(1e-9);
    }
    0.25 * w[w.len() / 2]
}

/// Maximum-likelihood parameters (fit order) for censored points.
fn solve(model: FitModel, pts: &[Censored]) -> Result<Vec<f64>, Error> {
    let (xs, ys): (Vec<f64>, Vec<f64>) = pts.iter().filter_map(|p| Some((p.x, p.pseudo()?))).unzip();
    let start = fit::solve(model, &xs, &ys)?;
    let floor = sigma_floor(pts);
    let rms = (xs.iter().zip(&ys).map(|(x, y)| (model.eval(&start, *x) - y).powi(2)).sum::<f64>() / xs.len() as f64).sqrt();
    // Internal parameters: the exponential base as k = ln a (a > 0 always), σ = floor + e^s.
    let to_law = |q: &[f64]| -> Vec<f64> {
        match model {
            FitModel::Linear => vec![q[0], q[1]],
            FitModel::Exp => vec![q[0].exp(), q[1], q[2]],
        }
    };
    let np = model.param_names().len();
    let objective = |q: &[f64]| nll(model, &to_law(q), floor + q[np].exp(), pts);
    let mut x0: Vec<f64> = match model {
        FitModel::Linear => start.clone(),
        FitModel::Exp => vec![start[0].ln(), start[1], start[2]],
    };
    x0.push((rms.max(floor)).ln());
    let step: Vec<f64> = x0.iter().map(|v| 0.1 * v.abs().max(0.05)).collect();
    let (mut best, mut val) = nelder_mead(&objective, &x0, &step, 4000);
    for _ in 0..3 {
        let step: Vec<f64> = best.iter().map(|v| 0.05 * v.abs().max(0.01)).collect();
        let (b, v) = nelder_mead(&objective, &best, &step, 4000);
        let done = (val - v).abs() <= 1e-10 * (1.0 + v.abs());
        (best, val) = (b, v);
        if done {
            break;
        }
    }
    let p = to_law(&best);
    if !val.is_finite() || p.iter().any(|v| !v.is_finite()) {
        return Err(Error::Fit("the censored fit did not converge".into()));
    }
    Ok(p)
}

/// Fit `model` to censored points by maximum likelihood, with `bootstrap` seeded resamples for
/// the 95% intervals. Needs `model.min_points()` points, of which at least the law's number of
/// distinct x values are two-sided.
pub fn fit_censored(model: FitModel, pts: &[Censored], bootstrap: usize, seed: u64) -> Result<Fit, Error> {
    let pts: Vec<Censored> = pts.iter().copied().filter(|p| p.lo.is_some() || p.hi.is_some()).collect();
    if pts.len() < model.min_points() {
        return Err(Error::TooFewPoints { needed: model.min_points(), got: pts.len() });
    }
    if pts.iter().any(|p| !p.x.is_finite() || p.lo.is_some_and(|v| !v.is_finite()) || p.hi.is_some_and(|v| !v.is_finite())) {
        return Err(Error::Fit("non-finite value among the points".into()));
    }
    if pts.iter().any(|p| matches!((p.lo, p.hi), (Some(l), Some(h)) if l > h)) {
        return Err(Error::Fit("an interval has lo > hi".into()));
    }
    let two_sided = pts.iter().filter(|p| p.is_two_sided()).count();
    let needed = model.min_points() - 1;
    if two_sided < needed {
        return Err(Error::Fit(format!(
            "needs at least {needed} state sizes with a two-sided interval, got {two_sided} ({} only bounded on one side)",
            pts.len() - two_sided
        )));
    }
    let p = solve(model, &pts)?;
    let (mx, my): (Vec<f64>, Vec<f64>) = pts.iter().filter(|q| q.is_two_sided()).filter_map(|q| Some((q.x, q.pseudo()?))).unzip();
    let r2 = fit::r_squared(model, &p, &mx, &my);
    let mut draws: Vec<Vec<f64>> = vec![Vec::new(); p.len()];
    let mut rng = SplitMix64::new(seed);
    let mut sample = pts.clone();
    for _ in 0..bootstrap {
        for s in sample.iter_mut() {
            *s = pts[rng.below(pts.len())];
        }
        if let Ok(q) = solve(model, &sample) {
            if q.iter().all(|v| v.is_finite()) {
                for (d, v) in draws.iter_mut().zip(q) {
                    d.push(v);
                }
            }
        }
    }
    let ci = model
        .param_names()
        .iter()
        .zip(draws)
        .filter(|(_, d)| !d.is_empty())
        .map(|(name, mut d)| {
            d.sort_by(f64::total_cmp);
            ((*name).to_string(), (fit::percentile(&d, 0.025), fit::percentile(&d, 0.975)))
        })
        .collect();
    Ok(Fit {
        model,
        params: model.param_names().iter().zip(&p).map(|(k, v)| ((*k).to_string(), *v)).collect(),
        r2,
        ci,
        n: pts.len(),
        censoring: Some(Counts::of(&pts)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_cdf_by_hand() {
        assert!((ln_cdf(0.0) - 0.5f64.ln()).abs() < 1e-7);
        assert!((ln_cdf(1.959_963_985).exp() - 0.975).abs() < 1e-7);
        assert!((ln_cdf(-1.959_963_985).exp() - 0.025).abs() < 1e-7);
        // Far tail: ln Φ(−10) ≈ −53.231 (no underflow to −∞).
        assert!((ln_cdf(-10.0) + 53.231_285).abs() < 1e-3, "{}", ln_cdf(-10.0));
        assert!((ln_cdf_diff(-1.0, 1.0).exp() - 0.682_689_49).abs() < 1e-6);
        assert!((ln_cdf_diff(9.0, 10.0) - ln_cdf(-9.0)).abs() < 1e-3);
    }

    #[test]
    fn exact_points_reduce_to_least_squares() {
        let pts: Vec<Censored> = [(1.0, 1.1), (2.0, 1.9), (3.0, 3.2), (4.0, 3.9)].iter().map(|&(x, y)| Censored::exact(x, y)).collect();
        let ml = fit_censored(FitModel::Linear, &pts, 0, 0).unwrap();
        let ls = fit::fit(FitModel::Linear, &[1.0, 2.0, 3.0, 4.0], &[1.1, 1.9, 3.2, 3.9], 0, 0).unwrap();
        assert!((ml.param("a") - ls.param("a")).abs() < 1e-4 && (ml.param("b") - ls.param("b")).abs() < 1e-4, "{ml:?} {ls:?}");
        assert_eq!(ml.censoring, Some(Counts { exact: 4, ..Default::default() }));
    }

    /// Censors the paper's law on a grid of lengths `step` K tokens apart, between `shortest`
    /// and `longest`: (lo, hi] around the value, an upper bound when it is below the shortest
    /// length, a lower bound when above the longest.
    pub fn censor(law: impl Fn(f64) -> f64, xs: &[f64], step: f64, shortest: f64, longest: f64) -> Vec<Censored> {
        xs.iter()
            .map(|&x| {
                let t = law(x);
                if t <= shortest {
                    Censored { x, lo: None, hi: Some(shortest) }
                } else if t > longest {
                    Censored { x, lo: Some(longest), hi: None }
                } else {
                    let hi = (t / step).ceil() * step;
                    Censored { x, lo: Some(hi - step), hi: Some(hi) }
                }
            })
            .collect()
    }

    fn close(got: f64, want: f64) -> bool {
        ((got - want) / want).abs() < 0.05
    }

    /// The acceptance case: both laws of the paper, censored on a 64-token grid, 15 interval
    /// points plus an upper and a lower bound each, give back the constants within 5%.
    #[test]
    fn censored_fit_recovers_the_paper_laws_within_5_percent() {
        let mut xs: Vec<f64> = (2..=16).map(|i| i as f64 * 0.5).collect();
        let linear = |s: f64| 5.172 * s - 4.469;
        xs.extend([0.9, 10.0]);
        let pts = censor(linear, &xs, 0.0625, 0.25, 40.0);
        let c = Counts::of(&pts);
        assert_eq!((c.interval, c.upper_bound, c.lower_bound), (15, 1, 1));
        let f = fit_censored(FitModel::Linear, &pts, 0, 0).unwrap();
        assert!(close(f.param("a"), 5.172) && close(f.param("b"), -4.469), "{f:?}");

        let exp = |s: f64| 4.756 * (1.365f64.powf(s) - 1.0) - 0.742;
        xs.truncate(15);
        xs.extend([0.5, 9.0]);
        let pts = censor(exp, &xs, 0.0625, 0.125, 64.0);
        let c = Counts::of(&pts);
        assert_eq!((c.interval, c.upper_bound, c.lower_bound), (15, 1, 1));
        let f = fit_censored(FitModel::Exp, &pts, 0, 0).unwrap();
        assert!(close(f.param("a"), 1.365) && close(f.param("b"), 4.756) && close(f.param("c"), -0.742), "{f:?}");
    }

    /// A lower bound below the trend says nothing against it: the law keeps slope 1, where
    /// taking the bound as a value (2 at x = 4) would pull it down.
    #[test]
    fn bounds_count_as_bounds() {
        let mut pts: Vec<Censored> =
            [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)].iter().map(|&(x, y)| Censored { x, lo: Some(y - 0.5), hi: Some(y + 0.5) }).collect();
        pts.push(Censored { x: 4.0, lo: Some(2.0), hi: None });
        let f = fit_censored(FitModel::Linear, &pts, 20, 1).unwrap();
        assert!((f.param("a") - 1.0).abs() < 0.05 && f.predict(4.0) > 3.8, "{f:?}");
        assert_eq!(f.censoring.map(|c| (c.measured(), c.bounded())), Some((3, 1)));
        assert_eq!(f.to_json()["points"]["lower_bound"], 1);
    }
}
