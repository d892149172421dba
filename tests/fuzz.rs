//! Property tests (a fuzzing suite runnable in CI) over what users type: sweep YAML parsing and
//! expansion, derived-value expressions, and `--where` filters. Nothing may panic; every input
//! is either accepted or refused with an error. `PROPTEST_CASES=100000 cargo test --release
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
    "model.d_state", "model.d_model", "model.n_layer", "model.headdim", "model.ngroups", "model.chunk_size", "model.preset",
    "train.seq_len", "train.lr", "train.steps", "train.batch_size", "train.seed", "train.precision", "data.corpus",
    "data.mixture[0].weight", "evals[0].len", "evals[1].lengths", "tokenizer", "model.d_stat", "train", "x.y.z",
    "evals[99].len", "model..d_state", "train.seq_len[2]", "", "model.d_state.x",
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
                id: "abc", sweep: "s", label: "d_state=8", varied: &serde_json::json!({}), position: 0, config: &config,
                state_size: 1, n_params: 1, train_len: 64, run_dir: "/tmp/x",
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
