// write_report end to end: byte-identical output across runs and record orders, skips with
// reasons when passkey results are missing, the T_forget rule on a hand-made case, and the
// fitted laws when there are enough state sizes.
mod common;

use std::collections::BTreeMap;

use serde_json::json;
use stuffed_reports::derive::{self, ForgetRow};
use stuffed_reports::figures::count_series;
use stuffed_reports::{write_report, EvalRecord, ReportData, ReportOptions};

#[test]
fn report_is_byte_identical_across_runs_and_input_orders() {
    let data = common::fixture();
    let (d1, d2) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let opts = ReportOptions::default();
    let s1 = write_report(&data, d1.path(), &opts).expect("report");
    let mut shuffled = data.clone();
    shuffled.jobs.reverse();
    shuffled.evals.reverse();
    shuffled.metrics.reverse();
    let s2 = write_report(&shuffled, d2.path(), &opts).expect("report");
    let (t1, t2) = (common::read_tree(d1.path()), common::read_tree(d2.path()));
    assert_eq!(t1.keys().collect::<Vec<_>>(), t2.keys().collect::<Vec<_>>());
    for (name, bytes) in &t1 {
        assert!(bytes == &t2[name], "{name} differs between runs");
    }
    assert_eq!(s1.files.len(), t1.len(), "summary lists every file written");
    assert_eq!(s1.skipped, s2.skipped);

    for f in [
        "index.html",
        "README.md",
        "fits.json",
        "t_forget_points.csv",
        "t_recall_points.csv",
        "figures/t_forget.svg",
        "figures/t_recall.png",
        "figures/loss_S4096_corpus.svg",
        "figures/loss_S4096_newlines.svg",
        "figures/mitigation_j-n16-l0256_corpus.svg",
        "figures/passkey_j-n08-l0256.svg",
        "figures/retention_j-n32-l0256.svg",
        "figures/state_var_j-n32-l0256.svg",
        "figures/state_hist_j-n32-l0256.svg",
        "figures/training_S2048.png",
    ] {
        assert!(t1.contains_key(f), "{f} missing; have {:?}", t1.keys().collect::<Vec<_>>());
    }
    let heatmaps = t1
        .keys()
        .filter(|k| k.starts_with("figures/passkey_") && !k.starts_with("figures/passkey_accuracy") && k.ends_with(".svg"))
        .count();
    assert_eq!(heatmaps, 6);
    // one accuracy-vs-length figure for the single sweep, one curve per job
    let svg = String::from_utf8(t1["figures/passkey_accuracy.svg"].clone()).expect("utf8");
    assert_eq!(count_series(&svg).lines, 6);
    let svg = String::from_utf8(t1["figures/loss_S2048_corpus.svg"].clone()).expect("utf8");
    assert_eq!(count_series(&svg).lines, 2);
    let svg = String::from_utf8(t1["figures/mitigation_j-n16-l0256_corpus.svg"].clone()).expect("utf8");
    assert_eq!(count_series(&svg).lines, 3);

    let html = String::from_utf8(t1["index.html"].clone()).expect("utf8");
    assert!(html.contains("<img src=\"figures/t_forget.svg\""));
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
    assert!(html.contains("d_state=16 seq_len=256") && html.contains("collapsed") && html.contains("no collapse"));
    assert!(html.contains("2026-11-28T10:00:00Z"));
    let readme = String::from_utf8(t1["README.md"].clone()).expect("utf8");
    assert!(readme.contains("T = 5.172·S − 4.469") && readme.contains("T = 4.756·(1.365^S − 1) − 0.742"));
    assert!(readme.contains("(figures/t_forget.svg)"));
    // plain summary: collapse at 2 of 3 state sizes, T_recall per state size and training length
    for text in [&readme, &html] {
        assert!(
            text.contains("State collapse was observed for 2 of 3 state sizes")
                && text.contains("S = 8192 (trained at 256 and 1024)")
                && text.contains("T_recall by training length: trained at 256 tokens: 256 at S = 2048"),
            "{text}"
        );
    }
    // display smoothing is documented where the loss figures are
    assert!(readme.contains(
        "### Loss by position\n\nLoss curves on a logarithmic position axis are smoothed into \
         log-spaced bins for display"
    ));
    assert!(html.contains(
        "Loss vs position, S = 2048 (corpus) (<a href=\"figures/loss_S2048_corpus.png\">PNG</a>) \
         — curves smoothed into log-spaced bins for display (10 per doubling)"
    ));
    // single sweep: file names and titles without the sweep
    assert!(!t1.keys().any(|k| k.contains("grid")));
    // 3 state sizes: too few for either law, listed as skipped
    assert!(
        s1.skipped.iter().any(|(f, why)| f == "T_forget fit" && why.contains("got 1") && why.contains("only bounded")),
        "{:?}",
        s1.skipped
    );
    assert!(s1.skipped.iter().any(|(f, why)| f == "T_recall fit" && why.contains("got 3")), "{:?}", s1.skipped);
}

#[test]
fn missing_passkey_results_are_skipped_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = write_report(&common::fixture_without_passkey(), dir.path(), &ReportOptions::default()).expect("report");
    let skipped: BTreeMap<&str, &str> = summary.skipped.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(skipped.get("passkey heat map"), Some(&"no passkey results"), "{skipped:?}");
    assert_eq!(skipped.get("T_recall vs state size"), Some(&"no passkey results"), "{skipped:?}");
    let tree = common::read_tree(dir.path());
    assert!(!tree.keys().any(|k| k.contains("passkey") || k.contains("t_recall.")));
    for f in [
        "figures/t_forget.svg",
        "figures/loss_S2048_corpus.svg",
        "figures/retention_j-n32-l0256.png",
        "figures/mitigation_j-n16-l0256_corpus.svg",
        "index.html",
        "README.md",
    ] {
        assert!(tree.contains_key(f), "{f} missing");
    }
    let readme = String::from_utf8(tree["README.md"].clone()).expect("utf8");
    assert!(readme.contains("passkey heat map: no passkey results"));
}

#[test]
fn t_forget_rule_on_a_hand_made_case() {
    // S=1000: collapses at 128 and 512, forgets at 256, 1024, 2048 -> T_forget = 1024
    //   (two jobs at 512: both collapse; one at 2048 has two sources, both fine)
    // S=2000: forgets at 256 (one of two runs), collapses at 512 -> not reached
    // S=3000: only an inconclusive verdict -> no lengths tried, 64 inconclusive
    let mut data = ReportData::default();
    let mut add = |id: &str, s: i64, len: i64, verdicts: &[Option<bool>]| {
        let mut j = common::job(8, len);
        j.id = id.into();
        j.state_size = s;
        data.jobs.push(j);
        for (k, v) in verdicts.iter().enumerate() {
            let source = if k == 0 { "corpus" } else { "newlines" };
            let verdict = match v {
                Some(true) => "collapsed",
                Some(false) => "not_collapsed",
                None => "inconclusive",
            };
            data.evals.push(common::record(
                id,
                "loss",
                json!({"source": source, "mitigation": "none"}),
                json!({"buckets": [], "collapse": {"collapsed": v, "verdict": verdict}}),
            ));
        }
    };
    add("a128", 1000, 128, &[Some(true)]);
    add("a256", 1000, 256, &[Some(false)]);
    add("a512x", 1000, 512, &[Some(true)]);
    add("a512y", 1000, 512, &[Some(false), Some(true)]);
    add("a1024", 1000, 1024, &[Some(false)]);
    add("a2048", 1000, 2048, &[Some(false), Some(false)]);
    add("b256x", 2000, 256, &[Some(true)]);
    add("b256y", 2000, 256, &[Some(false)]);
    add("b512", 2000, 512, &[Some(true), None]);
    add("c64", 3000, 64, &[None]);
    // a mitigated eval never counts
    data.evals.push(common::record(
        "b512",
        "loss",
        json!({"mitigation": "rri:decay=0.9999,b=0.75"}),
        json!({"collapse": {"collapsed": false}}),
    ));
    let rows = derive::t_forget(&data);
    assert_eq!(
        rows,
        vec![
            ForgetRow {
                state_size: 1000,
                t_forget: Some(1024),
                lengths_tried: vec![128, 256, 512, 1024, 2048],
                collapsed_lengths: vec![128, 512],
                inconclusive_lengths: vec![],
            },
            ForgetRow {
                state_size: 2000,
                t_forget: None,
                lengths_tried: vec![256, 512],
                collapsed_lengths: vec![512],
                inconclusive_lengths: vec![],
            },
            ForgetRow {
                state_size: 3000,
                t_forget: None,
                lengths_tried: vec![],
                collapsed_lengths: vec![],
                inconclusive_lengths: vec![64],
            },
        ]
    );
    assert_eq!(derive::job_collapse(&data, "a512y"), Some(true));
    assert_eq!(derive::job_collapse(&data, "c64"), None);
    let (xs, ys) = derive::forget_points(&rows);
    assert_eq!((xs, ys), (vec![0.001], vec![1.024]));
    // Censored: S=1000 in (512, 1024], S=2000 above 512.
    let c = derive::forget_censored(&rows);
    assert_eq!(c.iter().map(|c| (c.lo, c.hi)).collect::<Vec<_>>(), vec![(Some(0.512), Some(1.024)), (Some(0.512), None)]);
}

#[test]
fn recall_per_state_size_is_the_max_over_jobs() {
    let data = common::fixture();
    let jobs = derive::job_recalls(&data);
    assert_eq!(jobs.len(), 6);
    let per_size = derive::state_recalls(&jobs);
    let got: Vec<(i64, Option<i64>)> = per_size.iter().map(|r| (r.state_size, r.t_recall)).collect();
    assert_eq!(got, vec![(2048, Some(512)), (4096, Some(1024)), (8192, Some(2048))]);
    assert_eq!(per_size[0].job_id.as_deref(), Some("j-n08-l1024"));
}

/// A passkey result over `(len, accuracy)` at one depth; with `search` (outcome, last pass,
/// first fail) it is a length search whose probes are those lengths in that order.
fn passkey_eval(job: &str, lens: &[(i64, f64)], search: Option<(&str, Option<i64>, Option<i64>)>) -> EvalRecord {
    let cells: Vec<_> = lens.iter().map(|&(len, a)| json!({"len": len, "depth": 0.5, "accuracy": a, "n": 8})).collect();
    let t = lens.iter().filter(|p| p.1 > 0.95).map(|p| p.0).max();
    let mut result = json!({"cells": cells, "t_recall": t, "t_recall_mean": t});
    let mut params = json!({"mitigation": "none", "lengths": lens.iter().map(|p| p.0).collect::<Vec<_>>()});
    if let Some((outcome, last_pass, first_fail)) = search {
        let probes: Vec<_> = lens.iter().map(|&(len, a)| json!({"len": len, "accuracy": a, "recalled": a > 0.95})).collect();
        result["search"] =
            json!({"outcome": outcome, "last_pass": last_pass, "first_fail": first_fail, "probes": probes, "monotone": true});
        params["search"] = json!({"range": [lens[0].0, lens[1].0], "resolution": 1024});
    }
    common::record(job, "passkey", params, result)
}

/// A search that ends above its range is right-censored exactly like a list whose longest
/// length is recalled; a bracketed search is an interval between its adjacent probes; a search
/// below its range is an upper bound at LO. The report's table shows the search brackets. A job
/// that never learned retrieval (at most half of the prompts at every length) bounds nothing.
#[test]
fn passkey_search_results_are_censored_like_lists() {
    let mut data = ReportData::default();
    let evals = [
        (
            8,
            passkey_eval(
                "j8",
                &[(1024, 1.0), (8192, 0.0), (4096, 1.0), (6144, 0.0), (5120, 1.0)],
                Some(("bracketed", Some(5120), Some(6144))),
            ),
        ),
        (16, passkey_eval("j16", &[(1024, 1.0), (8192, 1.0)], Some(("above_range", Some(8192), None)))),
        (32, passkey_eval("j32", &[(1024, 0.75), (8192, 0.0)], Some(("below_range", None, Some(1024))))),
        (64, passkey_eval("j64", &[(1024, 1.0), (8192, 1.0)], None)),
        (128, passkey_eval("j128", &[(1024, 0.5), (8192, 0.125)], None)),
    ];
    for (d_state, e) in evals {
        let mut j = common::job(d_state, 256);
        j.id = e.job_id.clone();
        data.jobs.push(j);
        data.evals.push(e);
    }
    let per_size = derive::state_recalls(&derive::job_recalls(&data));
    let c: Vec<_> = derive::recall_censored(&per_size).iter().map(|c| (c.lo, c.hi)).collect();
    assert_eq!(c, vec![(Some(5.12), Some(6.144)), (Some(8.192), None), (None, Some(1.024)), (Some(8.192), None)]);
    let cells: Vec<String> = per_size.iter().map(|r| r.describe()).collect();
    assert_eq!(
        cells,
        [
            "5120 (in [5120, 6144))",
            "≥ 8192 (recalled at the longest length tried)",
            "none (below 1024)",
            "8192",
            "not learned (no job above 50% at any length)"
        ]
    );
    let dir = tempfile::tempdir().expect("tempdir");
    write_report(&data, dir.path(), &ReportOptions::default()).expect("report");
    let readme = std::fs::read_to_string(dir.path().join("README.md")).expect("README.md");
    assert!(readme.contains("| 5120 (in [5120, 6144)) | j8 |"), "{readme}");
}

#[test]
fn laws_are_fitted_when_enough_state_sizes() {
    // 5 state sizes, each with one job at the law's T_forget (forgets) and one 2 tokens below
    // it (collapses), and a passkey eval recalling at the law's T_recall and not 2 tokens
    // later: every threshold is an interval 2 tokens wide.
    let mut data = ReportData::default();
    for k in 1..=5i64 {
        let s = k * 1_000_000;
        let tf = ((5.172 * k as f64 - 4.469) * 1000.0).round() as i64;
        let tr = ((0.5 * (1.8f64.powf(k as f64) - 1.0) + 0.3) * 1000.0).round() as i64;
        for (len, collapsed) in [(tf - 2, true), (tf, false)] {
            let mut j = common::job(8, len);
            j.id = format!("s{k}-l{len}");
            j.state_size = s;
            data.evals.push(common::eval(&j.id, common::loss_result(len.max(256), collapsed, "none", "corpus", 4.0)));
            data.evals.push(common::record(&j.id, "passkey", json!({"mitigation": "none"}), json!({"cells": [{"len": tr, "depth": 0.5, "accuracy": 1.0}, {"len": tr + 2, "depth": 0.5, "accuracy": 0.0}], "t_recall": tr})));
            data.jobs.push(j);
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = ReportOptions { log_scale: true, title: Some("Fitted <laws>".into()) };
    let s = write_report(&data, dir.path(), &opts).expect("report");
    let ff = s.forget_fit.as_ref().expect("T_forget fitted");
    assert!((ff.param("a") - 5.172).abs() < 0.01 && (ff.param("b") + 4.469).abs() < 0.01, "{ff:?}");
    let rf = s.recall_fit.as_ref().expect("T_recall fitted");
    assert!((rf.param("a") - 1.8).abs() < 0.01, "{rf:?}");
    let fits: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("fits.json")).expect("fits.json")).expect("json");
    assert_eq!(fits["t_forget"]["n"], json!(5));
    assert_eq!(fits["t_recall"]["ci"]["a"].as_array().map(Vec::len), Some(2));
    let html = std::fs::read_to_string(dir.path().join("index.html")).expect("html");
    assert!(html.contains("<title>Fitted &lt;laws&gt;</title>"));
    let svg = std::fs::read_to_string(dir.path().join("figures/t_recall.svg")).expect("svg");
    assert_eq!(count_series(&svg).lines, 1);
    assert_eq!(count_series(&svg).points, 5);
    assert_eq!(fits["t_forget"]["points"]["interval"], json!(5));
    let csv = dir.path().join("t_forget_points.csv");
    let cols = stuffed_reports::csv::read_columns_opt(&csv, &["S_M", "t_forget_lo_K", "t_forget_hi_K"]).expect("csv");
    let pts: Vec<stuffed_reports::Censored> =
        (0..cols[0].len()).map(|i| stuffed_reports::Censored { x: cols[0][i].unwrap(), lo: cols[1][i], hi: cols[2][i] }).collect();
    let refit = stuffed_reports::fit_censored(stuffed_reports::FitModel::Linear, &pts, 0, 0).expect("refit");
    assert!((refit.param("a") - ff.param("a")).abs() < 1e-6);
}

/// The fixture with every loss eval replaced by one without collapse.
fn fixture_without_collapse() -> ReportData {
    let mut data = common::fixture();
    for e in data.evals.iter_mut().filter(|e| e.kind() == "loss") {
        let len = e.loss().expect("loss").params.train_len.unwrap_or(256);
        let source = e.source().to_string();
        let mitigation = e.mitigation().to_string();
        e.result = serde_json::from_value(common::loss_result(len, false, &mitigation, &source, 0.0)).expect("loss");
    }
    data
}

#[test]
fn summary_states_plainly_when_nothing_collapsed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = write_report(&fixture_without_collapse(), dir.path(), &ReportOptions::default()).expect("report");
    assert!(s.forget.iter().all(|r| r.is_upper_bound()), "{:?}", s.forget);
    let readme = std::fs::read_to_string(dir.path().join("README.md")).expect("readme");
    let html = std::fs::read_to_string(dir.path().join("index.html")).expect("html");
    for text in [&readme, &html] {
        assert!(
            text.contains(
                "No decisive state collapse at any state size and training length: none of \
                 the 3 state sizes (S = 2048, 4096 and 8192) collapsed at any of the training \
                 lengths with a decisive verdict (256 and 1024), with the loss evaluated up to \
                 position 8192."
            ),
            "{text}"
        );
        assert!(text.contains("at or below 256 tokens, the shortest training length tried"));
    }
    assert!(
        readme.contains(
            "## Summary\n\n- Of 7 loss verdicts, 0 collapsed, 7 showed no collapse and 0 were inconclusive.\n- No decisive state collapse"
        ),
        "{readme}"
    );
    assert!(html.contains("<h2>Summary</h2>\n<ul>\n<li>Of 7 loss verdicts"));
    // the law sentence is not repeated when the collapse sentence explains the missing fit
    assert!(!readme.contains("The T_forget law was not fitted"));
}

/// Issue 24 item 3: a report without collapse says so at the top, before the summary, and
/// points to the committed campaign results; one with collapse does not.
#[test]
fn no_collapse_is_stated_at_the_top_with_the_campaign_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_report(&fixture_without_collapse(), dir.path(), &ReportOptions::default()).expect("report");
    let readme = std::fs::read_to_string(dir.path().join("README.md")).expect("readme");
    let html = std::fs::read_to_string(dir.path().join("index.html")).expect("html");
    let notice = "No state collapse in these results: none of the 7 loss evaluations collapsed (7 showed no collapse, 0 inconclusive)";
    for (text, summary) in [(&readme, "## Summary"), (&html, "<h2>Summary</h2>")] {
        let at = text.find(notice).unwrap_or_else(|| panic!("no notice in {text}"));
        assert!(at < text.find(summary).expect("summary"), "the notice comes first");
        assert!(text.contains("results/h200-campaign/") && text.contains("REPRODUCTION.md"));
    }
    assert!(readme.contains(&format!("> **{notice}")));
    assert!(html.contains(&format!("<p class=\"notice\"><strong>{notice}")));

    assert!(!readme.contains("No passkey retrieved"), "passkeys were retrieved: {readme}");

    let dir = tempfile::tempdir().expect("tempdir");
    write_report(&common::fixture(), dir.path(), &ReportOptions::default()).expect("report");
    let readme = std::fs::read_to_string(dir.path().join("README.md")).expect("readme");
    assert!(!readme.contains("No state collapse in these results"), "{readme}");

    // every passkey cell 0: said at the top too
    let mut data = fixture_without_collapse();
    for e in data.evals.iter_mut().filter(|e| e.kind() == "passkey") {
        let mut v = serde_json::to_value(&e.result).expect("json");
        for c in v["cells"].as_array_mut().expect("cells") {
            c["accuracy"] = json!(0.0);
        }
        for c in v["accuracy_by_len"].as_array_mut().expect("by len") {
            c["accuracy"] = json!(0.0);
        }
        v["t_recall"] = json!(null);
        e.result = serde_json::from_value(v).expect("passkey");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    write_report(&data, dir.path(), &ReportOptions::default()).expect("report");
    let readme = std::fs::read_to_string(dir.path().join("README.md")).expect("readme");
    let at = readme.find("> **No passkey retrieved: accuracy is 0 in all").unwrap_or_else(|| panic!("{readme}"));
    assert!(at < readme.find("## Summary").expect("summary"));
}

#[test]
fn unusable_exponential_fit_is_explained_in_plain_words() {
    // T_recall of the H200 repro-recall sweep: not exponential in S at all
    let mut data = ReportData::default();
    for (k, (s, t)) in [(4096, 512), (8192, 1024), (32768, 256), (65536, 2048)].into_iter().enumerate() {
        let mut j = common::job(8, 256);
        j.id = format!("r{k}");
        j.state_size = s;
        data.evals.push(common::record(
            &j.id,
            "passkey",
            json!({"mitigation": "none"}),
            json!({"cells": [{"len": t, "depth": 0.5, "accuracy": 1.0}, {"len": t + 1, "depth": 0.5, "accuracy": 0.0}], "t_recall": t}),
        ));
        data.jobs.push(j);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let s = write_report(&data, dir.path(), &ReportOptions::default()).expect("report");
    let why = s.skipped.iter().find(|(f, _)| f == "T_recall fit").map(|(_, why)| why.clone()).expect("T_recall fit skipped");
    assert!(
        why.starts_with(
            "the 4 points (state sizes with a T_recall interval or bound) do not follow an \
             exponential law"
        ) && !why.contains("unusable"),
        "{why}"
    );
    let readme = std::fs::read_to_string(dir.path().join("README.md")).expect("readme");
    assert!(readme.contains("The T_recall law was not fitted: the 4 points"));
    assert!(readme.contains("T_recall does not increase steadily with state size"));
}

#[test]
fn several_sweeps_get_per_sweep_figures_and_unique_labels() {
    // a second sweep "more" with two jobs that share labels with jobs of "grid"
    let mut data = common::fixture();
    for len in common::LENGTHS {
        let mut j = common::job(8, len);
        j.id = format!("more-{len}");
        j.sweep = "more".into();
        let twin = common::job_id(8, len);
        let fixture = common::fixture();
        for e in fixture.evals.into_iter().filter(|e| e.job_id == twin) {
            data.evals.push(EvalRecord { job_id: j.id.clone(), ..e });
        }
        for m in fixture.metrics.into_iter().filter(|m| m.job_id == twin) {
            data.metrics.push(stuffed_reports::MetricRecord { job_id: j.id.clone(), ..m });
        }
        data.jobs.push(j);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let s = write_report(&data, dir.path(), &ReportOptions::default()).expect("report");
    let tree = common::read_tree(dir.path());
    for f in [
        "figures/loss_grid_S2048_corpus.svg",
        "figures/loss_more_S2048_corpus.svg",
        "figures/training_grid_S2048.svg",
        "figures/training_more_S2048.svg",
        "figures/passkey_accuracy_grid.svg",
        "figures/passkey_accuracy_more.svg",
        "figures/passkey_more-256.svg",
    ] {
        assert!(tree.contains_key(f), "{f} missing; have {:?}", tree.keys());
    }
    assert!(!tree.contains_key("figures/loss_S2048_corpus.svg"));
    let svg = String::from_utf8(tree["figures/loss_more_S2048_corpus.svg"].clone()).expect("utf8");
    assert_eq!(count_series(&svg).lines, 2);
    assert!(svg.contains("Loss vs position, more, S = 2048 (corpus)"));
    let html = String::from_utf8(tree["index.html"].clone()).expect("utf8");
    assert!(html.contains("Passkey, more: d_state=8 seq_len=256 (T_recall = 256)"));
    assert!(html.contains("Passkey, grid: d_state=8 seq_len=256 (T_recall = 256)"));
    // no file is written twice
    let mut files: Vec<&str> = s.files.iter().filter_map(|p| p.to_str()).collect();
    files.sort_unstable();
    files.dedup();
    assert_eq!(files.len(), s.files.len());
}
