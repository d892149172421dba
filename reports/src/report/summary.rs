// The report's summary: a few plain sentences on what the data show (state collapse, T_forget,
// T_recall, the fitted laws), shared by index.html and README.md.
use std::collections::{BTreeMap, BTreeSet};

use super::{Analysis, PAPER_FORGET_LAW, PAPER_RECALL_LAW};
use crate::derive::{self, ForgetRow};
use crate::fit::Fit;
use crate::verdict::Verdict;

/// "a", "a and b", "a, b and c".
pub(crate) fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn ints(v: impl IntoIterator<Item = i64>) -> Vec<String> {
    v.into_iter().map(|x| x.to_string()).collect()
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Where the committed campaign results are, for the no-collapse notice.
pub(crate) const CAMPAIGN_DIR: &str = "results/h200-campaign/";
/// The write-up of the reproduction and the campaign.
pub(crate) const REPRODUCTION: &str = "REPRODUCTION.md";

/// The plain statement at the top of a report whose loss evaluations show no state collapse
/// (issue 24 item 3: the demo is too small to reach it), pointing to the committed campaign
/// results; `None` when a verdict collapsed or there is no loss verdict.
pub(crate) fn no_collapse_notice(a: &Analysis) -> Option<String> {
    use crate::verdict::{eval_verdict, Verdict};
    let vs: Vec<Verdict> = a
        .data
        .evals
        .iter()
        .filter(|e| e.kind() == "loss" && e.mitigation() == "none")
        .filter_map(|e| Some(eval_verdict(e, a.data.job(&e.job_id))?.verdict))
        .collect();
    if vs.is_empty() || vs.contains(&Verdict::Collapsed) {
        return None;
    }
    let clear = vs.iter().filter(|v| **v == Verdict::NotCollapsed).count();
    Some(format!(
        "No state collapse in these results: none of the {} loss evaluations collapsed ({clear} \
         showed no collapse, {} inconclusive), so this report cannot show collapse or measure \
         T_forget. The committed campaign results at larger states and lengths are in \
         {CAMPAIGN_DIR} and {REPRODUCTION}.",
        vs.len(),
        vs.len() - clear
    ))
}

/// The plain statement at the top of a report whose passkey evaluations retrieved nothing at
/// all (every cell 0: the models never learned retrieval, as in the demo's few CPU minutes);
/// `None` when a passkey was retrieved somewhere or there is no passkey result.
pub(crate) fn no_recall_notice(a: &Analysis) -> Option<String> {
    let results: Vec<_> = a.data.evals.iter().filter(|e| e.kind() == "passkey").filter_map(|e| e.passkey().ok()).collect();
    let cells = results.iter().flat_map(|r| &r.cells).count();
    if cells == 0 || results.iter().flat_map(|r| &r.cells).any(|c| c.accuracy > 0.0) {
        return None;
    }
    Some(format!(
        "No passkey retrieved: accuracy is 0 in all {cells} cells (length x depth) of {}, so these \
         models did not learn retrieval and T_recall cannot be measured here. The campaign's recall \
         models, trained on passkey prompts for 100M tokens, are in {CAMPAIGN_DIR} and {REPRODUCTION}.",
        plural(results.len(), "passkey evaluation", "passkey evaluations")
    ))
}

/// The plain statement at the top of a report where the paper's rule says "collapsed" but the
/// same model trained longer, on the same prompts at the same step, says "not collapsed vs
/// control" (issue 21): how many, with the figures, and why the two differ; when the control
/// also confirms some of the rule's verdicts or leaves some undecided, it counts those too, so
/// that one overturned verdict never reads as the fate of all. `None` when no verdict is
/// contradicted.
pub(crate) fn control_notice(a: &Analysis) -> Option<String> {
    let rows: Vec<_> = a.controls.iter().filter(|r| r.contradicts_paper()).collect();
    if rows.is_empty() {
        return None;
    }
    let jobs: BTreeSet<&str> = rows.iter().map(|r| r.job_id.as_str()).collect();
    let lens: BTreeSet<i64> = rows.iter().map(|r| r.train_len).collect();
    let controls: BTreeSet<i64> = rows.iter().map(|r| r.control_train_len).collect();
    let range = |v: Vec<f64>| {
        let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| (l.min(*x), h.max(*x)));
        if v.is_empty() {
            None
        } else if format!("{lo:.2}") == format!("{hi:.2}") {
            Some(format!("{hi:.2}"))
        } else {
            Some(format!("{lo:.2}-{hi:.2}"))
        }
    };
    let paper = range(rows.iter().filter_map(|r| r.paper_ratio).collect());
    let worst = rows.iter().filter_map(|r| r.comparison.worst_range()).filter_map(|w| Some((w.ratio?, w.ci.map_or(w.ratio?, |c| c[1]))));
    let (ratio, upper) = worst.fold((f64::NEG_INFINITY, f64::NEG_INFINITY), |(r, u), (x, y)| (r.max(x), u.max(y)));
    let flagged: Vec<_> = a.controls.iter().filter(|r| r.paper == Some(Verdict::Collapsed)).collect();
    let confirmed = flagged.iter().filter(|r| r.comparison.verdict == Verdict::Collapsed).count();
    let undecided = flagged.len() - confirmed - rows.len();
    let overturned = format!(
        "{} of {} trained at T = {}{}",
        plural(rows.len(), "loss evaluation", "loss evaluations"),
        plural(jobs.len(), "job", "jobs"),
        join_and(&ints(lens)),
        paper.map(|p| format!(" (ratio {p} to the largest loss within T)")).unwrap_or_default(),
    );
    let against = format!(
        "on the same prompts at the same training step, its loss past T is at most {ratio:.2}x the \
         longer-trained model's over every range of positions compared (95% upper bound at most \
         {upper:.2}, below the factor 2): not collapsed vs control"
    );
    if confirmed + undecided == 0 {
        return Some(format!(
            "The paper's rule says \"collapsed\" for {overturned}, but the same model trained at T = {} \
             says otherwise: {against}. The paper's reference, the largest loss within T, is small \
             here for reasons of content that differ by position (e.g. a header that opens every \
             document and is nearly memorised), not because the state holds more there. See \"{}\".",
            join_and(&ints(controls)),
            super::CONTROL_SECTION,
        ));
    }
    Some(format!(
        "Of the {} that the paper's rule calls \"collapsed\" and that have a longer-trained control \
         (the same model trained at T = {}), the control confirms {confirmed} (loss past T more \
         than twice the control's), leaves {undecided} undecided and \
         contradicts {}: for {overturned}, {against}. A reference within T made small by content \
         (e.g. a header that opens every document and is nearly memorised) lets the paper's rule \
         say \"collapsed\" where the state holds nothing more. See \"{}\".",
        plural(flagged.len(), "loss evaluation", "loss evaluations"),
        join_and(&ints(flagged.iter().map(|r| r.control_train_len).collect::<BTreeSet<_>>())),
        rows.len(),
        super::CONTROL_SECTION,
    ))
}

/// The notices at the top of a report: what it cannot show, pointing to the campaign results.
pub(crate) fn notices(a: &Analysis) -> Vec<String> {
    no_collapse_notice(a).into_iter().chain(no_recall_notice(a)).chain(control_notice(a)).collect()
}

/// The summary sentences, in order: collapse and T_forget, T_recall, the laws.
pub(crate) fn sentences(a: &Analysis) -> Vec<String> {
    let mut out = Vec::new();
    forget(a, &mut out);
    recall(a, &mut out);
    laws(a, &mut out);
    out
}

/// The furthest position any loss evaluation without mitigation reached.
fn loss_reach(a: &Analysis) -> Option<i64> {
    a.data
        .evals
        .iter()
        .filter(|e| e.kind() == "loss" && e.mitigation() == "none")
        .filter_map(|e| e.loss().ok()?.max_position())
        .reduce(f64::max)
        .map(|p| p.round() as i64)
}

/// How the loss verdicts came out: counts by verdict and reason, and the largest rises of the
/// degenerate curves (whose threshold the loss could not pass).
fn verdict_counts(a: &Analysis, out: &mut Vec<String>) {
    use crate::verdict::{eval_verdict, Verdict};
    let jobs: BTreeSet<&str> = a.data.jobs.iter().map(|j| j.id.as_str()).collect();
    let vs: Vec<_> = a
        .data
        .evals
        .iter()
        .filter(|e| e.kind() == "loss" && e.mitigation() == "none" && jobs.contains(e.job_id.as_str()))
        .filter_map(|e| Some((e, eval_verdict(e, a.data.job(&e.job_id))?)))
        .collect();
    if vs.is_empty() {
        return;
    }
    let count = |v: Verdict| vs.iter().filter(|(_, x)| x.verdict == v).count();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for (_, v) in &vs {
        if let Some(r) = &v.reason {
            *reasons.entry(r.replace('_', " ")).or_default() += 1;
        }
    }
    let reasons: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    let from_mean = vs.iter().filter(|(_, v)| v.basis == crate::verdict::Basis::MeanCurve).count();
    let basis =
        if from_mean > 0 { format!("; {from_mean} judged from the stored mean curve (no per-prompt losses)") } else { String::new() };
    out.push(format!(
        "Of {} loss verdicts, {} collapsed, {} showed no collapse and {} were inconclusive{}{basis}.",
        vs.len(),
        count(Verdict::Collapsed),
        count(Verdict::NotCollapsed),
        count(Verdict::Inconclusive),
        if reasons.is_empty() { String::new() } else { format!(" ({})", join_and(&reasons)) }
    ));
    let mut rises: Vec<(f64, String)> = vs
        .iter()
        .filter(|(_, v)| v.reason.as_deref() == Some("degenerate"))
        .filter_map(|(e, v)| {
            let j = a.data.job(&e.job_id)?;
            Some((v.rise?, format!("{:.1} nats (S = {}, T = {}, {})", v.rise?, j.state_size, j.train_len()?, e.source())))
        })
        .filter(|(r, _)| *r > 0.5)
        .collect();
    rises.sort_by(|x, y| y.0.total_cmp(&x.0));
    if !rises.is_empty() {
        let top: Vec<String> = rises.iter().take(3).map(|r| r.1.clone()).collect();
        out.push(format!("Degenerate curves whose loss still rose after the training length: {}.", join_and(&top)));
    }
}

fn forget(a: &Analysis, out: &mut Vec<String>) {
    verdict_counts(a, out);
    let rows: Vec<&ForgetRow> = a.forget.iter().filter(|r| !r.lengths_tried.is_empty()).collect();
    if rows.is_empty() {
        if a.data.evals.iter().any(|e| e.kind() == "loss") {
            out.push(
                "No loss evaluation gave a collapse verdict (no bucket ends within the training \
                 length), so state collapse and T_forget could not be assessed."
                    .into(),
            );
        }
        return;
    }
    let unclear: Vec<String> = a
        .forget
        .iter()
        .filter(|r| !r.inconclusive_lengths.is_empty())
        .map(|r| format!("S = {} at {}", r.state_size, join_and(&ints(r.inconclusive_lengths.iter().copied()))))
        .collect();
    if !unclear.is_empty() {
        out.push(format!(
            "Inconclusive verdicts (too few prompts for a decisive bootstrap interval, an interval containing 2, or a degenerate curve), left out of T_forget: {}.",
            join_and(&unclear)
        ));
    }
    let sizes = join_and(&ints(rows.iter().map(|r| r.state_size)));
    let lengths: BTreeSet<i64> = rows.iter().flat_map(|r| r.lengths_tried.iter().copied()).collect();
    let reach = loss_reach(a).map(|p| format!(", with the loss evaluated up to position {p}")).unwrap_or_default();
    let collapsed: Vec<&&ForgetRow> = rows.iter().filter(|r| !r.collapsed_lengths.is_empty()).collect();
    if collapsed.is_empty() {
        let shortest: BTreeSet<i64> = rows.iter().filter_map(|r| r.t_forget).collect();
        let bound = match shortest.iter().collect::<Vec<_>>().as_slice() {
            [one] => format!("at or below {one} tokens, the shortest training length tried,"),
            _ => "at or below the shortest training length tried".to_string(),
        };
        out.push(format!(
            "No decisive state collapse at any state size and training length: none of the \
             {} (S = {sizes}) collapsed at any of the training lengths with a decisive verdict ({}){reach}. \
             T_forget is therefore {bound} for every state size; it is an upper bound, not a \
             measurement, so the linear T_forget law cannot be fitted.",
            plural(rows.len(), "state size", "state sizes"),
            join_and(&ints(lengths.iter().copied())),
        ));
        return;
    }
    let which: Vec<String> = collapsed
        .iter()
        .map(|r| format!("S = {} (trained at {})", r.state_size, join_and(&ints(r.collapsed_lengths.iter().copied()))))
        .collect();
    out.push(format!("State collapse was observed for {} of {} state sizes{reach}: {}.", collapsed.len(), rows.len(), join_and(&which)));
    // Where a control contradicted the paper's rule, the collapses that no control can check
    // are no safer: say which they are.
    let contradicted = a.controls.iter().any(|r| r.paper == Some(Verdict::Collapsed) && r.comparison.verdict == Verdict::NotCollapsed);
    if contradicted {
        let checked: BTreeSet<(i64, i64)> =
            a.controls.iter().filter_map(|r| Some((a.data.job(&r.job_id)?.state_size, r.train_len))).collect();
        let unchecked: Vec<String> = collapsed
            .iter()
            .flat_map(|r| r.collapsed_lengths.iter().map(move |l| (r.state_size, *l)))
            .filter(|k| !checked.contains(k))
            .map(|(s, l)| format!("S = {s} at {l}"))
            .collect();
        if !unchecked.is_empty() {
            out.push(format!(
                "These collapses have no longer-trained model of the same setup to compare with: {}. Elsewhere in this \
                 report such a control contradicts the paper's rule (see the notice at the top), so they are unconfirmed.",
                join_and(&unchecked)
            ));
        }
    }
    let measured: Vec<String> = rows
        .iter()
        .filter(|r| !r.is_upper_bound())
        .filter_map(|r| {
            let t = r.t_forget?;
            Some(match r.lower() {
                Some(l) => format!("({l}, {t}] at S = {}", r.state_size),
                None => format!("{t} at S = {}", r.state_size),
            })
        })
        .collect();
    if !measured.is_empty() {
        out.push(format!(
            "T_forget lies in {} (between the largest collapsed and the smallest non-collapsed training length).",
            join_and(&measured)
        ));
    }
    let never: Vec<i64> = rows.iter().filter(|r| r.is_upper_bound()).map(|r| r.state_size).collect();
    if !never.is_empty() {
        out.push(format!(
            "S = {} never collapsed, so T_forget there is only known to be at or below the \
             shortest training length tried.",
            join_and(&ints(never))
        ));
    }
    let not_reached: Vec<String> = rows
        .iter()
        .filter(|r| r.t_forget.is_none())
        .filter_map(|r| Some(format!("S = {} (> {})", r.state_size, r.largest_tried()?)))
        .collect();
    if !not_reached.is_empty() {
        out.push(format!("T_forget was not reached for {}: the longest training length tried still collapses.", join_and(&not_reached)));
    }
}

fn recall_text(r: &derive::StateRecall) -> String {
    match r.t_recall {
        Some(t) => t.to_string(),
        None if r.learned == 0 => "not learned".into(),
        None => "none".into(),
    }
}

fn recall(a: &Analysis, out: &mut Vec<String>) {
    if a.job_recalls.is_empty() {
        return;
    }
    if a.recalls.iter().all(|r| r.t_recall.is_none()) {
        out.push(
            "No model retrieved the passkey with > 95% accuracy averaged over depths at any \
             prompt length tried, so T_recall could not be measured."
                .into(),
        );
        return;
    }
    let per_size: Vec<String> = a.recalls.iter().map(|r| format!("{} at S = {}", recall_text(r), r.state_size)).collect();
    out.push(format!(
        "T_recall (the authors' definition: the longest prompt length tried with > 95% passkey \
         accuracy averaged over depths), best job per state size: {}.",
        join_and(&per_size)
    ));
    let none: Vec<i64> = a.recalls.iter().filter(|r| r.t_recall.is_none() && r.learned > 0).map(|r| r.state_size).collect();
    if !none.is_empty() {
        out.push(format!("No model of state size {} retrieved the passkey reliably at any prompt length tried.", join_and(&ints(none))));
    }
    let unlearned: Vec<String> =
        a.recalls.iter().filter(|r| r.learned == 0).map(|r| format!("{} ({} jobs)", r.state_size, r.jobs)).collect();
    if !unlearned.is_empty() {
        out.push(format!(
            "At state size {} no job learned retrieval (depth-averaged accuracy at most {:.0}% at every \
             length tried): a failed training, left out of the T_recall fit and of the trend below \
             rather than read as a capacity below the shortest length.",
            join_and(&unlearned),
            derive::LEARNED_ACCURACY * 100.0
        ));
    }
    let learned: Vec<&derive::StateRecall> = a.recalls.iter().filter(|r| r.learned > 0).collect();
    let values: Vec<i64> = learned.iter().map(|r| r.t_recall.unwrap_or(0)).collect();
    if learned.len() >= 2 {
        if values.windows(2).all(|w| w[0] <= w[1]) {
            out.push("T_recall rises or stays level as the state grows.".into());
        } else {
            out.push(
                "T_recall does not increase steadily with state size: a larger state did not \
                 always recall further."
                    .into(),
            );
        }
    }
    // train length -> state size -> best T_recall (None: no length recalled)
    let mut by_len: BTreeMap<i64, BTreeMap<i64, Option<i64>>> = BTreeMap::new();
    for j in &a.job_recalls {
        if let Some(len) = j.train_len {
            let e = by_len.entry(len).or_default().entry(j.state_size).or_insert(None);
            *e = (*e).max(j.t_recall);
        }
    }
    if by_len.len() >= 2 {
        let (some, nothing): (Vec<_>, Vec<_>) = by_len.iter().partition(|(_, per_size)| per_size.values().any(Option::is_some));
        let mut parts: Vec<String> = some
            .iter()
            .map(|(len, per_size)| {
                let v: Vec<String> =
                    per_size.iter().map(|(s, t)| format!("{} at S = {s}", t.map_or_else(|| "none".into(), |t| t.to_string()))).collect();
                format!("trained at {len} tokens: {}", join_and(&v))
            })
            .collect();
        if !nothing.is_empty() {
            parts.push(format!(
                "no model trained at {} tokens reached it at any length",
                join_and(&ints(nothing.iter().map(|(len, _)| **len)))
            ));
        }
        out.push(format!("T_recall by training length: {}.", parts.join("; ")));
    }
}

fn law_sentence(a: &Analysis, name: &str, fit: Option<&Fit>, paper: &str, out: &mut Vec<String>) {
    match fit {
        Some(f) => {
            let how = f.censoring.map_or(String::new(), |c| {
                format!(
                    " ({} with a two-sided interval or value, {} with a one-sided bound; interval-censored maximum likelihood)",
                    c.measured(),
                    c.bounded()
                )
            });
            let ci =
                f.ci.iter()
                    .map(|(k, (lo, hi))| format!("{k} in [{}, {}]", crate::fit::fmt_coef(*lo), crate::fit::fmt_coef(*hi)))
                    .collect::<Vec<_>>();
            let ci = if ci.is_empty() { String::new() } else { format!("; bootstrap 95% intervals: {}", ci.join(", ")) };
            out.push(format!("The {name} law fitted over {} state sizes{how} is {}{ci} (paper: {paper}).", f.n, f.equation()))
        }
        None => {
            let key = format!("{name} fit");
            if let Some((_, why)) = a.skipped.iter().find(|(w, _)| *w == key) {
                out.push(format!("The {name} law was not fitted: {why}."));
            }
        }
    }
}

fn laws(a: &Analysis, out: &mut Vec<String>) {
    let with_verdict = || a.forget.iter().filter(|r| !r.lengths_tried.is_empty());
    // when nothing collapsed anywhere, the collapse sentence already says why there is no law
    let explained = with_verdict().all(|r| r.is_upper_bound());
    if with_verdict().next().is_some() && !(explained && a.forget_fit.is_none()) {
        law_sentence(a, "T_forget", a.forget_fit.as_ref(), PAPER_FORGET_LAW, out);
    }
    if !a.job_recalls.is_empty() {
        law_sentence(a, "T_recall", a.recall_fit.as_ref(), PAPER_RECALL_LAW, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A control row of a job trained at 128 against its control at 8192: the paper's verdict,
    /// the verdict against the control and the worst range's ratio with its interval.
    fn row(job: &str, paper: Verdict, vs_control: Verdict, ratio: f64) -> crate::control::ControlRow {
        use crate::control::{Basis, Comparison, ControlRow, RangeRatio};
        let range = RangeRatio {
            start: 32768,
            end: 65536,
            job_loss: Some(ratio),
            control_loss: Some(1.0),
            ratio: Some(ratio),
            ci: Some([ratio - 0.2, ratio + 0.3]),
        };
        ControlRow {
            job_id: job.into(),
            eval_index: 0,
            step: 610,
            tokens: None,
            source: "corpus".into(),
            train_len: 128,
            control_id: "control".into(),
            control_eval_index: 0,
            control_train_len: 8192,
            paper: Some(paper),
            paper_ratio: Some(3.5),
            comparison: Comparison {
                ranges: vec![range],
                verdict: vs_control,
                reason: None,
                worst: Some(0),
                basis: Basis::PerPrompt,
                prompts: 8,
            },
        }
    }

    fn analysis(controls: Vec<crate::control::ControlRow>) -> Analysis {
        Analysis {
            data: Default::default(),
            title: String::new(),
            multi_sweep: false,
            forget: Vec::new(),
            job_recalls: Vec::new(),
            recalls: Vec::new(),
            forget_fit: None,
            recall_fit: None,
            during: Vec::new(),
            controls,
            states: Vec::new(),
            figures: Vec::new(),
            skipped: Vec::new(),
            campaign_links: None,
        }
    }

    #[test]
    fn the_control_notice_counts_what_the_control_confirms() {
        use Verdict::*;
        assert_eq!(control_notice(&analysis(vec![row("a", Collapsed, Collapsed, 3.0)])), None, "nothing contradicted, nothing to say");
        // Every verdict of the rule overturned (lease 3): the rule's reference is blamed.
        let all = control_notice(&analysis(vec![row("a", Collapsed, NotCollapsed, 1.2), row("b", Collapsed, NotCollapsed, 1.4)])).unwrap();
        assert!(all.starts_with("The paper's rule says \"collapsed\" for 2 loss evaluations of 2 jobs trained at T = 128"), "{all}");
        assert!(all.contains("at most 1.40x") && all.contains("upper bound at most 1.70"), "{all}");
        // One overturned among confirmed and undecided ones (lease 6): the counts come first.
        let rows = vec![
            row("a", Collapsed, NotCollapsed, 1.4),
            row("b", Collapsed, Collapsed, 3.0),
            row("c", Collapsed, Collapsed, 4.0),
            row("d", Collapsed, Inconclusive, 2.1),
            row("e", NotCollapsed, NotCollapsed, 1.0),
        ];
        let mixed = control_notice(&analysis(rows)).unwrap();
        assert!(
            mixed.starts_with("Of the 4 loss evaluations that the paper's rule calls \"collapsed\" and that have a longer-trained control (the same model trained at T = 8192), the control confirms 2"),
            "{mixed}"
        );
        assert!(mixed.contains("leaves 1 undecided and contradicts 1: for 1 loss evaluation of 1 job trained at T = 128"), "{mixed}");
    }

    #[test]
    fn lists_read_naturally() {
        assert_eq!(join_and(&[]), "");
        assert_eq!(join_and(&["a".into()]), "a");
        assert_eq!(join_and(&["a".into(), "b".into(), "c".into()]), "a, b and c");
        assert_eq!(plural(1, "state size", "state sizes"), "1 state size");
    }
}
