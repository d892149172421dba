// Which figures a report draws from its data, their file names and captions, and what is
// skipped (with the reason) when the data does not support a figure.
//
// Loss-vs-position, training and passkey-accuracy figures are drawn per sweep: when the report
// holds jobs of several sweeps, their file names and titles name the sweep (single-sweep reports
// keep the plain names), and per-job figures put the sweep before the job's label.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{job_label, job_slugs, job_title, label_of, ordered_jobs, slug, unique_labels, Analysis, FigureEntry, ReportOptions};
use crate::data::{EvalRecord, JobRecord};
use crate::figures::{self, binary_tokens, AccuracyCurve, Curve, Marker, PasskeyGrid};
use crate::Error;

/// Collects written files, figure entries and skips while figures are drawn.
struct Sink<'a> {
    out_dir: &'a Path,
    files: Vec<PathBuf>,
    figures: Vec<FigureEntry>,
    skipped: Vec<(String, String)>,
    /// Path stems handed out by [`Sink::fresh`].
    used: BTreeSet<String>,
}

impl Sink<'_> {
    /// `rel`, or `rel-2`, `rel-3`, ... when an earlier figure took it (names that slug alike).
    fn fresh(&mut self, rel: String) -> String {
        let mut candidate = rel.clone();
        let mut k = 2;
        while !self.used.insert(candidate.clone()) {
            candidate = format!("{rel}-{k}");
            k += 1;
        }
        candidate
    }

    /// Record the outcome of drawing one figure: I/O errors abort the report, a figure the
    /// data cannot support is listed as skipped.
    fn add(&mut self, section: &'static str, caption: String, stem: String, drawn: Result<Vec<PathBuf>, Error>) -> Result<(), Error> {
        self.add_noted(section, caption, None, stem, drawn)
    }

    /// [`Sink::add`] with a note shown after the caption.
    fn add_noted(
        &mut self,
        section: &'static str,
        caption: String,
        note: Option<String>,
        stem: String,
        drawn: Result<Vec<PathBuf>, Error>,
    ) -> Result<(), Error> {
        match drawn {
            Ok(paths) => {
                self.files.extend(paths);
                self.figures.push(FigureEntry { section, caption, note, stem });
                Ok(())
            }
            Err(e @ Error::Io { .. }) => Err(e),
            Err(e) => {
                self.skipped.push((caption, e.to_string()));
                Ok(())
            }
        }
    }

    fn skip(&mut self, what: &str, why: &str) {
        self.skipped.push((what.into(), why.into()));
    }

    fn stem(&self, rel: &str) -> PathBuf {
        self.out_dir.join(rel)
    }
}

/// Draw every figure the data supports; returns the files written.
/// The figure groups `draw_all` draws, in order (each is one `progress` call).
pub(super) const GROUPS: [&str; 7] =
    ["capacity laws", "loss", "mitigations", "passkey", "states", "training", "evaluations during training"];

/// Draws every figure group, calling `progress` with each group's name before drawing it.
pub(super) fn draw_all(
    a: &mut Analysis,
    out_dir: &Path,
    opts: &ReportOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<PathBuf>, Error> {
    let mut sink = Sink { out_dir, files: Vec::new(), figures: Vec::new(), skipped: Vec::new(), used: BTreeSet::new() };
    for group in GROUPS {
        progress(group);
        match group {
            "capacity laws" => capacity(a, &mut sink, opts)?,
            "loss" => loss(a, &mut sink)?,
            "mitigations" => mitigations(a, &mut sink)?,
            "passkey" => passkey(a, &mut sink)?,
            "states" => states(a, &mut sink)?,
            "training" => training(a, &mut sink)?,
            _ => during_training(a, &mut sink)?,
        }
    }
    a.figures = sink.figures;
    a.skipped.extend(sink.skipped);
    Ok(sink.files)
}

fn capacity(a: &Analysis, sink: &mut Sink, opts: &ReportOptions) -> Result<(), Error> {
    if a.forget.iter().any(|r| !r.lengths_tried.is_empty()) {
        let rel = "figures/t_forget".to_string();
        let drawn = figures::forget_law(
            &a.forget,
            a.forget_fit.as_ref(),
            opts.log_scale,
            "Forget threshold T_forget vs state size",
            &sink.stem(&rel),
        );
        sink.add("Capacity laws", "T_forget vs state size".into(), rel, drawn)?;
    } else {
        sink.skip("T_forget vs state size", "no loss results with a collapse verdict");
    }
    if a.job_recalls.is_empty() {
        sink.skip("T_recall vs state size", "no passkey results");
    } else if a.recalls.iter().all(|r| r.t_recall.is_none()) {
        sink.skip("T_recall vs state size", "no model reached > 95% passkey accuracy at any length");
    } else {
        let rel = "figures/t_recall".to_string();
        let drawn = figures::recall_law_by_length(
            &a.recalls,
            &a.job_recalls,
            a.recall_fit.as_ref(),
            opts.log_scale,
            "Max recall length T_recall vs state size",
            &sink.stem(&rel),
        );
        sink.add("Capacity laws", "T_recall vs state size".into(), rel, drawn)?;
    }
    Ok(())
}

/// Curves of one figure with the jobs they belong to (labels are given once all are known).
type Members<'a> = Vec<(&'a JobRecord, Curve)>;

/// A loss eval's curve (bucket midpoints, weighted by bucket width; no label), or a skip entry when the result is malformed.
fn loss_points(e: &EvalRecord, sink: &mut Sink) -> Option<Curve> {
    match e.loss() {
        Ok(r) => {
            let (points, weights) = r.midpoints_and_widths();
            Some(Curve { points, weights, ..Curve::default() })
        }
        Err(err) => {
            sink.skip(&format!("loss eval of job {}", e.job_id), &err.to_string());
            None
        }
    }
}

/// The note on display smoothing of a loss figure, if its curves are smoothed.
fn smoothing_note(curves: &[Curve]) -> Option<String> {
    figures::position_smoothing(curves).map(|n| format!("curves smoothed into log-spaced bins for display ({n} per doubling)"))
}

/// Path stem and title prefix of a per-sweep group figure: the sweep appears in both only when
/// the report holds jobs of several sweeps, so single-sweep reports keep their file names.
fn sweep_part(a: &Analysis, sweep: &str) -> (String, String) {
    if a.multi_sweep {
        (format!("{}_", slug(sweep)), format!("{sweep}, "))
    } else {
        (String::new(), String::new())
    }
}

fn loss(a: &Analysis, sink: &mut Sink) -> Result<(), Error> {
    // (sweep, state size, source) -> jobs and curves, jobs in canonical order (train length, id)
    let mut groups: BTreeMap<(String, i64, String), Members> = BTreeMap::new();
    for job in &a.data.jobs {
        let mut seen = Vec::new();
        for e in a.data.evals_of(&job.id, "loss").filter(|e| e.mitigation() == "none") {
            if seen.contains(&e.source()) {
                continue; // first eval per source
            }
            seen.push(e.source());
            let Some(curve) = loss_points(e, sink) else {
                continue;
            };
            let curve = Curve { mark_x: job.train_len().map(|t| t as f64), ..curve };
            groups.entry((job.sweep.clone(), job.state_size, e.source().to_string())).or_default().push((job, curve));
        }
    }
    if groups.is_empty() {
        sink.skip("loss vs position", "no loss results without mitigation");
    }
    for ((sweep, state, source), members) in groups {
        let curves = labelled(members);
        let (stem_part, title_part) = sweep_part(a, &sweep);
        let rel = sink.fresh(format!("figures/loss_{stem_part}S{state}_{}", slug(&source)));
        let title = format!("Loss vs position, {title_part}S = {state} ({source})");
        let note = smoothing_note(&curves);
        let drawn = figures::loss_vs_position(&curves, &title, &sink.stem(&rel));
        sink.add_noted("Loss by position", title, note, rel, drawn)?;
    }
    Ok(())
}

/// Give each curve its job's label, made unique within the figure: prefixed by the sweep when
/// the jobs come from several sweeps, suffixed by the job id when labels still repeat.
fn labelled(members: Members) -> Vec<Curve> {
    let jobs: Vec<&JobRecord> = members.iter().map(|(j, _)| *j).collect();
    let labels = unique_labels(&jobs);
    members.into_iter().zip(labels).map(|((_, c), label)| Curve { label, ..c }).collect()
}

fn mitigations(a: &Analysis, sink: &mut Sink) -> Result<(), Error> {
    let slugs = job_slugs(&a.data);
    let mut any = false;
    for job in ordered_jobs(a) {
        // source -> mitigation -> first eval
        let mut by_source: BTreeMap<&str, BTreeMap<&str, &EvalRecord>> = BTreeMap::new();
        for e in a.data.evals_of(&job.id, "loss") {
            by_source.entry(e.source()).or_default().entry(e.mitigation()).or_insert(e);
        }
        for (source, per_mit) in by_source {
            if per_mit.len() < 2 {
                continue;
            }
            any = true;
            // "none" first, then the mitigations by name
            let mut order: Vec<(&str, &EvalRecord)> = per_mit.into_iter().collect();
            order.sort_by_key(|(m, _)| (*m != "none", *m));
            let mut curves = Vec::new();
            for (m, e) in order {
                if let Some(curve) = loss_points(e, sink) {
                    curves.push(Curve { label: m.to_string(), ..curve });
                }
            }
            let slug_id = slugs.get(&job.id).cloned().unwrap_or_else(|| slug(&job.id));
            let rel = sink.fresh(format!("figures/mitigation_{slug_id}_{}", slug(source)));
            let title = format!("Mitigations, {} ({source})", job_title(a, job));
            let train = job.train_len().map(|t| t as f64);
            let note = match (smoothing_note(&curves), coincide_note(&curves)) {
                (Some(a), Some(b)) => Some(format!("{b} {a}")),
                (a, b) => b.or(a),
            };
            let drawn = figures::mitigation_comparison(&curves, train, &title, &sink.stem(&rel));
            sink.add_noted("Mitigations", title, note, rel, drawn)?;
        }
    }
    if !any {
        sink.skip("mitigation comparison", "no job has loss results under two or more mitigations");
    }
    Ok(())
}

/// Largest difference (nats) below which mitigation curves are said to coincide.
const COINCIDE_NATS: f64 = 0.02;

/// A note when every curve stays within [`COINCIDE_NATS`] of the first (no mitigation) at the
/// same positions: drawn on top of each other they cannot be told apart, so the page says so.
fn coincide_note(curves: &[Curve]) -> Option<String> {
    let (first, rest) = curves.split_first()?;
    if rest.is_empty() {
        return None;
    }
    let mut most = 0.0f64;
    for c in rest {
        if c.points.len() != first.points.len() || c.points.iter().zip(&first.points).any(|(p, q)| p.0 != q.0) {
            return None; // different positions: not comparable point by point
        }
        most = c.points.iter().zip(&first.points).map(|(p, q)| (p.1 - q.1).abs()).fold(most, f64::max);
    }
    (most < COINCIDE_NATS).then(|| {
        format!(
            "The curves coincide: no mitigation changes the loss by more than {most:.3} nats at any position (they \
             target state collapse, which these curves do not show)."
        )
    })
}

/// The passkey evals of a job: the first per mitigation, `none` first.
fn job_passkeys<'a>(a: &'a Analysis, job_id: &'a str) -> Vec<&'a EvalRecord> {
    let mut per_mit: BTreeMap<&str, &EvalRecord> = BTreeMap::new();
    for e in a.data.evals_of(job_id, "passkey") {
        per_mit.entry(e.mitigation()).or_insert(e);
    }
    let mut v: Vec<(&str, &EvalRecord)> = per_mit.into_iter().collect();
    v.sort_by_key(|(m, _)| (*m != "none", *m));
    v.into_iter().map(|(_, e)| e).collect()
}

/// Accuracy vs prompt length, one figure per sweep with passkey results, one curve per job (and
/// mitigation): colour by state size and marker by training length within the sweep, or by
/// position when those do not tell the curves apart.
fn passkey_accuracy(a: &Analysis, sink: &mut Sink) -> Result<(), Error> {
    let mut by_sweep: BTreeMap<&str, Vec<(&JobRecord, &str, PasskeyGrid)>> = BTreeMap::new();
    for job in &a.data.jobs {
        for e in job_passkeys(a, &job.id) {
            // malformed results are reported by the heat maps
            if let Ok(r) = e.passkey() {
                let grid = PasskeyGrid::from_result(r);
                if !grid.is_empty() {
                    by_sweep.entry(job.sweep.as_str()).or_default().push((job, e.mitigation(), grid));
                }
            }
        }
    }
    for (sweep, members) in by_sweep {
        let jobs: Vec<&JobRecord> = members.iter().map(|m| m.0).collect();
        let labels = unique_labels(&jobs);
        let sizes: BTreeSet<i64> = jobs.iter().map(|j| j.state_size).collect();
        let lens: BTreeSet<Option<i64>> = jobs.iter().map(|j| j.train_len()).collect();
        let styled: Vec<(usize, Marker)> = members
            .iter()
            .map(|(j, m, _)| {
                let c = sizes.iter().position(|s| *s == j.state_size).unwrap_or(0);
                let k = lens.iter().position(|l| *l == j.train_len()).unwrap_or(0);
                // mitigated curves take the next marker shapes
                let k = if *m == "none" { k } else { k + lens.len() };
                (c, Marker::nth(k))
            })
            .collect();
        let distinct: BTreeSet<(usize, usize)> = styled.iter().map(|(c, m)| (*c, *m as usize)).collect();
        let by_position = distinct.len() < styled.len() || sizes.len() > 8;
        let curves: Vec<AccuracyCurve> = members
            .iter()
            .zip(labels)
            .enumerate()
            .map(|(i, ((_, m, grid), label))| {
                let (colour, marker) = if by_position { (i, Marker::nth(i / 8)) } else { styled[i] };
                let label = match *m {
                    "none" => label,
                    m => format!("{label}, {m}"),
                };
                AccuracyCurve { label, points: grid.mean_by_length().into_iter().map(|(l, acc)| (l as f64, acc)).collect(), colour, marker }
            })
            .collect();
        let (rel, title) = if a.multi_sweep {
            (format!("figures/passkey_accuracy_{}", slug(sweep)), format!("Passkey accuracy vs length, {sweep}"))
        } else {
            ("figures/passkey_accuracy".to_string(), "Passkey accuracy vs length".to_string())
        };
        let rel = sink.fresh(rel);
        let drawn = figures::passkey_accuracy(&curves, &title, &sink.stem(&rel));
        sink.add("Passkey retrieval", title, rel, drawn)?;
    }
    Ok(())
}

fn passkey(a: &Analysis, sink: &mut Sink) -> Result<(), Error> {
    let slugs = job_slugs(&a.data);
    let evals: Vec<&EvalRecord> = a.data.evals.iter().filter(|e| e.kind() == "passkey").collect();
    if evals.is_empty() {
        sink.skip("passkey heat map", "no passkey results");
        return Ok(());
    }
    passkey_accuracy(a, sink)?;
    // heat maps in job order (sweep, state size, training length, id), then evals of unknown jobs
    let jobs = ordered_jobs(a);
    let mut ordered: Vec<(Option<&JobRecord>, &EvalRecord)> = Vec::new();
    for job in &jobs {
        for e in evals.iter().filter(|e| e.job_id == job.id) {
            ordered.push((Some(*job), e));
        }
    }
    for e in evals.iter().filter(|e| a.data.job(&e.job_id).is_none()) {
        ordered.push((None, e));
    }
    let mut used = Vec::new();
    for (job, e) in ordered {
        let r = match e.passkey() {
            Ok(r) => r,
            Err(err) => {
                sink.skip(&format!("passkey heat map of job {}", e.job_id), &err.to_string());
                continue;
            }
        };
        let slug_id = slugs.get(&e.job_id).cloned().unwrap_or_else(|| slug(&e.job_id));
        let mut rel = match e.mitigation() {
            "none" => format!("figures/passkey_{slug_id}"),
            m => format!("figures/passkey_{slug_id}_{}", slug(m)),
        };
        if used.contains(&rel) {
            rel = format!("{rel}-{}", used.len() + 1);
        }
        used.push(rel.clone());
        let recall = r.t_recall.map(|t| binary_tokens(t as f64)).unwrap_or_else(|| "none".into());
        let mit = match e.mitigation() {
            "none" => String::new(),
            m => format!(", {m}"),
        };
        let who = match job {
            Some(j) => job_title(a, j),
            None => job_label(a, &e.job_id),
        };
        let title = format!("Passkey, {who}{mit} (T_recall = {recall})");
        let drawn = figures::passkey_heatmap(&PasskeyGrid::from_result(r), &title, &sink.stem(&rel));
        sink.add("Passkey retrieval", title, rel, drawn)?;
    }
    Ok(())
}

fn states(a: &Analysis, sink: &mut Sink) -> Result<(), Error> {
    let slugs = job_slugs(&a.data);
    let mut any = false;
    for job in ordered_jobs(a) {
        let all: Vec<&EvalRecord> = a.data.evals_of(&job.id, "states").collect();
        let Some(e) = all.iter().find(|e| e.mitigation() == "none").or(all.first()) else {
            continue;
        };
        any = true;
        let label = job_title(a, job);
        let s = match e.states() {
            Ok(s) => s,
            Err(err) => {
                sink.skip(&format!("state figures of {label}"), &err.to_string());
                continue;
            }
        };
        let slug_id = slugs.get(&job.id).cloned().unwrap_or_else(|| slug(&job.id));
        let train = job.train_len().map(|t| t as f64);
        match s.loudest_layer() {
            Some(layer) => {
                let rel = format!("figures/retention_{slug_id}");
                let title = format!("First-token retention, {label}, layer {layer}");
                let drawn = figures::retention_per_head(s, layer, train, &title, &sink.stem(&rel));
                sink.add("State diagnostics", title, rel, drawn)?;
                let rel = format!("figures/state_var_{slug_id}");
                let title = format!("State variance, {label}, layer {layer}");
                let drawn = figures::state_variance_per_head(s, layer, train, &title, &sink.stem(&rel));
                sink.add("State diagnostics", title, rel, drawn)?;
            }
            None => sink.skip(&format!("state retention and variance of {label}"), "no layers in the states result"),
        }
        match &s.histogram {
            Some(h) => {
                let rel = format!("figures/state_hist_{slug_id}");
                let title = format!("State values, {label}, layer {} head {}", h.layer, h.head);
                let drawn = figures::state_histogram(h, &title, &sink.stem(&rel));
                sink.add("State diagnostics", title, rel, drawn)?;
            }
            None => sink.skip(&format!("state histogram of {label}"), "no histogram in the states result"),
        }
    }
    if !any {
        sink.skip("state retention / variance / histogram", "no states results");
    }
    Ok(())
}

fn training(a: &Analysis, sink: &mut Sink) -> Result<(), Error> {
    // (sweep, state size) -> jobs and curves
    let mut groups: BTreeMap<(String, i64), Members> = BTreeMap::new();
    for job in &a.data.jobs {
        let points: Vec<(f64, f64)> = a
            .data
            .metrics
            .iter()
            .filter(|m| m.job_id == job.id && m.key == "loss" && m.value.is_finite())
            .map(|m| (m.step as f64, m.value))
            .collect();
        if !points.is_empty() {
            groups.entry((job.sweep.clone(), job.state_size)).or_default().push((job, Curve::new("", points)));
        }
    }
    if groups.is_empty() {
        sink.skip("training curves", "no training metrics");
    }
    for ((sweep, state), members) in groups {
        let curves = labelled(members);
        let (stem_part, title_part) = sweep_part(a, &sweep);
        let rel = sink.fresh(format!("figures/training_{stem_part}S{state}"));
        let title = format!("Training loss, {title_part}S = {state}");
        let drawn = figures::training_curves(&curves, &title, &sink.stem(&rel));
        sink.add("Training", title, rel, drawn)?;
    }
    Ok(())
}

/// The collapse ratio against training tokens of the jobs evaluated during training
/// (`evals_at`), one figure per sweep, one curve per job and loss evaluation.
fn during_training(a: &Analysis, sink: &mut Sink) -> Result<(), Error> {
    if a.during.is_empty() {
        sink.skip("collapse ratio during training", "no loss evaluations during training (evals_at)");
        return Ok(());
    }
    // sweep -> (job, eval index) -> points
    let mut groups: BTreeMap<&str, BTreeMap<(&str, i64), Vec<&crate::derive::DuringRow>>> = BTreeMap::new();
    for r in &a.during {
        let Some(job) = a.data.job(&r.job_id) else { continue };
        groups.entry(job.sweep.as_str()).or_default().entry((r.job_id.as_str(), r.eval_index)).or_default().push(r);
    }
    for (sweep, by_eval) in groups {
        let evals_per_job = |id: &str| by_eval.keys().filter(|(j, _)| *j == id).count();
        let series: Vec<figures::RatioSeries> = by_eval
            .iter()
            .map(|((job, index), rows)| {
                let mut label = a.data.job(job).map_or_else(|| job.to_string(), label_of);
                if evals_per_job(job) > 1 {
                    label = format!("{label} #{index} {}", rows[0].what);
                }
                let points = rows
                    .iter()
                    .filter_map(|r| {
                        Some(figures::RatioPoint { tokens: r.tokens? as f64, ratio: r.ratio?, ratio_ci: r.ratio_ci, verdict: r.verdict })
                    })
                    .collect();
                figures::RatioSeries { label, points }
            })
            .collect();
        let (stem_part, title_part) = sweep_part(a, sweep);
        let rel = sink.fresh(format!("figures/ratio_during_training_{stem_part}").trim_end_matches('_').to_string());
        let title = format!("Collapse ratio during training, {title_part}by training tokens");
        let drawn = figures::ratio_vs_tokens(&series, &title, &sink.stem(&rel));
        sink.add(super::html::DURING, title, rel, drawn)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(label: &str, ys: &[f64]) -> Curve {
        Curve { label: label.into(), points: ys.iter().enumerate().map(|(i, y)| (i as f64, *y)).collect(), ..Curve::default() }
    }

    /// Issue 24 item 3: mitigation curves drawn on top of each other are said to coincide.
    #[test]
    fn coinciding_mitigation_curves_get_a_note() {
        let none = curve("none", &[2.0, 2.1, 2.2]);
        let note = coincide_note(&[none.clone(), curve("rri", &[2.0, 2.105, 2.2])]).expect("a note");
        assert!(note.starts_with("The curves coincide") && note.contains("0.005 nats"), "{note}");
        assert!(coincide_note(&[none.clone(), curve("sliding-window", &[2.0, 2.3, 2.2])]).is_none());
        assert!(coincide_note(std::slice::from_ref(&none)).is_none());
        assert!(coincide_note(&[none, curve("rri", &[2.0, 2.1])]).is_none(), "different positions");
    }
}
