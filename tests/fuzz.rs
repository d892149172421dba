//! Property tests (a fuzzing suite runnable in CI) over what users type: sweep YAML parsing and
//! expansion, derived-value expressions, and `--where` filters; and over what crosses a trust
//! boundary (docs/security.md): imported dumps, the Slurm script built from sweep values, and
//! the dashboard's HTTP routes. Nothing may panic; every input is either accepted or refused
//! with an error; no path escapes the runs directory and no value adds a script line. `PROPTEST_CASES=100000 cargo test --release
//! --test fuzz` runs it longer.
use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use stuffed::store::{Cond, Db};
use stuffed::sweep::{evaluate, expand, SweepSpec};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

const KEYS: &[&str] = &[
    "model.d_state",
    "model.d_model",
    "model.n_layer",
    "model.headdim",
    "model.ngroups",
    "model.chunk_size",
    "model.preset",
    "train.seq_len",
    "train.lr",
    "train.steps",
    "train.batch_size",
    "train.seed",
    "train.precision",
    "data.corpus",
    "data.mixture[0].weight",
    "evals[0].len",
    "evals[1].lengths",
    "tokenizer",
    "model.d_stat",
    "train",
    "x.y.z",
    "evals[99].len",
    "model..d_state",
    "train.seq_len[2]",
    "",
    "model.d_state.x",
];

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        (-5i64..5000).prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        "[a-z0-9_./:{}*+-]{0,12}".prop_map(|s| format!("\"{s}\"")),
        Just("null".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("true".to_string()),
    ]
}

fn expr() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        (0i64..10).prop_map(|v| v.to_string()),
        prop::sample::select(KEYS.to_vec()).prop_map(|k| format!("{{{k}}}")),
        Just("9223372036854775807".to_string()),
        Just("(0 - 1)".to_string()),
    ];
    prop::collection::vec((atom, prop::sample::select(vec![" + ", " - ", " * ", " / ", "(", ")", " ", "{", "}"])), 1..6)
        .prop_map(|v| v.into_iter().map(|(a, o)| format!("{a}{o}")).collect::<String>())
}

/// Sweep files built from valid and invalid pieces.
fn sweep_doc() -> impl Strategy<Value = String> {
    let grid = prop::collection::vec((prop::sample::select(KEYS.to_vec()), prop::collection::vec(scalar(), 0..4)), 0..4);
    let derived = prop::collection::vec((prop::sample::select(KEYS.to_vec()), expr()), 0..3);
    (grid, derived, prop::option::of(prop::collection::vec(0u64..5, 0..3)), any::<bool>()).prop_map(|(grid, derived, seeds, evals)| {
        let mut s = String::from(
            "name: fuzz\nbase:\n  model: {d_model: 16, n_layer: 1, d_state: 4, headdim: 8, chunk_size: 8}\n  train: {seq_len: 16, batch_size: 2, steps: 2, lr: 0.01}\n",
        );
        if !grid.is_empty() {
            s.push_str("grid:\n");
            for (k, vs) in grid {
                s.push_str(&format!("  {k:?}: [{}]\n", vs.join(", ")));
            }
        }
        if !derived.is_empty() {
            s.push_str("derived:\n");
            for (k, e) in derived {
                s.push_str(&format!("  {k:?}: {e:?}\n"));
            }
        }
        if let Some(seeds) = seeds {
            s.push_str(&format!("seeds: {seeds:?}\n"));
        }
        if evals {
            s.push_str("evals:\n  - {kind: loss, len: \"4 * {train.seq_len}\", bucket: 8}\n  - {kind: passkey, lengths: [256, \"{train.seq_len}\"]}\n");
        }
        s
    })
}

const VALID: &str = "name: v\ndescription: d\nbase:\n  model: {preset: tiny}\n  train: {seq_len: 64, batch_size: 2, steps: 3, lr: 0.01}\ngrid:\n  model.d_state: [8, 16]\n  train.seq_len: [32, 64]\nzip:\n  - {train.lr: [0.1, 0.2], train.seed: [1, 2]}\nderived:\n  train.batch_size: \"128 / {train.seq_len}\"\nresources: {gpus: 1, memory: 2GB, timeout: 1h}\nretries: 1\nbackend: {kind: slurm, partition: p}\n";

proptest! {
    #![proptest_config(config())]

    #[test]
    fn generated_sweeps_never_panic(doc in sweep_doc()) {
        if let Ok(loaded) = SweepSpec::parse(&doc, Path::new("fuzz.yaml")) {
            let _ = expand(&loaded, 64);
        }
    }

    #[test]
    fn mutated_sweeps_never_panic(edits in prop::collection::vec((0usize..VALID.len(), any::<u8>(), 0u8..3), 1..10)) {
        let mut bytes = VALID.as_bytes().to_vec();
        for (at, b, op) in edits {
            let at = at.min(bytes.len().saturating_sub(1));
            match op {
                0 => bytes[at] = b,
                1 => { bytes.remove(at); }
                _ => bytes.insert(at, b),
            }
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Ok(loaded) = SweepSpec::parse(&text, Path::new("fuzz.yaml")) {
            let _ = expand(&loaded, 64);
        }
    }

    #[test]
    fn expressions_never_panic(e in expr()) {
        let ctx = serde_json::json!({"train": {"seq_len": 64, "lr": 0.1, "seed": i64::MAX}, "model": {"d_state": -1}});
        let _ = evaluate(&e, &ctx);
    }

    #[test]
    fn filters_are_data(s in ".{0,40}") {
        if let Ok(c) = s.parse::<Cond>() {
            let (rt, db) = db();
            let rows = rt.block_on(db.jobs(&[c])).expect("a parsed filter always runs");
            prop_assert!(rows.len() <= 1);
        }
    }
}

/// An in-memory database with one job, shared by the filter cases.
fn db() -> &'static (tokio::runtime::Runtime, Db) {
    static DB: OnceLock<(tokio::runtime::Runtime, Db)> = OnceLock::new();
    DB.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let db = rt.block_on(async {
            let db = Db::open_memory().await.unwrap();
            db.upsert_sweep("s", "", "name: s", None, "local").await.unwrap();
            let config = serde_json::json!({"model": {"d_state": 8}, "train": {"seq_len": 64}});
            db.add_job(&stuffed::store::NewJob {
                id: "abc",
                sweep: "s",
                label: "d_state=8",
                varied: &serde_json::json!({}),
                position: 0,
                config: &config,
                state_size: 1,
                n_params: 1,
                train_len: 64,
                run_dir: "/tmp/x",
            })
            .await
            .unwrap();
            db
        });
        (rt, db)
    })
}

/// Found by looking for what the fuzzer could reach: i64::MIN / -1 overflows the remainder.
#[test]
fn min_divided_by_minus_one_is_an_error_not_a_panic() {
    let ctx = serde_json::json!({});
    assert!(evaluate("(0 - 9223372036854775807 - 1) / (0 - 1)", &ctx).is_err());
}

// ---- trust boundaries (issue 25): dumps, Slurm scripts, the dashboard's routes ----

/// Text an attacker would try: path tricks, control characters, shell, SQL, long runs.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,24}",
        "[a-z0-9._-]{1,12}",
        prop::sample::select(vec![
            "..",
            ".",
            "/etc/passwd",
            "../../../../etc/passwd",
            "/etc",
            "runs/../secret",
            "a\nb",
            "gpu\necho pwned",
            "--wrap=id",
            "x'; DROP TABLE jobs; --",
            "%2e%2e%2f",
            "\u{0}",
            "results/runs/j/worker.log",
            "--constraint=a100",
            "1-00:00:00",
            "32G",
        ])
        .prop_map(String::from),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn dumps_are_checked_never_panic_and_their_paths_never_resolve_outside(
        sweep in hostile_text(), id in hostile_text(), run_dir in hostile_text(), log in hostile_text(), artifact in hostile_text(),
        dup in any::<bool>(), orphan in any::<bool>(),
    ) {
        let job = serde_json::json!({"id": id, "config": {}, "state_size": 1, "n_params": 1, "train_len": 1, "run_dir": run_dir, "status": "completed", "attempts": 1,
            "error": null, "error_class": null, "step": null, "total_steps": null, "last_loss": null, "tokens_per_s": null, "peak_mem_gb": null, "created_at": "t", "finished_at": null});
        let jobs = if dup { vec![job.clone(), job] } else { vec![job] };
        let metric_job = if orphan { "someone-else".to_string() } else { id.clone() };
        let dump = serde_json::json!({"format": "stuffed-results", "version": 1,
            "sweeps": [{"name": sweep, "description": "", "spec": "", "source_path": null, "backend": "local", "created_at": "t", "updated_at": "t", "cancelled_at": null}],
            "jobs": jobs, "sweep_jobs": [{"sweep": sweep, "job_id": id, "label": "", "varied": {}, "position": 0}],
            "attempts": [{"id": 1, "job_id": id, "number": 1, "backend": "local", "backend_id": null, "host": null, "gpu": null, "gpu_name": null, "pid": 1, "started_at": "t",
                "ended_at": null, "status": "completed", "exit_code": null, "error_class": null, "error": null, "log_path": log, "git_commit": null, "git_dirty": null,
                "version": null, "libtorch": null, "seed": null}],
            "metrics": [[metric_job, "loss", 1, 1.0]], "evals": [], "artifacts": [[id, "checkpoint", artifact, 1]]});
        let d: stuffed::store::Dump = serde_json::from_value(dump).expect("the dump's shape");
        let checked = stuffed::store::check_dump(&d);
        if dup || orphan {
            prop_assert!(checked.is_err());
        }
        if checked.is_ok() {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let db = Db::open_memory().await.unwrap();
                db.import_checked(&d, false).await.expect("a checked dump imports");
            });
        }
        let (root, base) = roots();
        for p in [&run_dir, &log, &artifact] {
            if let Some(found) = stuffed::safety::resolve_inside(std::slice::from_ref(root), std::slice::from_ref(base), p) {
                prop_assert!(found.starts_with(root) && found != *root, "{p:?} resolved to {found:?}");
            }
        }
    }

    #[test]
    fn slurm_scripts_never_gain_a_line(
        partition in prop::option::of(hostile_text()), time in prop::option::of(hostile_text()), mem in prop::option::of(hostile_text()),
        extra in prop::collection::vec(hostile_text(), 0..3), dir in hostile_text(),
    ) {
        let set = [&partition, &time, &mem].iter().filter(|v| v.is_some()).count();
        let cfg = stuffed::sweep::SlurmBackend { partition, time, mem, extra_sbatch: extra.clone(), ..Default::default() };
        let opts = stuffed::sched::slurm::SlurmOptions {
            cfg, runs_dir: "/shared/runs".into(), slurm_dir: "/shared/runs/slurm".into(), retries: 0, timeout_secs: None,
            gpus: 1, poll: std::time::Duration::from_secs(1), exe: "/opt/stuffed".into(),
        };
        if let Ok(script) = stuffed::sched::slurm::array_script(&opts, "sweep", &[format!("/shared/runs/{dir}")], true) {
            // job name, array, output, gres, the values set, the extras.
            let sbatch = 4 + set + extra.len();
            prop_assert_eq!(script.lines().filter(|l| l.starts_with("#SBATCH ")).count(), sbatch, "{}", script);
            // and the shebang, `set -u`, DIRS, exec: nothing else.
            prop_assert_eq!(script.lines().count(), sbatch + 4, "{}", script);
            prop_assert!(!script.lines().any(|l| l.starts_with("#SBATCH --wrap")) && !script.chars().any(|c| c.is_control() && c != '\n'));
        }
    }

    #[test]
    fn http_routes_never_panic_and_never_leak(segs in prop::collection::vec(hostile_text(), 1..5), raw in any::<bool>()) {
        let addr = server();
        let path: String = segs.iter().map(|s| {
            let s: String = if raw { s.chars().filter(|c| c.is_ascii_graphic() && !"#?".contains(*c)).collect() } else {
                s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
            };
            format!("/{s}")
        }).collect();
        for fixed in ["/files/jobs/abcdef01/attempts/1/log", "/api/jobs/abcdef01", "/api/jobs/abcdef01/log"] {
            let (status, body) = http(&addr, fixed);
            prop_assert!(!body.contains("TOP-SECRET"), "{fixed} leaked (status {status})");
        }
        let prefixes = ["", "/files/jobs/abcdef01", "/files/jobs/abcdef01/artifacts/0", "/api/jobs", "/sweeps/s/report/files", "/assets"];
        for prefix in prefixes {
            let (status, body) = http(&addr, &format!("{prefix}{path}"));
            prop_assert!(matches!(status, 200 | 400 | 404 | 405 | 409 | 413), "{prefix}{path}: {status} {body}");
            prop_assert!(!body.contains("TOP-SECRET"), "{prefix}{path} leaked: {body}");
        }
    }
}

/// A runs directory and its parent (holding a secret file), shared by the cases.
fn roots() -> &'static (std::path::PathBuf, std::path::PathBuf) {
    static ROOTS: OnceLock<(std::path::PathBuf, std::path::PathBuf)> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("stuffed-fuzz-roots-{}", std::process::id()));
        std::fs::create_dir_all(base.join("runs/j")).unwrap();
        std::fs::write(base.join("runs/j/worker.log"), "log").unwrap();
        std::fs::write(base.join("secret"), "TOP-SECRET").unwrap();
        let _ = std::os::unix::fs::symlink(base.join("secret"), base.join("runs/j/link"));
        let base = std::fs::canonicalize(base).unwrap();
        (base.join("runs"), base)
    })
}

/// A dashboard in this process over a database whose job records hostile paths.
fn server() -> String {
    static ADDR: OnceLock<String> = OnceLock::new();
    ADDR.get_or_init(|| {
        let (root, base) = roots().clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let db = Db::open(&base.join("fuzz.db")).await.unwrap();
                db.upsert_sweep("s", "", "name: s\n", None, "local").await.unwrap();
                let config = serde_json::json!({"model": {"d_state": 8}});
                let run_dir = base.join("runs/j");
                db.add_job(&stuffed::store::NewJob {
                    id: "abcdef01",
                    sweep: "s",
                    label: "x",
                    varied: &serde_json::json!({}),
                    position: 0,
                    config: &config,
                    state_size: 1,
                    n_params: 1,
                    train_len: 64,
                    run_dir: run_dir.to_str().unwrap(),
                })
                .await
                .unwrap();
                let log = base.join("secret").display().to_string();
                db.start_attempt(&stuffed::store::NewAttempt {
                    job_id: "abcdef01".into(),
                    backend: "local".into(),
                    log_path: Some(log),
                    ..Default::default()
                })
                .await
                .unwrap();
                let opts = stuffed::serve::Options {
                    db_label: "fuzz".into(),
                    loopback_only: true,
                    scratch: base.join("scratch"),
                    base_dirs: vec![base.clone()],
                    runs_dirs: vec![root],
                    token: None,
                };
                let app = stuffed::serve::router(db, opts).unwrap();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap().to_string()).unwrap();
                stuffed::serve::serve(listener, app, std::future::pending()).await.unwrap();
            });
        });
        rx.recv().unwrap()
    })
    .clone()
}

fn http(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let t = String::from_utf8_lossy(&raw).into_owned();
    (t.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0), t)
}
