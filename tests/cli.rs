//! End-to-end tests of the `stuffed` binary on the CPU: doctor, the shipped tiny example,
//! model info, passkey samples, and clear errors for bad input.
mod common;

use common::{ok, repo, stuffed, text};
use serde_json::json;

#[test]
fn doctor_reports_cpu_only_without_failing() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(dir.path(), &["doctor", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["cuda_available"], false);
    assert_eq!(v["gpu_count"], 0);
    assert_eq!(v["devices"][0]["tensor_op"], "ok");
    assert!(v["stuffed"].as_str().unwrap().contains("commit"));
}

#[test]
fn version_names_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let v = ok(dir.path(), &["--version"]);
    assert!(v.contains("commit") && v.contains("libtorch 2.11.0"), "{v}");
}

#[test]
fn tiny_cpu_example_loss_falls_by_a_fifth() {
    let root = repo();
    let corpus = root.join("results/corpora/default/manifest.json");
    assert!(corpus.exists(), "the default corpus is missing: run `make corpus` (make test does)");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    ok(&root, &["train", "--config", "sweeps/examples/tiny-cpu.yaml", "--out", out.to_str().unwrap()]);
    let events = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    let losses: Vec<f64> = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["loss"].as_f64().unwrap())
        .collect();
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(last <= 0.8 * first, "loss {first} -> {last}: not a 20% fall");
    assert!(events.contains("\"kind\":\"eval\"") && events.contains("\"status\":\"completed\""));

    // A second run into the same directory must be explicit.
    let o = stuffed(&root, &["train", "--config", "sweeps/examples/tiny-cpu.yaml", "--out", out.to_str().unwrap()]);
    assert!(!o.status.success() && text(&o).contains("--resume"), "{}", text(&o));
}

#[test]
fn model_info_of_the_130m_preset() {
    let dir = tempfile::tempdir().unwrap();
    let v: serde_json::Value = serde_json::from_str(&ok(dir.path(), &["model", "info", "--preset", "130m", "--format", "json"])).unwrap();
    assert_eq!(v["state_size"], 4_718_592);
    assert_eq!(v["padded_vocab"], 50288);
}

#[test]
fn passkey_sample_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    for tok in ["bytes", "gpt2"] {
        let v: serde_json::Value = serde_json::from_str(&ok(
            dir.path(),
            &[
                "passkey",
                "sample",
                "--tokenizer",
                tok,
                "--len",
                "500",
                "--depth",
                "0.3",
                "--seed",
                "7",
                "--template",
                "exact",
                "--format",
                "json",
            ],
        ))
        .unwrap();
        assert_eq!(v["len"], 500);
        let prompt = v["prompt"].as_str().unwrap();
        assert!(prompt.contains(&format!("The passkey is {}.", v["passkey"].as_str().unwrap())));
        assert!(prompt.ends_with("What is the passkey? The passkey is"));
    }
    // The default is the authors' generator: at most --len tokens, their question.
    for tok in ["bytes", "gpt2"] {
        let v: serde_json::Value = serde_json::from_str(&ok(
            dir.path(),
            &["passkey", "sample", "--tokenizer", tok, "--len", "500", "--depth", "0.3", "--seed", "7", "--format", "json"],
        ))
        .unwrap();
        assert!(v["len"].as_u64().unwrap() <= 500, "{v}");
        assert_eq!(v["template"], "authors");
        let prompt = v["prompt"].as_str().unwrap();
        assert!(prompt.starts_with("There is an important info hidden inside a lot of irrelevant text. Find it and memorize it.\n\n"));
        assert!(prompt.ends_with(".\n\nWhat is the pass key? The passkey is"));
    }
    let o = stuffed(dir.path(), &["passkey", "sample", "--len", "20"]);
    assert!(!o.status.success() && text(&o).contains("shorter than the template"), "{}", text(&o));
}

/// `eval passkey --search`: an untrained tiny model recalls nothing, so the search stops after
/// LO and HI with T_recall below the range; both probes are stored, in order, and are the
/// result's lengths. Bad ranges are refused on the command line and in a job config.
#[test]
fn passkey_search_stores_its_probes_and_bad_ranges_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = ["eval", "passkey", "--preset", "tiny", "--depths", "2", "--n", "2", "--device", "cpu"];
    let json = ok(d, &[&base[..], &["--search", "256,1024", "--resolution", "128", "--format", "json"]].concat());
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let s = &v["search"];
    assert_eq!((s["outcome"].as_str(), &s["last_pass"], &s["first_fail"]), (Some("below_range"), &serde_json::Value::Null, &json!(256)));
    let probes: Vec<i64> = s["probes"].as_array().unwrap().iter().map(|p| p["len"].as_i64().unwrap()).collect();
    assert_eq!(probes, [256, 1024]);
    assert_eq!((&v["params"]["lengths"], &v["params"]["search"]), (&json!([256, 1024]), &json!({"range": [256, 1024], "resolution": 128})));
    assert_eq!((v["cells"].as_array().unwrap().len(), &v["t_recall"]), (4, &serde_json::Value::Null));
    for (args, why) in [
        (&["--search", "1024,256", "--resolution", "128"][..], "--search: needs [LO, HI] with 0 < LO < HI, got [1024, 256]"),
        (&["--search", "256,512,1024", "--resolution", "128"][..], "--search takes two lengths LO,HI, got 3"),
        (&["--search", "256,1024", "--resolution", "0"][..], "--resolution: must be a positive integer, got 0"),
        (&["--search", "256,1024"][..], "--resolution"),
        (&["--search", "256,1024", "--resolution", "8", "--lengths", "256"][..], "cannot be used with"),
    ] {
        let o = stuffed(d, &[&base[..], args].concat());
        assert!(!o.status.success() && text(&o).contains(why), "{args:?}: {}", text(&o));
    }
    let corpus = common::fixture_corpus(d);
    let job = |range: &str| {
        format!(
            "model: {{d_model: 32, n_layer: 1, d_state: 4, headdim: 16}}\ndata: {{corpus: {}}}\ntrain: {{seq_len: 16, batch_size: 2, steps: 1, lr: 0.01, device: cpu}}\nevals:\n  - kind: passkey\n    lengths: {{search: {range}, resolution: 256}}\n    depths: 1\n    n: 2\n",
            corpus.display()
        )
    };
    std::fs::write(d.join("bad.yaml"), job("[4096, 1024]")).unwrap();
    let o = stuffed(d, &["train", "--config", "bad.yaml"]);
    let t = text(&o);
    assert!(!o.status.success() && t.contains("bad.yaml:6:5") && t.contains("evals[0].lengths.search") && t.contains("0 < LO < HI"), "{t}");
    // A job's evaluation (run_eval) stores the same search in its eval event.
    std::fs::write(d.join("pk.yaml"), job("[256, 1024]")).unwrap();
    ok(d, &["train", "--config", "pk.yaml", "--out", "run"]);
    let events = std::fs::read_to_string(d.join("run/events.jsonl")).unwrap();
    let eval =
        events.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).find(|v| v["kind"] == "eval").expect("an eval event");
    let r = &eval["result"];
    assert_eq!((&r["params"]["lengths"], &r["params"]["search"]["range"]), (&json!([256, 1024]), &json!([256, 1024])));
    assert_eq!(r["search"]["probes"].as_array().map(Vec::len), Some(2), "{r}");
}

#[test]
fn bad_job_configs_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    };
    let cases = [
        (
            "typo.yaml",
            "model: {preset: tiny}\ntrain:\n  seq_len: 64\n  batch_size: 2\n  stesp: 3\n  lr: 0.1\n",
            "typo.yaml:5:3",
            "did you mean `steps`",
        ),
        (
            "type.yaml",
            "model: {preset: tiny}\ntrain:\n  seq_len: long\n  batch_size: 2\n  steps: 3\n  lr: 0.1\n",
            "type.yaml:3",
            "train.seq_len",
        ),
        (
            "zero.yaml",
            "model: {preset: tiny}\ntrain:\n  seq_len: 0\n  batch_size: 2\n  steps: 3\n  lr: 0.1\n",
            "zero.yaml:3:3",
            "must be a positive integer",
        ),
        (
            "model.yaml",
            "model: {preset: tiny, headdim: 48}\ntrain: {seq_len: 8, batch_size: 2, steps: 3, lr: 0.1}\n",
            "model.yaml:1:1",
            "headdim",
        ),
        ("syntax.yaml", "model: {preset: tiny\ntrain: [\n", "syntax.yaml:", "did not find expected"),
        ("empty.yaml", "", "empty.yaml", "empty"),
    ];
    for (file, body, place, what) in cases {
        let path = write(file, body);
        let o = stuffed(dir.path(), &["train", "--config", &path]);
        let t = text(&o);
        assert!(!o.status.success(), "{file} should fail");
        assert!(t.contains(place) && t.contains(what), "{file}: {t}");
    }
    let o = stuffed(dir.path(), &["train", "--config", "missing.yaml"]);
    assert!(!o.status.success() && text(&o).contains("missing.yaml"), "{}", text(&o));
}

#[test]
fn missing_corpus_and_tokenizer_mismatch_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = common::fixture_corpus(dir.path());
    let cfg = |tok: &str, corpus: &str| {
        format!("model: {{d_model: 32, n_layer: 1, d_state: 4, headdim: 16}}\ntokenizer: {tok}\ndata: {{corpus: {corpus}}}\ntrain: {{seq_len: 16, batch_size: 2, steps: 2, lr: 0.01, device: cpu}}\n")
    };
    std::fs::write(dir.path().join("a.yaml"), cfg("bytes", "/nonexistent/corpus")).unwrap();
    let o = stuffed(dir.path(), &["train", "--config", "a.yaml", "--out", "ra"]);
    assert!(!o.status.success() && text(&o).contains("/nonexistent/corpus"), "{}", text(&o));
    std::fs::write(dir.path().join("b.yaml"), cfg("gpt2", corpus.to_str().unwrap())).unwrap();
    let o = stuffed(dir.path(), &["train", "--config", "b.yaml", "--out", "rb"]);
    assert!(!o.status.success() && text(&o).contains("tokenizer mismatch"), "{}", text(&o));
}

#[test]
fn bench_suite_writes_a_record_and_names_unknown_cases() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("bench/record.json");
    let args = ["bench", "suite", "--only", "train-tiny", "--batch", "1", "--len", "128", "--steps", "1", "--warmup", "0"];
    let more = ["--device", "cpu", "--compare", "tensor,fused", "--out", rec.to_str().unwrap()];
    let out = ok(dir.path(), &[&args[..], &more[..]].concat());
    assert!(out.contains("== train-tiny (tiny 1 x 128)"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&rec).unwrap()).unwrap();
    assert!(v["stuffed"]["git_commit"].is_string() && v["date"].is_string(), "{v}");
    assert_eq!(v["device"], "cpu");
    assert!(v["device_copy_gb_s"].is_null(), "no copy bandwidth off CUDA: {v}");
    let case = &v["cases"][0];
    assert_eq!(case["case"], "train-tiny");
    assert_eq!((case["batch"].as_i64(), case["len"].as_i64()), (Some(1), Some(128)));
    let ssd: Vec<&str> = case["runs"].as_array().unwrap().iter().map(|r| r["ssd"].as_str().unwrap()).collect();
    assert_eq!(ssd, ["tensor", "fused"]);
    assert!(case["fused_over_tensor"].as_f64().unwrap() > 0.0);
    assert_eq!(case["reference"]["tokens_per_s"], 4_570_852.0);
    assert!(case["anchor"].is_null() && case["best_over_anchor"].is_null(), "no ratio without a same-run anchor: {case}");

    let o = stuffed(dir.path(), &["bench", "suite", "--only", "train-tiny,train-huge", "--device", "cpu"]);
    let msg = text(&o);
    assert!(!o.status.success() && msg.contains("unknown case 'train-huge'") && msg.contains("eval-130m"), "{msg}");

    // The same-run anchor: needs the mamba_ssm source and a CUDA device, said before any run.
    let o = stuffed(dir.path(), &["bench", "suite", "--only", "train-study-128", "--anchor", "--device", "cpu"]);
    assert!(!o.status.success() && text(&o).contains("--anchor-src"), "{}", text(&o));
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("mamba_ssm")).unwrap();
    std::fs::write(src.join("mamba_ssm/__init__.py"), "__version__ = '0'\n").unwrap();
    let o = stuffed(dir.path(), &["bench", "suite", "--only", "train-study-128", "--anchor", "--anchor-src", "src", "--device", "cpu"]);
    assert!(!o.status.success() && text(&o).contains("mamba_ssm runs on a CUDA device"), "{}", text(&o));
    // Packed jobs: separate processes timing one common window (here two tiny CPU jobs).
    let rec = dir.path().join("pack.json");
    let args = ["bench", "pack", "--case", "train-tiny", "--batch", "1", "--len", "64", "--jobs", "1,2", "--steps", "2", "--warmup", "0"];
    ok(dir.path(), &[&args[..], &["--device", "cpu", "--out", rec.to_str().unwrap()]].concat());
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&rec).unwrap()).unwrap();
    let points = v["points"].as_array().unwrap();
    assert_eq!(points.iter().map(|p| p["jobs"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2], "{v}");
    assert!(points.iter().all(|p| p["aggregate_tokens_per_s"].as_f64().unwrap() > 0.0), "{v}");
    assert_eq!(points[1]["per_job_tokens_per_s"].as_array().unwrap().len(), 2, "{v}");
    assert!(points[1]["over_one"].as_f64().unwrap() > 0.0, "{v}");
    // Packing measures training cases only.
    let o = stuffed(dir.path(), &["bench", "pack", "--case", "eval-130m"]);
    assert!(!o.status.success() && text(&o).contains("not a training case"), "{}", text(&o));
}

/// `bench lossmatch`: two event logs compared at their shared steps; exit 1 beyond the
/// tolerance, with the window named; clear errors for a log with a malformed line.
#[test]
fn bench_lossmatch_compares_two_event_logs() {
    let dir = tempfile::tempdir().unwrap();
    let log = |name: &str, ssd: &str, losses: &[f64], tail: &str| {
        let run = dir.path().join(name);
        std::fs::create_dir_all(&run).unwrap();
        let mut text = format!(
            "{}\n",
            json!({"seq": 1, "kind": "start", "total_steps": 40, "batch": 2, "seq_len": 8, "params": 1, "state_size": 1,
                   "device": "cpu", "precision": "Float", "ssd": ssd, "time": "2026-12-03T00:00:00Z", "format": 2})
        );
        for (i, l) in losses.iter().enumerate() {
            let e = json!({"seq": i + 2, "kind": "train", "step": i + 1, "tokens": 16 * (i + 1), "loss": l, "lr": 1e-3,
                           "grad_norm": 1.0, "tokens_per_s": 1.0, "mem_gb": 0.0, "time": "2026-12-03T00:00:00Z", "format": 2});
            text.push_str(&format!("{e}\n"));
        }
        text.push_str(tail);
        std::fs::write(run.join("events.jsonl"), text).unwrap();
        run
    };
    let reference: Vec<f64> = (0..40).map(|i| 3.0 - 0.05 * i as f64).collect();
    let close: Vec<f64> = reference.iter().map(|l| l * 1.002).collect();
    // A torn last line (a run still writing) is left out.
    let a = log("a", "fused+graph", &close, "{\"seq\": 99, \"kind\": \"tr");
    let b = log("b", "tensor", &reference, "");
    let rec = dir.path().join("lm.json");
    let out = ok(dir.path(), &["bench", "lossmatch", a.to_str().unwrap(), b.to_str().unwrap(), "--out", rec.to_str().unwrap()]);
    assert!(out.contains("n = 40 shared steps") && out.contains("21-40"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&rec).unwrap()).unwrap();
    assert_eq!((v["matched"].as_bool(), v["run"]["ssd"].as_str()), (Some(true), Some("fused+graph")), "{v}");
    assert_eq!(v["result"]["windows"].as_array().unwrap().len(), 2, "{v}");

    let far: Vec<f64> = reference.iter().enumerate().map(|(i, l)| if i >= 30 { l * 1.05 } else { *l }).collect();
    let c = log("c", "fused", &far, "");
    let o = stuffed(dir.path(), &["bench", "lossmatch", c.to_str().unwrap(), b.to_str().unwrap(), "--window", "10"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("steps 31-40 differ by 5.000%"), "{}", text(&o));

    let bad = log("d", "fused", &close, "not json\n");
    let o = stuffed(dir.path(), &["bench", "lossmatch", bad.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(!o.status.success() && text(&o).contains("events.jsonl:42: not an event"), "{}", text(&o));
}

#[test]
fn corpus_clean_build_then_pack_and_unpack_refusing_a_missing_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut x = 7u64;
    let mut doc = |n: usize| -> String {
        (0..n)
            .map(|i| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                format!("{}{}", ["river", "stone", "light", "winter", "house"][(x >> 61) as usize % 5], (x >> 40) % 10)
                    + if i % 10 == 9 { ".\n" } else { " " }
            })
            .collect()
    };
    for i in 0..20 {
        std::fs::write(src.join(format!("{i}.txt")), doc(400)).unwrap();
    }
    std::fs::copy(src.join("3.txt"), src.join("copy-of-3.txt")).unwrap();
    let lines: String = (0..5).map(|_| format!("{}\n", serde_json::json!({ "text": doc(300) }))).collect();
    std::fs::write(src.join("records.jsonl"), lines).unwrap();
    let out = dir.path().join("c");
    let (s, o) = (src.to_str().unwrap(), out.to_str().unwrap());
    let summary =
        ok(dir.path(), &["corpus", "build", "--clean", "--input", s, "--out", o, "--val-long-docs", "2", "--val-long-tokens", "1000"]);
    assert!(summary.contains("duplicates: 1 exact"), "{summary}");
    assert!(summary.contains("train: 23 documents") || summary.contains("val:"), "{summary}");
    let info = ok(dir.path(), &["corpus", "info", o]);
    assert!(info.contains("(2 of at least 1000 tokens)"), "{info}");

    let prefix = dir.path().join("packed/c");
    let p = prefix.to_str().unwrap();
    let packed = ok(dir.path(), &["corpus", "pack", o, "--out", p, "--chunk-size", "64KiB"]);
    assert!(packed.contains("per 100M tokens"), "{packed}");
    std::fs::rename(dir.path().join("packed/c.0000.zst"), dir.path().join("aside.zst")).unwrap();
    let e = stuffed(dir.path(), &["corpus", "unpack", p, "--out", "u"]);
    assert!(!e.status.success() && text(&e).contains("c.0000.zst"), "{}", text(&e));
    std::fs::rename(dir.path().join("aside.zst"), dir.path().join("packed/c.0000.zst")).unwrap();
    ok(dir.path(), &["corpus", "unpack", p, "--out", "u"]);
    assert_eq!(std::fs::read(out.join("tokens.bin")).unwrap(), std::fs::read(dir.path().join("u/tokens.bin")).unwrap());
}

/// The committed reproduction report regenerates byte for byte from its committed export (an
/// export written before the protocol crate: old dumps keep loading).
#[test]
fn committed_reproduction_report_regenerates_from_its_export() {
    let title = "Stuffed Mamba at small scale on one H200";
    regenerates(&["results/h200-repro/export.json.gz"], &["repro-forget", "repro-recall"], title, "results/h200-repro/report");
}

#[test]
fn committed_campaign_reports_regenerate_from_their_exports() {
    let lease3 = ["results/h200-campaign/lease3/collapse-screen.dump.json.gz", "results/h200-campaign/lease3/collapse-small.dump.json.gz"];
    let title = "Campaign lease 3: collapse screen, byte tokens, Java sources";
    regenerates(&lease3, &["camp-collapse", "camp-collapse-small"], title, "results/h200-campaign/lease3/report");
    let title = "Campaign lease 4: collapse screen, GPT-2 BPE, Java sources";
    regenerates(
        &["results/h200-campaign/lease4/collapse-bpe.dump.json.gz"],
        &["camp-collapse-bpe"],
        title,
        "results/h200-campaign/lease4/report",
    );
    let lease5 = [
        "results/h200-campaign/lease2/recall.dump.json.gz",
        "results/h200-campaign/lease5/recall-clip.dump.json.gz",
        "results/h200-campaign/lease5/recall-clip-more.dump.json.gz",
    ];
    let title = "Campaign leases 2 and 5: T_recall against state size";
    regenerates(&lease5, &["camp-recall", "camp-recall-clip", "camp-recall-clip-more"], title, "results/h200-campaign/lease5/report");
    // The two larger dumps are committed in parts of at most 1900 KiB (`results split`).
    let lease6 =
        ["forget-slowa.dump.json.gz.parts.json", "forget-slowa-bracket.dump.json.gz.parts.json", "forget-slowa-mitigate.dump.json.gz"]
            .map(|n| format!("results/h200-campaign/lease6/{n}"));
    let title = "Campaign lease 6: state collapse and T_forget with A/100 initialisation";
    regenerates(
        &lease6.each_ref().map(String::as_str),
        &["camp-forget-slowa", "camp-forget-slowa-bracket", "camp-forget-slowa-mitigate"],
        title,
        "results/h200-campaign/lease6/report",
    );
}

/// Imports `exports` into a fresh database, writes the report of `sweeps` and checks it is the
/// committed one in `committed`, byte for byte.
fn regenerates(exports: &[&str], sweeps: &[&str], title: &str, committed: &str) {
    let root = repo();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("results.db");
    let (db, out) = (db.to_str().unwrap(), dir.path().join("report"));
    for e in exports {
        ok(&root, &["results", "import", "--db", db, e]);
    }
    let mut args = vec!["report", "--db", db, "--title", title, "--out", out.to_str().unwrap()];
    for s in sweeps {
        args.extend(["--sweep", s]);
    }
    ok(&root, &args);
    let committed = root.join(committed);
    let files = |d: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = walk(d).into_iter().map(|p| p.strip_prefix(d).unwrap().display().to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(files(&out), files(&committed), "the regenerated report has other files than {}", committed.display());
    for f in files(&committed) {
        assert!(
            std::fs::read(out.join(&f)).unwrap() == std::fs::read(committed.join(&f)).unwrap(),
            "{f} differs from the committed report in {}",
            committed.display()
        );
    }
}

fn walk(d: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn read_only_commands_refuse_a_missing_database_and_create_none() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let none = d.join("none.db");
    let db = none.to_str().unwrap();
    let out = d.join("report");
    let commands: [&[&str]; 8] = [
        &["results", "list", "--db", db],
        &["results", "show", "--db", db, "abc"],
        &["results", "export", "--db", db],
        &["report", "--db", db, "--out", out.to_str().unwrap()],
        &["sweep", "status", "--db", db],
        &["sweep", "cancel", "--db", db, "s"],
        &["sweep", "sync", "--db", db, "s"],
        &["serve", "--db", db, "--bind", "127.0.0.1:0"],
    ];
    for args in commands {
        let o = stuffed(d, args);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {t}");
        assert!(t.contains(&format!("no results database at {db} (run a sweep first, or pass --db)")), "{args:?}: {t}");
        assert!(!none.exists(), "{args:?} created {db}");
    }
    // The default path, from a directory without one: nothing appears either.
    let o = stuffed(d, &["results", "list"]);
    assert!(!o.status.success() && text(&o).contains("no results database at results/stuffed.db"), "{}", text(&o));
    assert!(!d.join("results").exists());
}

#[test]
fn a_mistyped_where_key_is_an_error_with_a_did_you_mean() {
    let root = repo();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let db = db.to_str().unwrap();
    ok(&root, &["results", "import", "--db", db, "results/h200-repro/export.json.gz"]);
    let o = stuffed(&root, &["results", "list", "--db", db, "--where", "model.d_stat=4"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("`model` has no field 'd_stat' (did you mean 'model.d_state'?)"), "{t}");
    let rows = ok(&root, &["results", "list", "--db", db, "--where", "model.d_state=16", "--format", "json"]);
    assert!(!serde_json::from_str::<Vec<serde_json::Value>>(&rows).unwrap().is_empty());
}

#[test]
fn results_show_and_list_print_short_numbers_and_none_for_no_recall() {
    let root = repo();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let db = db.to_str().unwrap();
    ok(&root, &["results", "import", "--db", db, "results/h200-repro/export.json.gz"]);
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&ok(&root, &["results", "list", "--db", db, "--where", "sweep=repro-pilot", "--format", "json"])).unwrap();
    assert!(rows.iter().all(|r| r["t_recall"].is_null()), "JSON keeps null");
    let table = ok(&root, &["results", "list", "--db", db, "--where", "sweep=repro-pilot"]);
    assert!(table.lines().skip(1).all(|l| l.split_whitespace().rev().nth(1) == Some("none")), "{table}");
    let show = ok(&root, &["results", "show", "--db", db, rows[0]["id"].as_str().unwrap()]);
    assert!(show.contains("\nlatest metrics:\n") && show.contains("\nevaluations:\n") && show.contains("passkey.t_recall=none"), "{show}");
    // No number in the text has more than 5 significant digits after its point.
    let long = show.split(|c: char| !(c.is_ascii_digit() || c == '.')).find(|w| w.split_once('.').is_some_and(|(_, f)| f.len() > 8));
    assert!(long.is_none(), "{long:?} in {show}");
}

/// `scripts/check-demo.sh` (the last step of `make demo`): passes on a report with a T_recall
/// interval or with the report's own "no passkey retrieved" notice, fails on a report whose
/// summary does not match its T_recall points and on a missing report.
#[test]
fn check_demo_script_reads_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let check = |csv_rows: &str, readme: &str| {
        std::fs::write(dir.path().join("t_recall_points.csv"), format!("state_size,S_M,t_recall_lo_K,t_recall_hi_K,kind\n{csv_rows}"))
            .unwrap();
        std::fs::write(dir.path().join("README.md"), readme).unwrap();
        let out = std::process::Command::new("bash").arg(repo().join("scripts/check-demo.sh")).arg(dir.path()).output().unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (pass, said) = check("1024,0.001024,,0.256,upper_bound\n4096,0.004096,0.256,0.512,interval\n", "# report\n");
    assert!(pass && said.contains("learned and failing at longer prompts") && said.contains("[0.256K, 0.512K) at S = 4096"), "{said}");
    let (pass, said) = check("4096,0.004096,2.048,,lower_bound\n", "# report\n");
    assert!(pass && said.contains("at every length tried"), "{said}");
    let notice = "> **No passkey retrieved: accuracy is 0 in all 24 cells**\n";
    let (pass, said) = check("1024,0.001024,,0.256,upper_bound\n", notice);
    assert!(pass && said.contains("no model learned"), "{said}");
    let (pass, said) = check("1024,0.001024,,0.256,upper_bound\n", "# report\n");
    assert!(!pass && said.contains("does not say"), "{said}");
    std::fs::remove_file(dir.path().join("README.md")).unwrap();
    let out = std::process::Command::new("bash").arg(repo().join("scripts/check-demo.sh")).arg(dir.path()).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("is missing"));
}
