// index.html: a self-contained page (inline CSS, no scripts, figures as <img> of the SVGs) with
// the fitted laws, the derived tables, every figure, sweep metadata, the job table and skips.
use std::fmt::Write as _;

use super::cells::{self, NONE};
use super::{section_note, summary, Analysis, FORGET_RULE, PAPER_FORGET_LAW, PAPER_RECALL_LAW};
use crate::fit::Fit;

const STYLE: &str = "body{font-family:'DejaVu Sans',sans-serif;margin:2em auto;max-width:1100px;\
color:#222;line-height:1.4}table{border-collapse:collapse;margin:0.8em 0}th,td{border:1px solid \
#ccc;padding:0.25em 0.6em;text-align:left;vertical-align:top}th{background:#f2f2f2}\
td.num{text-align:right;font-variant-numeric:tabular-nums}figure{margin:1.2em 0}img{max-width:100%;\
border:1px solid #eee}figcaption{color:#555}p.note{color:#555;font-size:0.92em}\
p.notice{background:#fff4d6;border:1px solid #e3c26b;padding:0.6em 0.9em}";

/// The section of the figures and table of evaluations during training (`evals_at`).
pub(super) const DURING: &str = "Evaluations during training";

/// One row per loss evaluation during training: job, evaluation, step, tokens, ratio, verdict.
fn during_table(o: &mut String, a: &Analysis) {
    header(o, &["job", "evaluation", "step", "tokens", "worst ratio", "95% interval", "verdict"]);
    for r in &a.during {
        let num = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| NONE.into());
        let ci = r.ratio_ci.map(|[lo, hi]| format!("[{lo:.3}, {hi:.3}]")).unwrap_or_else(|| NONE.into());
        let cells = [
            super::job_label(a, &r.job_id),
            format!("#{} {}", r.eval_index, r.what),
            r.step.to_string(),
            r.tokens.map(|t| t.to_string()).unwrap_or_else(|| NONE.into()),
            num(r.ratio),
            ci,
            r.verdict.map_or(NONE, |v| v.words()).to_string(),
        ];
        row(o, &cells, &[false, false, true, true, true, false, false]);
    }
    o.push_str("</table>\n");
}

/// Escape text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

fn row(out: &mut String, cells: &[String], numeric: &[bool]) {
    out.push_str("<tr>");
    for (i, c) in cells.iter().enumerate() {
        let class = if numeric.get(i).copied().unwrap_or(false) { " class=\"num\"" } else { "" };
        let _ = write!(out, "<td{class}>{}</td>", esc(c));
    }
    out.push_str("</tr>\n");
}

fn header(out: &mut String, names: &[&str]) {
    out.push_str("<table>\n<tr>");
    for n in names {
        let _ = write!(out, "<th>{}</th>", esc(n));
    }
    out.push_str("</tr>\n");
}

fn fit_cells(law: &str, form: &str, fit: Option<&Fit>, paper: &str) -> Vec<String> {
    match fit {
        Some(f) => vec![
            law.into(),
            f.law(),
            cells::param(f, "a"),
            cells::param(f, "b"),
            cells::param(f, "c"),
            cells::r2(f),
            f.n.to_string(),
            paper.into(),
        ],
        None => {
            vec![law.into(), format!("{form}: not fitted"), NONE.into(), NONE.into(), NONE.into(), NONE.into(), NONE.into(), paper.into()]
        }
    }
}

fn figures(out: &mut String, a: &Analysis, section: &str) {
    for f in a.figures.iter().filter(|f| f.section == section) {
        let note = f.note.as_deref().map(|n| format!(" — {}", esc(n))).unwrap_or_default();
        let _ = writeln!(
            out,
            "<figure><img src=\"{stem}.svg\" alt=\"{cap}\"><figcaption>{cap} \
             (<a href=\"{stem}.png\">PNG</a>){note}</figcaption></figure>",
            stem = esc(&f.stem),
            cap = esc(&f.caption)
        );
    }
}

/// The whole page.
pub(super) fn page(a: &Analysis) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{t}</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<h1>{t}</h1>\n",
        t = esc(&a.title)
    );
    let d = &a.data;
    let _ = writeln!(
        o,
        "<p>Sweeps: {}, jobs: {}, evaluations: {}, training metric rows: {}. Units of the laws: S in \
         millions of state parameters, T in thousands of tokens (K).</p>",
        d.sweeps.len(),
        d.jobs.len(),
        d.evals.len(),
        d.metrics.len()
    );

    for notice in summary::notices(a) {
        let mut text = esc(&notice);
        if let Some((dir, doc)) = &a.campaign_links {
            text = text.replacen(summary::CAMPAIGN_DIR, &format!("<a href=\"{}\">{}</a>", esc(dir), summary::CAMPAIGN_DIR), 1).replacen(
                summary::REPRODUCTION,
                &format!("<a href=\"{}\">{}</a>", esc(doc), summary::REPRODUCTION),
                1,
            );
        }
        let _ = writeln!(o, "<p class=\"notice\"><strong>{text}</strong></p>");
    }
    if !a.skipped.is_empty() {
        let _ = writeln!(
            o,
            "<p class=\"note\">Not drawn or not fitted: {}, each with the reason under <a href=\"#skipped\">Skipped</a>.</p>",
            a.skipped.len()
        );
    }
    let summary = summary::sentences(a);
    if !summary.is_empty() {
        o.push_str("<h2>Summary</h2>\n<ul>\n");
        for line in &summary {
            let _ = writeln!(o, "<li>{}</li>", esc(line));
        }
        o.push_str("</ul>\n");
    }

    o.push_str("<h2>Capacity laws</h2>\n");
    header(&mut o, &["law", "fitted", "a [95% CI]", "b [95% CI]", "c [95% CI]", "R²", "n", "paper"]);
    let num = [false, false, true, true, true, true, true, false];
    row(&mut o, &fit_cells("T_forget", "linear", a.forget_fit.as_ref(), &format!("{PAPER_FORGET_LAW} (R² > 0.999)")), &num);
    row(&mut o, &fit_cells("T_recall", "exponential", a.recall_fit.as_ref(), &format!("{PAPER_RECALL_LAW} (R² > 0.999)")), &num);
    o.push_str("</table>\n");
    let _ = writeln!(o, "<p class=\"note\">{}</p>", esc(FORGET_RULE));
    figures(&mut o, a, "Capacity laws");

    o.push_str("<h3>T_forget per state size</h3>\n");
    header(&mut o, &["state size", "S (M)", "T_forget", "lengths tried", "collapsed lengths"]);
    for r in &a.forget {
        let t = r.describe();
        row(
            &mut o,
            &[r.state_size.to_string(), cells::s_m(r.state_size), t, cells::ints(&r.lengths_tried), cells::ints(&r.collapsed_lengths)],
            &[true, true, true],
        );
    }
    o.push_str("</table>\n<h3>T_recall per state size</h3>\n");
    header(&mut o, &["state size", "S (M)", "T_recall", "best job", "jobs"]);
    for r in &a.recalls {
        row(
            &mut o,
            &[
                r.state_size.to_string(),
                cells::s_m(r.state_size),
                r.describe(),
                r.job_id.clone().unwrap_or_else(|| NONE.into()),
                r.jobs.to_string(),
            ],
            &[true, true, true],
        );
    }
    o.push_str("</table>\n");

    for section in ["Loss by position", "Mitigations", "Passkey retrieval", "State diagnostics", "Training", DURING] {
        if a.figures.iter().any(|f| f.section == section) || (section == DURING && !a.during.is_empty()) {
            let _ = writeln!(o, "<h2>{}</h2>", esc(section));
            if let Some(note) = section_note(a, section) {
                let _ = writeln!(o, "<p class=\"note\">{}</p>", esc(&note));
            }
            figures(&mut o, a, section);
        }
        if section == DURING && !a.during.is_empty() {
            during_table(&mut o, a);
        }
    }

    if !a.controls.is_empty() {
        let _ = writeln!(o, "<h2>{}</h2>\n<p class=\"note\">{}</p>", esc(super::CONTROL_SECTION), esc(super::CONTROL_RULE));
        header(&mut o, &super::CONTROL_HEADER);
        for r in &a.controls {
            row(&mut o, &cells::control(a, r), &[false, false, true, false, false, false, true, true, true]);
        }
        o.push_str("</table>\n");
    }

    if !a.states.is_empty() {
        let _ = writeln!(o, "<h2>{}</h2>\n<p class=\"note\">{}</p>", esc(super::STATES_SECTION), esc(super::STATES_NOTE));
        header(&mut o, &super::STATES_HEADER);
        for r in &a.states {
            row(&mut o, &cells::states(a, r), &[false, false, true, true, true]);
        }
        o.push_str("</table>\n");
    }

    o.push_str("<h2>Sweeps</h2>\n");
    header(&mut o, &["name", "description", "created", "jobs by status"]);
    for s in &d.sweeps {
        let counts: Vec<String> = s.counts.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        row(&mut o, &[s.name.clone(), s.description.clone(), s.created_at.clone(), counts.join(", ")], &[]);
    }
    o.push_str("</table>\n");
    let search = super::search::rows(a);
    if !search.is_empty() {
        o.push_str("<h2>Adaptive search</h2>\n");
        header(&mut o, &["sweep", "cell", "outcome", "probes", "rounds"]);
        for r in &search {
            row(&mut o, r, &[false, false, false, true, true]);
        }
        o.push_str("</table>\n");
    }
    o.push_str("<h2>Jobs</h2>\n");
    header(&mut o, &["job", "label", "sweep", "status", "state size", "train length", "params", "final loss", "T_recall", "collapse"]);
    for j in &d.jobs {
        row(
            &mut o,
            &[
                j.id.clone(),
                j.label.clone(),
                j.sweep.clone(),
                match j.stopped_early {
                    Some(step) => format!("{} (stopped early at step {step})", j.status),
                    None => j.status.to_string(),
                },
                j.state_size.to_string(),
                cells::opt_int(j.train_len()),
                j.n_params.to_string(),
                cells::final_loss(a, &j.id),
                cells::t_recall(a, &j.id),
                cells::verdict(a, &j.id).into(),
            ],
            &[false, false, false, false, true, true, true, true, true, false],
        );
    }
    o.push_str("</table>\n");

    if !a.skipped.is_empty() {
        o.push_str("<h2 id=\"skipped\">Skipped</h2>\n<ul>\n");
        for (what, why) in &a.skipped {
            let _ = writeln!(o, "<li>{}: {}</li>", esc(what), esc(why));
        }
        o.push_str("</ul>\n");
    }
    o.push_str("</body>\n</html>\n");
    o
}
