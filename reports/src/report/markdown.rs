// README.md of a report: the fitted laws beside the paper's, the derived tables, links to every
// figure and what was skipped.
use std::fmt::Write as _;

use super::cells::{self, NONE};
use super::{section_note, summary, Analysis, FORGET_RULE, PAPER_FORGET_LAW, PAPER_RECALL_LAW};
use crate::fit::Fit;

/// Escape the characters that would break a table cell or a link text.
fn md(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|").replace('[', "\\[").replace(']', "\\]").replace('\n', " ")
}

fn law_row(o: &mut String, name: &str, form: &str, fit: Option<&Fit>, paper: &str) {
    match fit {
        Some(f) => {
            let ci: Vec<String> = f.model.param_names().iter().map(|p| format!("{p} = {}", cells::param(f, p))).collect();
            let _ = writeln!(o, "| {name} | {} | {} | {} | {} | {paper} |", f.law(), cells::r2(f), f.n, ci.join("; "));
        }
        None => {
            let _ = writeln!(o, "| {name} | {form}: not fitted | {NONE} | {NONE} | {NONE} | {paper} |");
        }
    }
}

/// The whole README.
pub(super) fn page(a: &Analysis) -> String {
    let mut o = String::new();
    let d = &a.data;
    let _ = writeln!(o, "# {}\n", md(&a.title));
    let _ = writeln!(
        o,
        "Sweeps: {}, jobs: {}, evaluations: {}. Laws are in the paper's units: S in millions of state \
         parameters, T in thousands of tokens (K). Full tables: [index.html](index.html); fitted \
         parameters: [fits.json](fits.json).\n",
        d.sweeps.len(),
        d.jobs.len(),
        d.evals.len()
    );
    for notice in summary::notices(a) {
        let mut text = md(&notice);
        if let Some((dir, doc)) = &a.campaign_links {
            text = text.replacen(&md(summary::CAMPAIGN_DIR), &format!("[{}]({dir})", md(summary::CAMPAIGN_DIR)), 1).replacen(
                &md(summary::REPRODUCTION),
                &format!("[{}]({doc})", md(summary::REPRODUCTION)),
                1,
            );
        }
        let _ = writeln!(o, "> **{text}**\n");
    }
    if !a.skipped.is_empty() {
        let _ = writeln!(o, "Not drawn or not fitted: {}, each with the reason under [Skipped](#skipped).\n", a.skipped.len());
    }
    let summary = summary::sentences(a);
    if !summary.is_empty() {
        o.push_str("## Summary\n\n");
        for line in &summary {
            let _ = writeln!(o, "- {}", md(line));
        }
        o.push('\n');
    }
    o.push_str("## Capacity laws\n\n");
    o.push_str("| law | this study | R² | n | parameters [95% bootstrap CI] | paper (arXiv 2410.07145) |\n");
    o.push_str("|---|---|---|---|---|---|\n");
    law_row(&mut o, "T_forget", "linear", a.forget_fit.as_ref(), PAPER_FORGET_LAW);
    law_row(&mut o, "T_recall", "exponential", a.recall_fit.as_ref(), PAPER_RECALL_LAW);
    let _ = writeln!(o, "\n{FORGET_RULE}\n");

    o.push_str(
        "### T_forget per state size\n\n| state size | S (M) | T_forget | lengths tried | collapsed lengths |\n|---:|---:|---|---|---|\n",
    );
    for r in &a.forget {
        let t = r.describe();
        let _ = writeln!(
            o,
            "| {} | {} | {t} | {} | {} |",
            r.state_size,
            cells::s_m(r.state_size),
            cells::ints(&r.lengths_tried),
            cells::ints(&r.collapsed_lengths)
        );
    }
    o.push_str("\n### T_recall per state size\n\n| state size | S (M) | T_recall | best job |\n|---:|---:|---|---|\n");
    for r in &a.recalls {
        let t = r.describe();
        let job = r.job_id.as_deref().map(md).unwrap_or_else(|| NONE.into());
        let _ = writeln!(o, "| {} | {} | {t} | {job} |", r.state_size, cells::s_m(r.state_size));
    }

    let search = super::search::rows(a);
    if !search.is_empty() {
        o.push_str("\n## Adaptive search\n\n| sweep | cell | outcome | probes | rounds |\n|---|---|---|---:|---:|\n");
        for r in &search {
            let _ = writeln!(o, "| {} |", r.iter().map(|c| md(c)).collect::<Vec<_>>().join(" | "));
        }
    }
    if !a.during.is_empty() {
        o.push_str("\n### Evaluations during training\n\n| job | eval | step | tokens | worst ratio | 95% interval | verdict |\n|---|---:|---:|---:|---:|---|---|\n");
        for r in &a.during {
            let num = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| NONE.into());
            let ci = r.ratio_ci.map(|[lo, hi]| format!("[{lo:.3}, {hi:.3}]")).unwrap_or_else(|| NONE.into());
            let _ = writeln!(
                o,
                "| {} | #{} {} | {} | {} | {} | {ci} | {} |",
                md(&super::job_label(a, &r.job_id)),
                r.eval_index,
                md(&r.what),
                r.step,
                r.tokens.map(|t| t.to_string()).unwrap_or_else(|| NONE.into()),
                num(r.ratio),
                r.verdict.map_or(NONE, |v| v.words())
            );
        }
    }
    if !a.controls.is_empty() {
        let _ = writeln!(o, "\n## {}\n\n{}\n", super::CONTROL_SECTION, md(super::CONTROL_RULE));
        let _ = writeln!(o, "| {} |\n|---|---|---:|---|---|---|---|---|---|", super::CONTROL_HEADER.join(" | "));
        for r in &a.controls {
            let _ = writeln!(o, "| {} |", cells::control(a, r).iter().map(|c| md(c)).collect::<Vec<_>>().join(" | "));
        }
    }
    if !a.states.is_empty() {
        let _ = writeln!(o, "\n## {}\n\n{}\n", super::STATES_SECTION, md(super::STATES_NOTE));
        let _ = writeln!(o, "| {} |\n|---|---|---:|---:|---:|", super::STATES_HEADER.join(" | "));
        for r in &a.states {
            let _ = writeln!(o, "| {} |", cells::states(a, r).iter().map(|c| md(c)).collect::<Vec<_>>().join(" | "));
        }
    }
    o.push_str("\n## Figures\n\n");
    if a.figures.is_empty() {
        o.push_str("None.\n");
    }
    let mut sections: Vec<&str> = Vec::new();
    for f in &a.figures {
        if !sections.contains(&f.section) {
            sections.push(f.section);
        }
    }
    for (k, section) in sections.iter().enumerate() {
        if k > 0 {
            o.push('\n');
        }
        let _ = writeln!(o, "### {section}\n");
        if let Some(note) = section_note(a, section) {
            let _ = writeln!(o, "{}\n", md(&note));
        }
        for f in a.figures.iter().filter(|f| f.section == *section) {
            let _ = writeln!(o, "- [{}]({}.svg) ([PNG]({}.png))", md(&f.caption), f.stem, f.stem);
        }
    }
    o.push_str("\n## Skipped\n\n");
    if a.skipped.is_empty() {
        o.push_str("Nothing.\n");
    }
    for (what, why) in &a.skipped {
        let _ = writeln!(o, "- {}: {}", md(what), md(why));
    }
    o
}
