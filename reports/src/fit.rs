// Capacity-law fits: linear T = a·S + b and exponential T = b·(a^S − 1) + c (the paper's forms),
// least squares (closed form for linear, Levenberg–Marquardt for exponential), R² and seeded
// bootstrap 95% intervals.
//
// Exponential parameterisation: internally a = e^k, so the model is b·expm1(k·S) + c and a > 0
// always. For a fixed k the model is linear in (b, c), which gives robust starting points: scan
// k over a geometric grid, solve (b, c) in closed form at each k, start LM from the best few
// (plus a log-linear guess) and keep the lowest residual sum of squares.
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use levenberg_marquardt::{LeastSquaresProblem, LevenbergMarquardt};
use nalgebra::storage::Owned;
use nalgebra::{DVector, Dyn, OMatrix, Vector3, U3};
use serde_json::{json, Map, Value};

use crate::rng::SplitMix64;
use crate::Error;

/// Bootstrap resamples used by [`fit_csv`] and by reports.
pub const DEFAULT_BOOTSTRAP: usize = 1000;
/// Bootstrap seed used by [`fit_csv`] and by reports.
pub const DEFAULT_SEED: u64 = 0;

/// The functional form of a capacity law.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FitModel {
    /// T = a·S + b
    Linear,
    /// T = b·(a^S − 1) + c
    Exp,
}

impl FitModel {
    /// Fewest points a fit of this form accepts.
    pub fn min_points(self) -> usize {
        match self {
            FitModel::Linear => 3,
            FitModel::Exp => 4,
        }
    }

    /// Fewest distinct x values that determine the parameters.
    fn min_distinct(self) -> usize {
        match self {
            FitModel::Linear => 2,
            FitModel::Exp => 3,
        }
    }

    /// Parameter names in the order `solve` returns them.
    pub fn param_names(self) -> &'static [&'static str] {
        match self {
            FitModel::Linear => &["a", "b"],
            FitModel::Exp => &["a", "b", "c"],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FitModel::Linear => "linear",
            FitModel::Exp => "exp",
        }
    }

    /// Evaluate the law with parameters in `param_names` order.
    pub fn eval(self, p: &[f64], x: f64) -> f64 {
        match self {
            FitModel::Linear => p[0] * x + p[1],
            FitModel::Exp => p[1] * (p[0].powf(x) - 1.0) + p[2],
        }
    }
}

impl FromStr for FitModel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "linear" | "lin" => Ok(FitModel::Linear),
            "exp" | "exponential" => Ok(FitModel::Exp),
            other => Err(Error::Fit(format!("unknown fit model \"{other}\" (linear or exp)"))),
        }
    }
}

/// A fitted law with its goodness of fit and bootstrap intervals.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    pub model: FitModel,
    /// a, b (and c for the exponential form)
    pub params: BTreeMap<String, f64>,
    /// 1 − SS_res / SS_tot
    pub r2: f64,
    /// Bootstrap 2.5 / 97.5 percentiles per parameter; empty when no resample could be fitted.
    pub ci: BTreeMap<String, (f64, f64)>,
    /// Number of points fitted.
    pub n: usize,
    /// Censored fits (`censored::fit_censored`): the points by kind; `None` for least squares.
    pub censoring: Option<crate::censored::Counts>,
}

impl Fit {
    /// A parameter by name (NaN when the model has no such parameter).
    pub fn param(&self, name: &str) -> f64 {
        self.params.get(name).copied().unwrap_or(f64::NAN)
    }

    fn ordered(&self) -> Vec<f64> {
        self.model.param_names().iter().map(|n| self.param(n)).collect()
    }

    /// The fitted T at state size x.
    pub fn predict(&self, x: f64) -> f64 {
        self.model.eval(&self.ordered(), x)
    }

    /// `{"a":..,"b":..,("c":..),"r2":..,"ci":{"a":[lo,hi],...},"n":..}`
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for name in self.model.param_names() {
            m.insert((*name).to_string(), json!(self.param(name)));
        }
        m.insert("r2".into(), json!(self.r2));
        let mut ci = Map::new();
        for name in self.model.param_names() {
            if let Some((lo, hi)) = self.ci.get(*name) {
                ci.insert((*name).to_string(), json!([lo, hi]));
            }
        }
        m.insert("ci".into(), Value::Object(ci));
        m.insert("n".into(), json!(self.n));
        if let Some(c) = &self.censoring {
            m.insert("method".into(), json!("interval_censored_ml"));
            m.insert(
                "points".into(),
                json!({"exact": c.exact, "interval": c.interval, "lower_bound": c.lower_bound, "upper_bound": c.upper_bound,
                       "measured": c.measured(), "bounded": c.bounded()}),
            );
        }
        Value::Object(m)
    }

    /// The law as text, e.g. `T = 5.172·S − 4.469 (R² = 0.999)`.
    pub fn equation(&self) -> String {
        format!("{} (R² = {:.3})", self.law(), self.r2)
    }

    /// The law without R², e.g. `T = 4.756·(1.365^S − 1) − 0.742`.
    pub fn law(&self) -> String {
        match self.model {
            FitModel::Linear => {
                format!("T = {}·S {}", fmt_coef(self.param("a")), signed(self.param("b")))
            }
            FitModel::Exp => format!("T = {}·({}^S − 1) {}", fmt_coef(self.param("b")), fmt_coef(self.param("a")), signed(self.param("c"))),
        }
    }
}

/// A coefficient with three decimals, or in scientific notation when very large or small.
pub fn fmt_coef(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 || (1e-3..1e5).contains(&a) {
        format!("{v:.3}")
    } else if v.is_finite() {
        format!("{v:.3e}")
    } else {
        format!("{v}")
    }
}

/// "+ 1.000" or "− 1.000" (with a true minus sign).
fn signed(v: f64) -> String {
    if v < 0.0 {
        format!("− {}", fmt_coef(-v))
    } else {
        format!("+ {}", fmt_coef(v))
    }
}

/// Fit `model` to the points, with `bootstrap` seeded resamples for the 95% intervals
/// (0 for none).
pub fn fit(model: FitModel, xs: &[f64], ys: &[f64], bootstrap: usize, seed: u64) -> Result<Fit, Error> {
    let p = solve(model, xs, ys)?;
    let r2 = r_squared(model, &p, xs, ys);
    let ci = bootstrap_ci(model, xs, ys, bootstrap, seed);
    let params = model.param_names().iter().zip(&p).map(|(k, v)| ((*k).to_string(), *v)).collect();
    Ok(Fit { model, params, r2, ci, n: xs.len(), censoring: None })
}

/// Read columns `xcol` and `ycol` of a CSV file with a header row and fit `model` to them
/// ([`DEFAULT_BOOTSTRAP`] resamples, seed [`DEFAULT_SEED`]).
pub fn fit_csv(path: impl AsRef<Path>, model: FitModel, xcol: &str, ycol: &str) -> Result<Fit, Error> {
    fit_csv_with(path, model, xcol, ycol, DEFAULT_BOOTSTRAP, DEFAULT_SEED)
}

/// [`fit_csv`] with an explicit bootstrap count and seed.
pub fn fit_csv_with(path: impl AsRef<Path>, model: FitModel, xcol: &str, ycol: &str, bootstrap: usize, seed: u64) -> Result<Fit, Error> {
    let cols = crate::csv::read_columns(path.as_ref(), &[xcol, ycol])?;
    fit(model, &cols[0], &cols[1], bootstrap, seed)
}

/// 1 − SS_res / SS_tot (1 for a perfect fit of constant data, 0 for an imperfect one).
pub fn r_squared(model: FitModel, p: &[f64], xs: &[f64], ys: &[f64]) -> f64 {
    let mean = ys.iter().sum::<f64>() / ys.len() as f64;
    let ss_tot: f64 = ys.iter().map(|y| (y - mean).powi(2)).sum();
    let ss_res = sse(model, p, xs, ys);
    if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else if ss_res == 0.0 {
        1.0
    } else {
        0.0
    }
}

fn sse(model: FitModel, p: &[f64], xs: &[f64], ys: &[f64]) -> f64 {
    xs.iter().zip(ys).map(|(x, y)| (model.eval(p, *x) - y).powi(2)).sum()
}

fn distinct(xs: &[f64]) -> usize {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v.len()
}

/// Least-squares parameters in `param_names` order.
pub(crate) fn solve(model: FitModel, xs: &[f64], ys: &[f64]) -> Result<Vec<f64>, Error> {
    if xs.len() != ys.len() {
        return Err(Error::Fit(format!("{} x values but {} y values", xs.len(), ys.len())));
    }
    if xs.len() < model.min_points() {
        return Err(Error::TooFewPoints { needed: model.min_points(), got: xs.len() });
    }
    if xs.iter().chain(ys).any(|v| !v.is_finite()) {
        return Err(Error::Fit("non-finite value among the points".into()));
    }
    if distinct(xs) < model.min_distinct() {
        return Err(Error::Fit(format!("the {} law needs at least {} distinct x values", model.name(), model.min_distinct())));
    }
    match model {
        FitModel::Linear => solve_linear(xs, ys),
        FitModel::Exp => solve_exp(xs, ys),
    }
}

fn solve_linear(xs: &[f64], ys: &[f64]) -> Result<Vec<f64>, Error> {
    let n = xs.len() as f64;
    let mx = xs.iter().sum::<f64>() / n;
    let my = ys.iter().sum::<f64>() / n;
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    if sxx <= 0.0 {
        return Err(Error::Fit("all x values are equal".into()));
    }
    let a = sxy / sxx;
    Ok(vec![a, my - a * mx])
}

/// For a fixed k, the least-squares (b, c) of y = b·expm1(k·x) + c and its SSE.
fn bc_for_k(k: f64, xs: &[f64], ys: &[f64]) -> Option<(f64, f64, f64)> {
    let g: Vec<f64> = xs.iter().map(|x| (k * x).exp_m1()).collect();
    if g.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let n = xs.len() as f64;
    let mg = g.iter().sum::<f64>() / n;
    let my = ys.iter().sum::<f64>() / n;
    let sgg: f64 = g.iter().map(|v| (v - mg).powi(2)).sum();
    let sgy: f64 = g.iter().zip(ys).map(|(v, y)| (v - mg) * (y - my)).sum();
    if sgg <= 0.0 || !sgg.is_finite() {
        return None;
    }
    let b = sgy / sgg;
    let c = my - b * mg;
    let e: f64 = g.iter().zip(ys).map(|(v, y)| (b * v + c - y).powi(2)).sum();
    e.is_finite().then_some((b, c, e))
}

/// The exponential law in the (k, b, c) parameterisation, for Levenberg–Marquardt.
struct ExpProblem<'a> {
    xs: &'a [f64],
    ys: &'a [f64],
    p: Vector3<f64>, // (k, b, c)
}

impl LeastSquaresProblem<f64, Dyn, U3> for ExpProblem<'_> {
    type ResidualStorage = Owned<f64, Dyn>;
    type JacobianStorage = Owned<f64, Dyn, U3>;
    type ParameterStorage = Owned<f64, U3>;

    fn set_params(&mut self, p: &Vector3<f64>) {
        self.p.copy_from(p);
    }

    fn params(&self) -> Vector3<f64> {
        self.p
    }

    fn residuals(&self) -> Option<DVector<f64>> {
        let (k, b, c) = (self.p[0], self.p[1], self.p[2]);
        let r = DVector::from_iterator(self.xs.len(), self.xs.iter().zip(self.ys).map(|(x, y)| b * (k * x).exp_m1() + c - y));
        r.iter().all(|v| v.is_finite()).then_some(r)
    }

    fn jacobian(&self) -> Option<OMatrix<f64, Dyn, U3>> {
        let (k, b) = (self.p[0], self.p[1]);
        let mut j = OMatrix::<f64, Dyn, U3>::zeros(self.xs.len());
        for (i, x) in self.xs.iter().enumerate() {
            j[(i, 0)] = b * x * (k * x).exp();
            j[(i, 1)] = (k * x).exp_m1();
            j[(i, 2)] = 1.0;
        }
        j.iter().all(|v| v.is_finite()).then_some(j)
    }
}

/// Starting values of k: a geometric grid of k·max|x| in ±[1e-3, 60], and a log-linear guess.
fn k_starts(xs: &[f64], ys: &[f64]) -> Vec<f64> {
    let xmax = xs.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let mut ks = Vec::new();
    let steps = 48;
    for i in 0..=steps {
        let u = 1e-3 * (60.0f64 / 1e-3).powf(i as f64 / steps as f64);
        ks.push(u / xmax);
        ks.push(-u / xmax);
    }
    // log-linear guess: ln(y − min y + δ) ≈ k·x + const
    let lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let delta = 0.05 * (hi - lo) + f64::MIN_POSITIVE;
    let ly: Vec<f64> = ys.iter().map(|y| (y - lo + delta).ln()).collect();
    if let Ok(p) = solve_linear(xs, &ly) {
        if p[0].is_finite() && p[0] != 0.0 {
            ks.push(p[0]);
        }
    }
    ks
}

fn solve_exp(xs: &[f64], ys: &[f64]) -> Result<Vec<f64>, Error> {
    // (sse, k, b, c) candidates from the variable-projection scan
    let mut cands: Vec<(f64, f64, f64, f64)> =
        k_starts(xs, ys).into_iter().filter_map(|k| bc_for_k(k, xs, ys).map(|(b, c, e)| (e, k, b, c))).collect();
    cands.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut best = cands.first().copied();
    let lm = LevenbergMarquardt::new().with_patience(200);
    for &(_, k, b, c) in cands.iter().take(4) {
        let problem = ExpProblem { xs, ys, p: Vector3::new(k, b, c) };
        let (done, _report) = lm.minimize(problem);
        let (k, b, c) = (done.p[0], done.p[1], done.p[2]);
        if !(k.is_finite() && b.is_finite() && c.is_finite()) {
            continue;
        }
        let e: f64 = xs.iter().zip(ys).map(|(x, y)| (b * (k * x).exp_m1() + c - y).powi(2)).sum();
        if e.is_finite() && best.is_none_or(|bst| e < bst.0) {
            best = Some((e, k, b, c));
        }
    }
    let (_, k, b, c) = best.ok_or_else(|| Error::Fit("exponential fit did not converge".into()))?;
    let a = k.exp();
    if !a.is_finite() || a <= 0.0 {
        return Err(Error::NotExponential { n: xs.len(), log_a: k });
    }
    Ok(vec![a, b, c])
}

/// Percentile with linear interpolation between order statistics; `sorted` is ascending.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let pos = p * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn bootstrap_ci(model: FitModel, xs: &[f64], ys: &[f64], resamples: usize, seed: u64) -> BTreeMap<String, (f64, f64)> {
    let names = model.param_names();
    let mut draws: Vec<Vec<f64>> = vec![Vec::with_capacity(resamples); names.len()];
    let mut rng = SplitMix64::new(seed);
    let n = xs.len();
    let (mut rx, mut ry) = (vec![0.0; n], vec![0.0; n]);
    for _ in 0..resamples {
        for i in 0..n {
            let j = rng.below(n);
            rx[i] = xs[j];
            ry[i] = ys[j];
        }
        let Ok(p) = solve(model, &rx, &ry) else {
            continue;
        };
        if p.iter().all(|v| v.is_finite()) {
            for (d, v) in draws.iter_mut().zip(p) {
                d.push(v);
            }
        }
    }
    let mut ci = BTreeMap::new();
    for (name, mut d) in names.iter().zip(draws) {
        if d.is_empty() {
            continue;
        }
        d.sort_by(f64::total_cmp);
        ci.insert((*name).to_string(), (percentile(&d, 0.025), percentile(&d, 0.975)));
    }
    ci
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_linear_and_exp_points_are_recovered() {
        let xs: Vec<f64> = (1..=6).map(f64::from).collect();
        let ys: Vec<f64> = xs.iter().map(|x| 2.0 * x - 1.0).collect();
        let f = fit(FitModel::Linear, &xs, &ys, 0, 0).expect("linear fit");
        assert!((f.param("a") - 2.0).abs() < 1e-12 && (f.param("b") + 1.0).abs() < 1e-12);
        assert!((f.r2 - 1.0).abs() < 1e-12);
        assert!(f.ci.is_empty());

        let ys: Vec<f64> = xs.iter().map(|x| 3.0 * (1.5f64.powf(*x) - 1.0) + 0.5).collect();
        let f = fit(FitModel::Exp, &xs, &ys, 0, 0).expect("exp fit");
        assert!((f.param("a") - 1.5).abs() < 1e-6, "{f:?}");
        assert!((f.param("b") - 3.0).abs() < 1e-4, "{f:?}");
        assert!((f.param("c") - 0.5).abs() < 1e-4, "{f:?}");
    }

    #[test]
    fn equation_text() {
        let mut params = BTreeMap::new();
        params.insert("a".to_string(), 5.172);
        params.insert("b".to_string(), -4.469);
        let f = Fit { model: FitModel::Linear, params, r2: 0.9991, ci: BTreeMap::new(), n: 5, censoring: None };
        assert_eq!(f.equation(), "T = 5.172·S − 4.469 (R² = 0.999)");
        let mut params = BTreeMap::new();
        params.insert("a".to_string(), 1.365);
        params.insert("b".to_string(), 4.756);
        params.insert("c".to_string(), -0.742);
        let f = Fit { model: FitModel::Exp, params, r2: 0.9995, ci: BTreeMap::new(), n: 5, censoring: None };
        assert_eq!(f.law(), "T = 4.756·(1.365^S − 1) − 0.742");
    }

    #[test]
    fn json_shape() {
        let xs = [1.0, 2.0, 3.0, 4.0];
        let ys = [1.1, 1.9, 3.2, 3.9];
        let f = fit(FitModel::Linear, &xs, &ys, 50, 3).expect("fit");
        let text = f.to_json().to_string();
        assert!(text.starts_with("{\"a\":"), "{text}");
        let json = f.to_json();
        let keys: Vec<&String> = json.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["a", "b", "r2", "ci", "n"]);
        assert_eq!(f.to_json()["ci"]["a"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn model_names_parse() {
        assert_eq!("linear".parse::<FitModel>().ok(), Some(FitModel::Linear));
        assert_eq!("exp".parse::<FitModel>().ok(), Some(FitModel::Exp));
        assert!("cubic".parse::<FitModel>().is_err());
    }
}
