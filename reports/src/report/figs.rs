// Which figures a report draws from its data, their file names and captions, and what is
// skipped (with the reason) when the data does not support a figure.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{job_label, job_slugs, slug, Analysis, FigureEntry, ReportOptions};
use crate::data::EvalRecord;
use crate::figures::{self, binary_tokens, Curve, PasskeyGrid};
use crate::results::{LossResult, PasskeyResult, StatesResult};
use crate::Error;

/// Collects written files, figure entries and skips while figures are drawn.
struct Sink<'a> {
    out_dir: &'a Path,
    files: Vec<PathBuf>,
    figures: Vec<FigureEntry>,
    skipped: Vec<(String, String)>,
}

impl Sink<'_> {
    /// Record the outcome of drawing one figure: I/O errors abort the report, a figure the
    /// data cannot support is listed as skipped.
    fn add(
        &mut self,
        section: &'static str,
        caption: String,
        stem: String,
        drawn: Result<Vec<PathBuf>, Error>,
    ) -> Result<(), Error> {
        match drawn {
            Ok(paths) => {
                self.files.extend(paths);
                self.figures.push(FigureEntry {
                    section,
                    caption,
                    stem,
                });
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
pub(super) fn draw_all(
    a: &mut Analysis,
    out_dir: &Path,
    opts: &ReportOptions,
) -> Result<Vec<PathBuf>, Error> {
    let mut sink = Sink {
        out_dir,
        files: Vec::new(),
        figures: Vec::new(),
        skipped: Vec::new(),
    };
    capacity(a, &mut sink, opts)?;
    loss(a, &mut sink)?;
    mitigations(a, &mut sink)?;
    passkey(a, &mut sink)?;
    states(a, &mut sink)?;
    training(a, &mut sink)?;
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
        sink.skip(
            "T_forget vs state size",
            "no loss results with a collapse verdict",
        );
    }
    if a.job_recalls.is_empty() {
        sink.skip("T_recall vs state size", "no passkey results");
    } else if a.recalls.iter().all(|r| r.t_recall.is_none()) {
        sink.skip(
            "T_recall vs state size",
            "no model reached > 95% passkey accuracy at any length",
        );
    } else {
        let rel = "figures/t_recall".to_string();
        let drawn = figures::recall_law(
            &a.recalls,
            a.recall_fit.as_ref(),
            opts.log_scale,
            "Max recall length T_recall vs state size",
            &sink.stem(&rel),
        );
        sink.add("Capacity laws", "T_recall vs state size".into(), rel, drawn)?;
    }
    Ok(())
}

/// Loss-eval points, or a skip entry when the result is malformed.
fn loss_points(e: &EvalRecord, sink: &mut Sink) -> Option<Vec<(f64, f64)>> {
    match LossResult::from_value(&e.result) {
        Ok(r) => Some(r.midpoints()),
        Err(err) => {
            sink.skip(&format!("loss eval of job {}", e.job_id), &err.to_string());
            None
        }
    }
}

fn loss(a: &Analysis, sink: &mut Sink) -> Result<(), Error> {
    // (state size, source) -> curves, jobs in canonical order (train length, id)
    let mut groups: BTreeMap<(i64, String), Vec<Curve>> = BTreeMap::new();
    for job in &a.data.jobs {
        let mut seen = Vec::new();
        for e in a
            .data
            .evals_of(&job.id, "loss")
            .filter(|e| e.mitigation() == "none")
        {
            if seen.contains(&e.source()) {
                continue; // first eval per source
            }
            seen.push(e.source());
            let Some(points) = loss_points(e, sink) else {
                continue;
            };
            let mark_x = job.train_len().map(|t| t as f64);
            let curve = Curve {
                label: job_label(a, &job.id),
                points,
                mark_x,
            };
            groups
                .entry((job.state_size, e.source().to_string()))
                .or_default()
                .push(curve);
        }
    }
    if groups.is_empty() {
        sink.skip("loss vs position", "no loss results without mitigation");
    }
    for ((state, source), curves) in groups {
        let rel = format!("figures/loss_S{state}_{}", slug(&source));
        let title = format!("Loss vs position, S = {state} ({source})");
        let drawn = figures::loss_vs_position(&curves, &title, &sink.stem(&rel));
        sink.add("Loss by position", title, rel, drawn)?;
    }
    Ok(())
}

fn mitigations(a: &Analysis, sink: &mut Sink) -> Result<(), Error> {
    let slugs = job_slugs(&a.data);
    let mut any = false;
    for job in &a.data.jobs {
        // source -> mitigation -> first eval
        let mut by_source: BTreeMap<&str, BTreeMap<&str, &EvalRecord>> = BTreeMap::new();
        for e in a.data.evals_of(&job.id, "loss") {
            by_source
                .entry(e.source())
                .or_default()
                .entry(e.mitigation())
                .or_insert(e);
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
                if let Some(points) = loss_points(e, sink) {
                    curves.push(Curve {
                        label: m.to_string(),
                        points,
                        mark_x: None,
                    });
                }
            }
            let slug_id = slugs.get(&job.id).cloned().unwrap_or_else(|| slug(&job.id));
            let rel = format!("figures/mitigation_{slug_id}_{}", slug(source));
            let title = format!("Mitigations, {} ({source})", job_label(a, &job.id));
            let train = job.train_len().map(|t| t as f64);
            let drawn = figures::mitigation_comparison(&curves, train, &title, &sink.stem(&rel));
            sink.add("Mitigations", title, rel, drawn)?;
        }
    }
    if !any {
        sink.skip(
            "mitigation comparison",
            "no job has loss results under two or more mitigations",
        );
    }
    Ok(())
}

fn passkey(a: &Analysis, sink: &mut Sink) -> Result<(), Error> {
    let slugs = job_slugs(&a.data);
    let evals: Vec<&EvalRecord> = a
        .data
        .evals
        .iter()
        .filter(|e| e.kind == "passkey")
        .collect();
    if evals.is_empty() {
        sink.skip("passkey heat map", "no passkey results");
        return Ok(());
    }
    let mut used = Vec::new();
    for e in evals {
        let r = match PasskeyResult::from_value(&e.result) {
            Ok(r) => r,
            Err(err) => {
                sink.skip(
                    &format!("passkey heat map of job {}", e.job_id),
                    &err.to_string(),
                );
                continue;
            }
        };
        let slug_id = slugs
            .get(&e.job_id)
            .cloned()
            .unwrap_or_else(|| slug(&e.job_id));
        let mut rel = match e.mitigation() {
            "none" => format!("figures/passkey_{slug_id}"),
            m => format!("figures/passkey_{slug_id}_{}", slug(m)),
        };
        if used.contains(&rel) {
            rel = format!("{rel}-{}", used.len() + 1);
        }
        used.push(rel.clone());
        let recall = r
            .t_recall
            .map(|t| binary_tokens(t as f64))
            .unwrap_or_else(|| "none".into());
        let mit = match e.mitigation() {
            "none" => String::new(),
            m => format!(", {m}"),
        };
        let title = format!(
            "Passkey, {}{mit} (T_recall = {recall})",
            job_label(a, &e.job_id)
        );
        let drawn =
            figures::passkey_heatmap(&PasskeyGrid::from_result(&r), &title, &sink.stem(&rel));
        sink.add("Passkey retrieval", title, rel, drawn)?;
    }
    Ok(())
}

fn states(a: &Analysis, sink: &mut Sink) -> Result<(), Error> {
    let slugs = job_slugs(&a.data);
    let mut any = false;
    for job in &a.data.jobs {
        let all: Vec<&EvalRecord> = a.data.evals_of(&job.id, "states").collect();
        let Some(e) = all
            .iter()
            .find(|e| e.mitigation() == "none")
            .or(all.first())
        else {
            continue;
        };
        any = true;
        let label = job_label(a, &job.id);
        let s = match StatesResult::from_value(&e.result) {
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
                let drawn = figures::retention_per_head(&s, layer, train, &title, &sink.stem(&rel));
                sink.add("State diagnostics", title, rel, drawn)?;
                let rel = format!("figures/state_var_{slug_id}");
                let title = format!("State variance, {label}, layer {layer}");
                let drawn =
                    figures::state_variance_per_head(&s, layer, train, &title, &sink.stem(&rel));
                sink.add("State diagnostics", title, rel, drawn)?;
            }
            None => sink.skip(
                &format!("state retention and variance of {label}"),
                "no layers in the states result",
            ),
        }
        match &s.histogram {
            Some(h) => {
                let rel = format!("figures/state_hist_{slug_id}");
                let title = format!("State values, {label}, layer {} head {}", h.layer, h.head);
                let drawn = figures::state_histogram(h, &title, &sink.stem(&rel));
                sink.add("State diagnostics", title, rel, drawn)?;
            }
            None => sink.skip(
                &format!("state histogram of {label}"),
                "no histogram in the states result",
            ),
        }
    }
    if !any {
        sink.skip(
            "state retention / variance / histogram",
            "no states results",
        );
    }
    Ok(())
}

fn training(a: &Analysis, sink: &mut Sink) -> Result<(), Error> {
    let mut groups: BTreeMap<i64, Vec<Curve>> = BTreeMap::new();
    for job in &a.data.jobs {
        let points: Vec<(f64, f64)> = a
            .data
            .metrics
            .iter()
            .filter(|m| m.job_id == job.id && m.key == "loss" && m.value.is_finite())
            .map(|m| (m.step as f64, m.value))
            .collect();
        if !points.is_empty() {
            let curve = Curve {
                label: job_label(a, &job.id),
                points,
                mark_x: None,
            };
            groups.entry(job.state_size).or_default().push(curve);
        }
    }
    if groups.is_empty() {
        sink.skip("training curves", "no training metrics");
    }
    for (state, curves) in groups {
        let rel = format!("figures/training_S{state}");
        let title = format!("Training loss, S = {state}");
        let drawn = figures::training_curves(&curves, &title, &sink.stem(&rel));
        sink.add("Training", title, rel, drawn)?;
    }
    Ok(())
}
