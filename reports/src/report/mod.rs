// `write_report`: derive the measurements, fit the laws, draw every figure the data supports and
// write index.html, README.md, fits.json and the fitted points as CSV. Deterministic: the same
// input gives byte-identical files (canonical record order, fixed float formatting, no clock).
mod figs;
mod html;
pub use html::esc as html_escape;
mod markdown;
mod search;
mod summary;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::data::{JobRecord, ReportData};
use crate::derive::{self, ForgetRow, JobRecall, StateRecall};
use crate::fit::{Fit, FitModel, DEFAULT_BOOTSTRAP, DEFAULT_SEED};
use crate::Error;
use stuffed_protocol::job::label_value;

/// The paper's forget-threshold law (K tokens, millions of state parameters).
pub const PAPER_FORGET_LAW: &str = "T = 5.172·S − 4.469";
/// The paper's recall law (K tokens, millions of state parameters).
pub const PAPER_RECALL_LAW: &str = "T = 4.756·(1.365^S − 1) − 0.742";

/// How a report looks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportOptions {
    /// Log-scale y on the capacity-law figures.
    pub log_scale: bool,
    /// Page title; "Stuffed Mamba: state capacity report" when `None`.
    pub title: Option<String>,
}

/// What `write_report` wrote and left out.
#[derive(Debug, Clone, Default)]
pub struct ReportSummary {
    /// Every file written, in the order written (figures first, then tables and pages).
    pub files: Vec<PathBuf>,
    /// (figure, reason) for every figure or fit the data did not support.
    pub skipped: Vec<(String, String)>,
    pub forget: Vec<ForgetRow>,
    pub recalls: Vec<StateRecall>,
    pub forget_fit: Option<Fit>,
    pub recall_fit: Option<Fit>,
}

/// One figure of the report: its section, caption and path stem relative to the output dir.
#[derive(Debug, Clone)]
pub(crate) struct FigureEntry {
    pub section: &'static str,
    pub caption: String,
    /// Shown after the caption (e.g. how the curves were smoothed for display).
    pub note: Option<String>,
    pub stem: String,
}

/// Everything derived from the data, shared by the page writers.
pub(crate) struct Analysis {
    pub data: ReportData,
    pub title: String,
    /// The jobs come from more than one sweep: per-sweep figures name their sweep.
    pub multi_sweep: bool,
    pub forget: Vec<ForgetRow>,
    pub job_recalls: Vec<JobRecall>,
    pub recalls: Vec<StateRecall>,
    pub forget_fit: Option<Fit>,
    pub recall_fit: Option<Fit>,
    /// Loss evaluations during training (`evals_at`), by job, evaluation and step.
    pub during: Vec<derive::DuringRow>,
    /// Loss evaluations with a longer-trained control, compared with it (`control`).
    pub controls: Vec<crate::control::ControlRow>,
    /// The final state diagnostics of every job that has them, in three numbers.
    pub states: Vec<derive::StateSummary>,
    pub figures: Vec<FigureEntry>,
    pub skipped: Vec<(String, String)>,
    /// (campaign dir, REPRODUCTION.md) relative to the output dir, when the report is written
    /// from a checkout that has them (`make demo` runs in the repository root).
    pub campaign_links: Option<(String, String)>,
}

/// `to` relative to the directory `from` (both made absolute), e.g. "../h200-campaign/".
fn relative(from: &Path, to: &Path) -> Option<String> {
    let (from, to) = (from.canonicalize().ok()?, to.canonicalize().ok()?);
    let common = from.components().zip(to.components()).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in from.components().skip(common) {
        rel.push("..");
    }
    rel.extend(to.components().skip(common));
    Some(rel.to_string_lossy().into_owned())
}

/// Links from `out_dir` to the campaign results and REPRODUCTION.md of the checkout the report
/// is written from (the current directory), if it has them and the report is written inside
/// it: a report written elsewhere names them without links, so that its bytes do not depend
/// on where it was written (a committed report regenerates byte for byte anywhere).
fn campaign_links(out_dir: &Path) -> Option<(String, String)> {
    let cwd = std::env::current_dir().ok()?.canonicalize().ok()?;
    if !out_dir.canonicalize().ok()?.starts_with(&cwd) {
        return None;
    }
    let dir = relative(out_dir, Path::new(summary::CAMPAIGN_DIR))?;
    let doc = relative(out_dir, Path::new(summary::REPRODUCTION))?;
    Some((format!("{dir}/"), doc))
}

/// The comparisons with a longer-trained control, as JSON (written only when there are some).
pub const CONTROLS_JSON: &str = "controls.json";

/// The stages of `write_report_with_progress` (the calls of its `progress`): the two fits,
/// the figure groups and the pages.
pub const REPORT_STAGES: usize = 3 + figs::GROUPS.len();

/// Write the full report of `data` into `out_dir` (created if missing).
pub fn write_report(data: &ReportData, out_dir: &Path, opts: &ReportOptions) -> Result<ReportSummary, Error> {
    write_report_with_progress(data, out_dir, opts, &mut |_| {})
}

/// `write_report`, calling `progress` with the name of each of its `REPORT_STAGES` stages as
/// it begins (for a progress bar).
pub fn write_report_with_progress(
    data: &ReportData,
    out_dir: &Path,
    opts: &ReportOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<ReportSummary, Error> {
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let mut data = data.canonical();
    drop_shared_label_parts(&mut data.jobs);
    let controls = crate::control::control_rows(&data);
    let forget = derive::t_forget_with(&data, &controls);
    let job_recalls = derive::job_recalls(&data);
    let recalls = derive::state_recalls(&job_recalls);
    let during = derive::during_training(&data);
    let states = derive::state_summaries(&data);
    let sweeps: BTreeSet<&str> = data.jobs.iter().map(|j| j.sweep.as_str()).collect();
    let multi_sweep = sweeps.len() > 1;
    let mut a = Analysis {
        multi_sweep,
        title: opts.title.clone().unwrap_or_else(|| "Stuffed Mamba: state capacity report".into()),
        data,
        forget,
        job_recalls,
        recalls,
        forget_fit: None,
        recall_fit: None,
        during,
        controls,
        states,
        figures: Vec::new(),
        skipped: Vec::new(),
        campaign_links: campaign_links(out_dir),
    };
    // Both laws are fitted to censored thresholds (intervals and one-sided bounds) by maximum
    // likelihood (`censored`), not to points alone.
    progress("fitting T_forget");
    let fpts = derive::forget_censored(&a.forget);
    a.forget_fit = fit_or_skip(&mut a.skipped, "T_forget fit", "state sizes with a T_forget interval or bound", FitModel::Linear, &fpts);
    progress("fitting T_recall");
    let rpts = derive::recall_censored(&a.recalls);
    a.recall_fit = fit_or_skip(&mut a.skipped, "T_recall fit", "state sizes with a T_recall interval or bound", FitModel::Exp, &rpts);

    let mut files = figs::draw_all(&mut a, out_dir, opts, progress)?;
    progress("pages");
    files.push(write(
        out_dir,
        "t_forget_points.csv",
        &censored_csv("t_forget", &a.forget.iter().filter_map(|r| Some((r.state_size, r.censored()?))).collect::<Vec<_>>()),
    )?);
    files.push(write(
        out_dir,
        "t_recall_points.csv",
        &censored_csv("t_recall", &a.recalls.iter().filter_map(|r| Some((r.state_size, r.censored()?))).collect::<Vec<_>>()),
    )?);
    files.push(write(out_dir, "fits.json", &fits_json(&a))?);
    if !a.controls.is_empty() {
        let mut text = serde_json::to_string_pretty(&a.controls).unwrap_or_else(|_| "[]".into());
        text.push('\n');
        files.push(write(out_dir, CONTROLS_JSON, &text)?);
    }
    files.push(write(out_dir, "index.html", &html::page(&a))?);
    files.push(write(out_dir, "README.md", &markdown::page(&a))?);
    Ok(ReportSummary {
        files,
        skipped: a.skipped,
        forget: a.forget,
        recalls: a.recalls,
        forget_fit: a.forget_fit,
        recall_fit: a.recall_fit,
    })
}

fn fit_or_skip(
    skipped: &mut Vec<(String, String)>,
    name: &str,
    what: &str,
    model: FitModel,
    pts: &[crate::censored::Censored],
) -> Option<Fit> {
    match crate::censored::fit_censored(model, pts, DEFAULT_BOOTSTRAP, DEFAULT_SEED) {
        Ok(f) => Some(f),
        Err(Error::TooFewPoints { needed, got }) => {
            skipped.push((name.into(), format!("needs at least {needed} {what}, got {got}")));
            None
        }
        Err(Error::NotExponential { n, log_a }) => {
            skipped.push((
                name.into(),
                format!(
                    "the {n} points ({what}) do not follow an exponential law T = b·(a^S − 1) + c; \
                     the closest such curve has a base a = e^{log_a:.1}, which cannot be represented"
                ),
            ));
            None
        }
        Err(e) => {
            skipped.push((name.into(), e.to_string()));
            None
        }
    }
}

fn write(out_dir: &Path, name: &str, text: &str) -> Result<PathBuf, Error> {
    let path = out_dir.join(name);
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}

/// The censored points the laws are fitted to, in the units of the laws: the threshold lies in
/// (T_lo_K, T_hi_K]; an empty end is unbounded (`stuffed fit --lo T_lo_K --hi T_hi_K` reads it).
fn censored_csv(name: &str, rows: &[(i64, crate::censored::Censored)]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let header = ["state_size".to_string(), "S_M".into(), format!("{name}_lo_K"), format!("{name}_hi_K"), "kind".into()];
    // Writing to memory cannot fail.
    let _ = w.write_record(&header);
    for (state, c) in rows {
        let kind = match (c.lo, c.hi) {
            (Some(_), Some(_)) => "interval",
            (Some(_), None) => "lower_bound",
            _ => "upper_bound",
        };
        let _ = w.write_record([state.to_string(), c.x.to_string(), opt(c.lo), opt(c.hi), kind.into()]);
    }
    w.into_inner().ok().and_then(|b| String::from_utf8(b).ok()).unwrap_or_default()
}

fn fits_json(a: &Analysis) -> String {
    let f = |x: &Option<Fit>| x.as_ref().map(Fit::to_json).unwrap_or(Value::Null);
    let v = json!({
        "units": {"S": "millions of state parameters", "T": "thousands of tokens"},
        "t_forget": f(&a.forget_fit),
        "t_recall": f(&a.recall_fit),
        "paper": {
            "t_forget": {"a": 5.172, "b": -4.469},
            "t_recall": {"a": 1.365, "b": 4.756, "c": -0.742}
        }
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_else(|_| "null".into());
    s.push('\n');
    s
}

/// A file-name-safe slug: letters, digits, '.', '_' and '-' kept, runs of others become '-'.
pub(crate) fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let t = out.trim_matches('-').to_string();
    if t.is_empty() {
        "x".into()
    } else {
        t
    }
}

/// Unique slugs for job ids (a numeric suffix disambiguates ids that slug the same).
pub(crate) fn job_slugs(data: &ReportData) -> BTreeMap<String, String> {
    let mut used = BTreeSet::new();
    let mut ids: Vec<&str> = data.jobs.iter().map(|j| j.id.as_str()).collect();
    ids.sort_unstable();
    let mut out = BTreeMap::new();
    for id in ids {
        let base = slug(id);
        let mut s = base.clone();
        let mut k = 2;
        while !used.insert(s.clone()) {
            s = format!("{base}-{k}");
            k += 1;
        }
        out.insert(id.to_string(), s);
    }
    out
}

/// Labels without the `key=value` parts that every job of their sweep shares. A sweep's `set:`
/// entry is an axis of one value, which the stored label shows (`grad_clip=10.0`) so that a
/// job names its override; where every job of the sweep has it, it only lengthens each legend
/// and table row (lease 5's labels carried the whole passkey mixture). A label left empty, or
/// one that would then repeat another's, stays as stored.
fn drop_shared_label_parts(jobs: &mut [JobRecord]) {
    let mut by_sweep: BTreeMap<String, Vec<&mut JobRecord>> = BTreeMap::new();
    for j in jobs.iter_mut() {
        by_sweep.entry(j.sweep.clone()).or_default().push(j);
    }
    for of_sweep in by_sweep.values_mut() {
        drop_shared_in(of_sweep);
    }
}

/// [`drop_shared_label_parts`] for the jobs of one sweep.
fn drop_shared_in(jobs: &mut [&mut JobRecord]) {
    let Some(first) = jobs.first() else { return };
    if jobs.len() < 2 {
        return;
    }
    let shared: Vec<(String, String)> = first
        .varied
        .iter()
        .filter(|(k, v)| jobs.iter().all(|j| j.varied.get(*k) == Some(*v)))
        .map(|(k, v)| (k.clone(), label_value(v)))
        .collect();
    if shared.is_empty() {
        return;
    }
    let short: Vec<String> = jobs.iter().map(|j| without_parts(&j.label, &shared)).collect();
    let before: BTreeSet<&str> = jobs.iter().map(|j| j.label.as_str()).collect();
    let after: BTreeSet<&str> = short.iter().map(String::as_str).collect();
    if after.len() < before.len() || short.iter().any(String::is_empty) {
        return;
    }
    for (j, l) in jobs.iter_mut().zip(short) {
        j.label = l;
    }
}

/// `label` without the parts `name=value` of `parts` (keys by their full name or last segment,
/// as the sweep names them), each matched as a whole space-separated part.
fn without_parts(label: &str, parts: &[(String, String)]) -> String {
    let mut out = format!(" {label} ");
    for (key, value) in parts {
        let last = key.rsplit('.').next().unwrap_or(key);
        for name in [last, key.as_str()] {
            let part = format!(" {name}={value} ");
            if let Some(at) = out.find(&part) {
                out.replace_range(at..at + part.len(), " ");
                break;
            }
        }
    }
    out.trim().to_string()
}

/// The label to show for a job in a table: its label (its id when the label is empty), after
/// its sweep when the report holds several sweeps (labels are per sweep: lease 3's `seed=1`
/// names a job of each of its two sweeps).
pub(crate) fn job_label(a: &Analysis, id: &str) -> String {
    match a.data.job(id) {
        Some(j) => job_title(a, j),
        None => id.to_string(),
    }
}

/// A job's label within its sweep (its id when the label is empty).
pub(crate) fn label_of(j: &JobRecord) -> String {
    if j.label.is_empty() {
        j.id.clone()
    } else {
        j.label.clone()
    }
}

/// A job's name in the title of a per-job figure: its label, after its sweep when the report
/// holds several sweeps.
pub(crate) fn job_title(a: &Analysis, j: &JobRecord) -> String {
    if a.multi_sweep {
        format!("{}: {}", j.sweep, label_of(j))
    } else {
        label_of(j)
    }
}

/// Legend labels for the jobs of one figure, unique within it: "sweep: label" when the jobs
/// come from more than one sweep, and the job id appended to labels that still repeat.
pub(crate) fn unique_labels(jobs: &[&JobRecord]) -> Vec<String> {
    let sweeps: BTreeSet<&str> = jobs.iter().map(|j| j.sweep.as_str()).collect();
    let base: Vec<String> =
        jobs.iter().map(|j| if sweeps.len() > 1 { format!("{}: {}", j.sweep, label_of(j)) } else { label_of(j) }).collect();
    base.iter()
        .zip(jobs)
        .map(|(l, j)| {
            let repeated = base.iter().filter(|b| *b == l).count() > 1;
            if repeated && *l != j.id {
                format!("{l} ({})", j.id)
            } else {
                l.clone()
            }
        })
        .collect()
}

/// Jobs grouped by sweep (sweeps by name, jobs in canonical order within), each id once.
pub(crate) fn ordered_jobs(a: &Analysis) -> Vec<&JobRecord> {
    let mut jobs: Vec<&JobRecord> = a.data.jobs.iter().collect();
    jobs.sort_by(|x, y| x.sweep.cmp(&y.sweep)); // stable: canonical order within a sweep
    let mut seen = BTreeSet::new();
    jobs.retain(|j| seen.insert(j.id.as_str()));
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_within_a_figure() {
        let job = |id: &str, sweep: &str, label: &str| JobRecord {
            id: id.into(),
            sweep: sweep.into(),
            label: label.into(),
            ..JobRecord::default()
        };
        let (a, b, c) =
            (job("j1", "forget", "d_state=8 seq_len=256"), job("j2", "recall", "d_state=8 seq_len=256"), job("j3", "recall", ""));
        // several sweeps: the sweep goes first; an empty label falls back to the id
        assert_eq!(unique_labels(&[&a, &b, &c]), ["forget: d_state=8 seq_len=256", "recall: d_state=8 seq_len=256", "recall: j3"]);
        // one sweep: plain labels, the id after labels that repeat
        let d = job("j4", "recall", "d_state=8 seq_len=256");
        assert_eq!(unique_labels(&[&b, &d, &c]), ["d_state=8 seq_len=256 (j2)", "d_state=8 seq_len=256 (j4)", "j3"]);
    }

    #[test]
    fn labels_drop_what_every_job_shares() {
        let job = |id: &str, label: &str, varied: Value| JobRecord {
            id: id.into(),
            sweep: "recall".into(),
            label: label.into(),
            varied: varied.as_object().cloned().unwrap_or_default(),
            ..JobRecord::default()
        };
        let mix = json!([{"source": "corpus", "weight": 0.25}, {"source": "passkey", "weight": 0.75}]);
        let label = |n: i64, seed: i64| format!("d_state={n} mixture={mix} grad_clip=10.0 seed={seed}");
        let varied = |n: i64, seed: i64| json!({"model.d_state": n, "data.mixture": mix, "train.grad_clip": 10.0, "train.seed": seed});
        let mut jobs = vec![job("a", &label(256, 0), varied(256, 0)), job("b", &label(512, 0), varied(512, 0))];
        drop_shared_label_parts(&mut jobs);
        assert_eq!([jobs[0].label.as_str(), jobs[1].label.as_str()], ["d_state=256", "d_state=512"]);
        // a value that only some jobs share stays; a full key name is matched too
        let mut jobs = vec![
            job("a", "model.d_state=256 seed=0", json!({"model.d_state": 256, "train.seed": 0})),
            job("b", "model.d_state=256 seed=1", json!({"model.d_state": 256, "train.seed": 1})),
            job("c", "model.d_state=512 seed=1", json!({"model.d_state": 512, "train.seed": 1})),
        ];
        drop_shared_label_parts(&mut jobs);
        assert_eq!(
            jobs.iter().map(|j| j.label.as_str()).collect::<Vec<_>>(),
            ["model.d_state=256 seed=0", "model.d_state=256 seed=1", "model.d_state=512 seed=1"]
        );
        // nothing left, or labels that would repeat: kept as stored
        let mut jobs = vec![job("a", "seed=0", json!({"train.seed": 0})), job("b", "seed=0", json!({"train.seed": 0}))];
        drop_shared_label_parts(&mut jobs);
        assert_eq!(jobs[0].label, "seed=0");
        let mut jobs = vec![job("a", "lr=0.1 seed=0", json!({"train.seed": 0})), job("b", "lr=0.2 seed=0", json!({"train.seed": 0}))];
        drop_shared_label_parts(&mut jobs);
        assert_eq!([jobs[0].label.as_str(), jobs[1].label.as_str()], ["lr=0.1", "lr=0.2"]);
        // per sweep: what one sweep's jobs share goes, though another sweep's jobs lack it
        let mut jobs = vec![
            job("a", &label(256, 0), varied(256, 0)),
            job("b", &label(512, 0), varied(512, 0)),
            JobRecord { sweep: "forget".into(), ..job("c", "seq_len=128", json!({"train.seq_len": 128})) },
        ];
        drop_shared_label_parts(&mut jobs);
        assert_eq!(jobs.iter().map(|j| j.label.as_str()).collect::<Vec<_>>(), ["d_state=256", "d_state=512", "seq_len=128"]);
    }

    #[test]
    fn slugs_are_safe() {
        assert_eq!(slug("rri:decay=0.9999,b=0.75"), "rri-decay-0.9999-b-0.75");
        assert_eq!(slug("//"), "x");
    }
}

/// Shared cell text of the report tables.
pub(crate) mod cells {
    use super::Analysis;
    use crate::derive::job_verdict;
    use crate::fit::{fmt_coef, Fit};

    pub const NONE: &str = "—";

    /// Collapse verdict of a job, in words.
    pub fn verdict(a: &Analysis, job_id: &str) -> &'static str {
        job_verdict(&a.data, job_id).map_or(NONE, |v| v.words())
    }

    pub fn opt_int(v: Option<i64>) -> String {
        v.map(|v| v.to_string()).unwrap_or_else(|| NONE.into())
    }

    pub fn ints(v: &[i64]) -> String {
        if v.is_empty() {
            return NONE.into();
        }
        v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
    }

    pub fn final_loss(a: &Analysis, job_id: &str) -> String {
        a.data.final_loss(job_id).map(|v| format!("{v:.4}")).unwrap_or_else(|| NONE.into())
    }

    pub fn t_recall(a: &Analysis, job_id: &str) -> String {
        match a.job_recalls.iter().find(|r| r.job_id == job_id) {
            Some(r) => r.t_recall.map(|t| t.to_string()).unwrap_or_else(|| "none".into()),
            None => NONE.into(),
        }
    }

    /// A parameter with its bootstrap interval, e.g. `5.172 [5.101, 5.240]`.
    pub fn param(fit: &Fit, name: &str) -> String {
        if !fit.params.contains_key(name) {
            return NONE.into();
        }
        let v = fmt_coef(fit.param(name));
        match fit.ci.get(name) {
            Some((lo, hi)) => format!("{v} [{}, {}]", fmt_coef(*lo), fmt_coef(*hi)),
            None => v,
        }
    }

    pub fn r2(fit: &Fit) -> String {
        format!("{:.4}", fit.r2)
    }

    /// The cells of one row of the state-diagnostics table ([`super::STATES_HEADER`]).
    pub fn states(a: &Analysis, r: &crate::derive::StateSummary) -> [String; 5] {
        let small = |x: f64| if x == 0.0 || x.abs() >= 0.01 { format!("{x:.3}") } else { format!("{x:.2e}") };
        let at = |v: Option<(f64, (i64, i64))>, f: &dyn Fn(f64) -> String| match v {
            Some((x, (l, h))) => format!("{} (L{l} H{h})", f(x)),
            None => NONE.into(),
        };
        [
            super::job_label(a, &r.job_id),
            format!("{}→{}", r.from, r.to),
            at(r.rms_growth, &|x| format!("{x:.1}x")),
            at(r.retention, &small),
            at(r.min_dt, &small),
        ]
    }

    /// The cells of one row of the control table: job, evaluation, step, control (its T), the
    /// paper's verdict (ratio), the control verdict, the largest ratio [95% interval], where it
    /// is, and the positions compared.
    pub fn control(a: &Analysis, r: &crate::control::ControlRow) -> [String; 9] {
        let c = &r.comparison;
        let span = |s: i64, e: i64| format!("{s}–{e}");
        let paper = match (r.paper, r.paper_ratio) {
            (Some(v), Some(x)) => format!("{} ({x:.2})", v.words()),
            (Some(v), None) => v.words().to_string(),
            (None, _) => NONE.into(),
        };
        let verdict = match &c.reason {
            Some(why) => format!("{} ({})", crate::control::words(c.verdict), why.replace('_', " ")),
            None => crate::control::words(c.verdict).to_string(),
        };
        let worst = c.worst_range();
        let ratio = worst.and_then(|w| {
            let x = w.ratio?;
            Some(match w.ci {
                Some([lo, hi]) if lo != hi => format!("{x:.3} [{lo:.3}, {hi:.3}]"),
                _ => format!("{x:.3}"),
            })
        });
        [
            super::job_label(a, &r.job_id),
            format!("#{} {}", r.eval_index, r.source),
            r.step.to_string(),
            format!("{} (T = {})", super::job_label(a, &r.control_id), r.control_train_len),
            paper,
            verdict,
            ratio.unwrap_or_else(|| NONE.into()),
            worst.map(|w| span(w.start, w.end)).unwrap_or_else(|| NONE.into()),
            c.compared_span().map(|(s, e)| span(s, e)).unwrap_or_else(|| NONE.into()),
        ]
    }

    /// S in millions with 4 significant digits (tiny models have S far below one million).
    pub fn s_m(state_size: i64) -> String {
        let v = crate::derive::s_millions(state_size);
        if v == 0.0 || !v.is_finite() {
            return format!("{v}");
        }
        let decimals = (3.0 - v.abs().log10().floor()).clamp(0.0, 12.0) as usize;
        format!("{v:.decimals$}")
    }
}

/// A paragraph opening a section of figures, when its figures need one: how loss curves were
/// smoothed for display.
pub(crate) fn section_note(a: &Analysis, section: &str) -> Option<String> {
    let mut in_section = a.figures.iter().filter(|f| f.section == section);
    match section {
        "Passkey retrieval" => in_section.any(|f| f.stem.starts_with("figures/passkey_accuracy")).then(|| PASSKEY_NOTE.to_string()),
        _ => in_section.any(|f| f.note.is_some()).then(|| SMOOTHING_NOTE.to_string()),
    }
}

/// What display smoothing does, for the pages.
pub(crate) const SMOOTHING_NOTE: &str = "Loss curves on a logarithmic position axis are smoothed \
into log-spaced bins for display: the loss buckets whose midpoints fall in a bin are averaged, \
weighted by bucket width (the legend of each figure gives the bins per doubling). Collapse \
verdicts, T_forget and the tables use the raw buckets.";

/// The header of the control table.
pub(crate) const CONTROL_HEADER: [&str; 9] = [
    "job",
    "evaluation",
    "step",
    "control (its T)",
    "paper's verdict (ratio)",
    "against the control",
    "largest ratio [95% interval]",
    "where",
    "positions compared",
];

/// The header of the state-diagnostics table.
pub(crate) const STATES_HEADER: [&str; 5] =
    ["job", "positions", "largest growth of a head's state RMS", "largest first-token retention", "smallest mean dt"];

/// The section of the state-diagnostics table.
pub(crate) const STATES_SECTION: &str = "State diagnostics in numbers";

/// What the state-diagnostics table holds, for the pages.
pub(crate) const STATES_NOTE: &str = "From each job's final states evaluation (no mitigation), \
over every layer and head: the largest ratio of a head's state RMS at the last position to its \
RMS at the first position at or past the training length; the largest retention of the first \
token at the last position (exp of the summed log decays); the smallest mean dt at the last \
position. Each with its layer and head (L, H).";

/// The section of the control table.
pub(crate) const CONTROL_SECTION: &str = "Against a longer-trained control";

/// How the control verdict is made, for the pages (docs/methodology.md has the full rule).
pub(crate) const CONTROL_RULE: &str = "The paper's verdict compares the loss past the training \
length T with the largest loss within it, which content can make small (text that opens every \
document, such as a licence header, is nearly memorised). Here the reference is instead the same \
model (same configuration, tokenizer, learning rate, seed and data) trained at the longest longer \
length in these results, evaluated on the same prompts at the same training step: over the \
doubling ranges of positions [T, 2T), [2T, 4T), ... (the last one running to the end of the \
evaluation), the ratio of the two mean losses with a 95% bootstrap interval over prompts resampled \
in pairs (1000 resamples, fixed seed). Collapsed vs control when some range's interval lies at or \
above 2 (the paper's factor) while the job's own largest loss within T is below 2x the control's \
loss there (else the job was as far above the control before T: worse within T, no collapse); not \
collapsed vs control when every range's interval lies below 2; inconclusive otherwise, with fewer \
than 8 prompts, or when 2x the control's loss is above ln V (degenerate). Ranges that the control's coarser buckets do \
not tile are not compared. The paper's verdict is kept unchanged beside it.";

/// How to read the passkey figures, for the pages.
pub(crate) const PASSKEY_NOTE: &str = "Accuracy vs length shows, per job, the passkey accuracy \
averaged over needle depths at each prompt length; T_recall needs more than 95% of it (the \
authors' definition), the strict reading more than 95% at every depth, which the heat maps show \
depth by depth.";

/// How T_forget is derived, for the pages (docs/methodology.md has the full rule).
pub(crate) const FORGET_RULE: &str = "A loss evaluation's verdict drops the first and the last \
bucket (as the authors do) and compares the largest loss past the training length with 2x the \
largest within it: collapsed when the 95% bootstrap interval of that ratio over prompts lies above \
2, no collapse when it lies at or below 2, inconclusive otherwise, with fewer than 8 prompts, or \
when 2x the in-training loss is above the uniform loss ln V (degenerate; the rise after the \
training length is reported). Results stored without per-prompt losses are judged from their \
mean curve: the newline probe by its ratio, held-out text as inconclusive. A job collapses when \
any of its loss evaluations without mitigation collapsed and shows no collapse when one does and \
none collapsed. Several jobs at one (state size, length): the one with the best passkey \
validation decides, else no collapse wins. T_forget(S) is the smallest decisive length without \
collapse such that every longer decisive length also shows no collapse: an interval from the \
largest collapsed length, an upper bound when nothing collapsed, a lower bound (not reached) when \
the longest length still collapses. T_recall of a job is the largest passkey length with > 95% \
accuracy averaged over depths, up to the next length of its grid; T_recall(S) is the best job's. \
Both laws are fitted to these intervals and bounds by maximum likelihood (S in millions of state \
parameters, T in thousands of tokens), with 95% intervals from 1000 bootstrap resamples (seed \
0).";
