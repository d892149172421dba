//! Trainer, data and config: determinism, exact resume, weight-decay groups, corpus builds
//! with bad records, located config errors.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;
use stuffed_model::checkpoint;
use stuffed_model::data::corpus::{self, BuildOptions, InputSpec};
use stuffed_model::train::{self, AdamW, AdamWConfig, EventLog, JobConfig};
use stuffed_model::{Error, Mamba2LM, MambaConfig, Tokenizer};
use tch::Device;

/// A small corpus of varied English-like text.
fn fixture_corpus(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let words = ["state", "space", "model", "forget", "the", "long", "context", "mamba", "token", "passkey", "green", "grass", "memory"];
    for d in 0..30 {
        let text: Vec<&str> = (0..300).map(|i| words[(i * 7 + d * 3 + i / 5) % words.len()]).collect();
        std::fs::write(src.join(format!("doc{d:02}.txt")), text.join(" ") + ".\n").unwrap();
    }
    let out = dir.join("corpus");
    let opts = BuildOptions {
        inputs: vec![InputSpec { path: src, include: vec![], exclude: vec![] }],
        field: "text".into(),
        min_doc_tokens: 1,
        val_fraction: 0.2,
    };
    corpus::build(&Tokenizer::from_spec("bytes").unwrap(), &opts, &out, &|_, _, _| {}).unwrap();
    out
}

fn job(corpus: &Path, steps: i64, ckpt_every: i64) -> JobConfig {
    let yaml = format!(
        "model: {{d_model: 32, n_layer: 2, d_state: 8, headdim: 16, chunk_size: 16}}\n\
         data: {{corpus: {}}}\n\
         train: {{seq_len: 48, batch_size: 3, steps: {steps}, lr: 0.003, warmup_steps: 2, seed: 5, device: cpu,\n\
         \x20 precision: fp32, log_every: 1, checkpoint_every: {ckpt_every}}}\n",
        corpus.display()
    );
    JobConfig::from_yaml(&yaml, Path::new("test.yaml")).unwrap()
}

fn losses(events: &Path) -> Vec<(i64, f64)> {
    std::fs::read_to_string(events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| (v["step"].as_i64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

/// Training draws its initial weights from libtorch's global generator: tests that train run
/// one at a time so their seeds do not interleave.
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(job: &JobConfig, dir: &Path, stop_at: Option<i64>) -> stuffed_model::Result<train::TrainOutcome> {
    let _one_at_a_time = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    std::fs::create_dir_all(dir).unwrap();
    let mut log = EventLog::open(&dir.join("events.jsonl")).unwrap();
    let stop = AtomicBool::new(false);
    let mut cb = |s: &train::StepInfo| {
        if Some(s.step) == stop_at {
            stop.store(true, Ordering::SeqCst);
        }
    };
    train::train(job, dir, &mut log, &stop, &mut cb, &mut |_: &train::EvalMoment, _: &mut EventLog| {
        Ok::<_, Error>(train::Control::Continue)
    })
}

fn weights(ckpt: &Path) -> Vec<(String, tch::Tensor)> {
    checkpoint::read_tensors(&ckpt.join(checkpoint::WEIGHTS_FILE)).unwrap().into_iter().collect()
}

#[test]
fn same_seed_same_losses() {
    let tmp = tempfile::tempdir().unwrap();
    let c = fixture_corpus(tmp.path());
    let j = job(&c, 6, 0);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    run(&j, &a, None).unwrap();
    run(&j, &b, None).unwrap();
    let (la, lb) = (losses(&a.join("events.jsonl")), losses(&b.join("events.jsonl")));
    assert_eq!(la.len(), 6);
    assert_eq!(la, lb);
}

#[test]
fn resume_continues_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let c = fixture_corpus(tmp.path());
    let j = job(&c, 8, 0);
    let straight = tmp.path().join("straight");
    let o1 = run(&j, &straight, None).unwrap();

    let split = tmp.path().join("split");
    match run(&j, &split, Some(4)) {
        Err(Error::Interrupted) => {}
        other => panic!("expected an interrupted run, got {other:?}"),
    }
    let o2 = run(&j, &split, None).unwrap();
    assert_eq!(o2.resumed_from, Some(4));
    assert_eq!(losses(&straight.join("events.jsonl")), losses(&split.join("events.jsonl")));
    for ((n1, t1), (n2, t2)) in weights(&o1.checkpoint).iter().zip(weights(&o2.checkpoint).iter()) {
        assert_eq!(n1, n2);
        assert!(t1.equal(t2), "{n1} differs after resume");
    }
}

#[test]
fn no_weight_decay_on_dt_bias_a_log_d_norms_and_biases() {
    // An unseeded init draws from torch's global generator: not while another test seeds it.
    let _one_at_a_time = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = MambaConfig::preset("tiny").unwrap();
    let lm = Mamba2LM::new(&cfg, Device::Cpu).unwrap();
    let opt = AdamW::new(lm.params(), AdamWConfig::default());
    let (decay, no_decay) = opt.groups();
    for n in &no_decay {
        assert!(
            n.ends_with(".dt_bias") || n.ends_with(".A_log") || n.ends_with(".D") || n.ends_with(".bias") || n.contains("norm"),
            "{n} should decay"
        );
    }
    assert!(no_decay.contains(&"backbone.layers.0.mixer.A_log"));
    assert!(no_decay.contains(&"backbone.layers.1.mixer.conv1d.bias"));
    assert!(no_decay.contains(&"backbone.norm_f.weight"));
    assert_eq!(decay.len(), 1 + 2 * 3, "embedding + in_proj, conv1d.weight, out_proj per layer: {decay:?}");
}

#[test]
fn corpus_build_counts_and_reports_bad_records() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("in");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), "hello world").unwrap();
    std::fs::write(src.join("sub/b.txt"), "second document").unwrap();
    std::fs::write(src.join("bad.txt"), [0xff, 0xfe, 0x00, 0x41]).unwrap();
    std::fs::write(src.join("empty.txt"), "  \n").unwrap();
    std::fs::write(src.join("c.jsonl"), "{\"text\": \"json doc one\"}\n{\"other\": 1}\nnot json\n{\"text\": \"json doc two\"}\n").unwrap();
    let out = tmp.path().join("out");
    let opts = BuildOptions {
        inputs: vec![InputSpec { path: src.clone(), include: vec![], exclude: vec![] }],
        field: "text".into(),
        min_doc_tokens: 1,
        val_fraction: 0.0,
    };
    let m = corpus::build(&Tokenizer::from_spec("bytes").unwrap(), &opts, &out, &|_, _, _| {}).unwrap();
    assert_eq!(m.train.documents, 4);
    assert_eq!(m.train.tokens, (11 + 15 + 12 + 12) as u64);
    assert_eq!(m.bad.invalid_utf8, 1);
    assert_eq!(m.bad.empty, 1);
    assert_eq!(m.bad.missing_field, 1);
    assert_eq!(m.bad.invalid_json, 1);
    assert!(
        m.sources[0].bad_examples.iter().any(|e| e.contains("bad.txt") && e.contains("invalid_utf8")),
        "{:?}",
        m.sources[0].bad_examples
    );
    assert!(m.sources[0].bad_examples.iter().any(|e| e.contains("c.jsonl:2") && e.contains("missing_field")));
    let c = stuffed_model::data::Corpus::open(&out).unwrap();
    let mut t = Vec::new();
    c.read(0, 0, c.doc_len(0), &mut t);
    assert_eq!(Tokenizer::from_spec("bytes").unwrap().decode(&t), "hello world");

    // An unreadable input is fatal, with its name.
    let opts = BuildOptions { inputs: vec![InputSpec { path: tmp.path().join("nope"), include: vec![], exclude: vec![] }], ..opts };
    let err = corpus::build(&Tokenizer::from_spec("bytes").unwrap(), &opts, &out, &|_, _, _| {}).unwrap_err().to_string();
    assert!(err.contains("nope"), "{err}");
}

fn config_error(yaml: &str) -> String {
    JobConfig::from_yaml(yaml, Path::new("job.yaml")).unwrap_err().to_string()
}

#[test]
fn config_errors_name_file_line_and_key() {
    let base = "model: {preset: tiny}\ntrain:\n  seq_len: 64\n  batch_size: 2\n  steps: 3\n  lr: 0.001\n";
    let e = config_error(&base.replace("  lr: 0.001\n", "  lr: 0.001\n  seq_lne: 5\n"));
    assert!(e.starts_with("job.yaml:7:"), "{e}");
    assert!(e.contains("seq_lne") && e.contains("did you mean `seq_len`"), "{e}");

    let e = config_error(&base.replace("steps: 3", "steps: three"));
    assert!(e.starts_with("job.yaml:5:") && e.contains("train.steps"), "{e}");

    let e = config_error(&base.replace("seq_len: 64", "seq_len: 0"));
    assert!(e.starts_with("job.yaml:3:3: key `train.seq_len`") && e.contains("positive"), "{e}");

    let e = config_error(&base.replace("model: {preset: tiny}", "model:\n  preset: tiny\n  headdim: 48"));
    assert!(e.contains("job.yaml:1:1: key `model`") && e.contains("headdim"), "{e}");
}

#[test]
fn tokenizer_mismatch_between_corpus_and_job_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let c = fixture_corpus(tmp.path());
    let mut j = job(&c, 2, 0);
    j.tokenizer = "gpt2".into();
    let err = run(&j, &tmp.path().join("r"), None).unwrap_err().to_string();
    assert!(err.contains("tokenizer mismatch") && err.contains("corpus"), "{err}");
}

#[test]
fn cuda_graph_on_a_cpu_job_is_an_error_before_any_step() {
    let tmp = tempfile::tempdir().unwrap();
    let c = fixture_corpus(tmp.path());
    let mut j = job(&c, 2, 0);
    j.train.cuda_graph = true;
    let err = run(&j, &tmp.path().join("r"), None).unwrap_err().to_string();
    assert!(err.contains("train.cuda_graph") && err.contains("CUDA device"), "{err}");
    assert!(!tmp.path().join("r").join("checkpoints").exists(), "nothing trained");
}

#[test]
fn gradient_accumulation_gives_the_same_update() {
    use stuffed_model::train::{train_step, Batch};
    // Random tokens and an unseeded init: not while another test seeds the global generator.
    let _one_at_a_time = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = MambaConfig::preset("tiny").unwrap();
    let data = tch::Tensor::randint(256, [4, 33], (tch::Kind::Int64, Device::Cpu));
    let batch = Batch { inputs: data.narrow(1, 0, 32), targets: data.narrow(1, 1, 32) };
    let lm = Mamba2LM::new(&cfg, Device::Cpu).unwrap();
    let mut opt = AdamW::new(lm.params(), AdamWConfig::default());
    // lr 0 leaves the weights as they are; compare the gradients each way produces (the update
    // is made from them).
    let mut grads = |micro: Option<i64>| {
        let loss = train_step(&lm, &mut opt, &batch, None, tch::Kind::Float, 0.0, 0.0, micro).read().0;
        let flat = tch::Tensor::cat(&lm.params().iter().map(|(_, p)| p.grad().reshape([-1])).collect::<Vec<_>>(), 0);
        (loss, flat)
    };
    let (l1, g1) = grads(None);
    let (l2, g2) = grads(Some(1));
    let (l3, g3) = grads(Some(3));
    assert!((l1 - l2).abs() < 1e-5 && (l1 - l3).abs() < 1e-5, "{l1} {l2} {l3}");
    let tol = 1e-5 * g1.abs().max().double_value(&[]).max(1.0);
    assert!((&g1 - &g2).abs().max().double_value(&[]) < tol);
    assert!((&g1 - &g3).abs().max().double_value(&[]) < tol);
}

#[test]
fn evals_at_points_resolve_to_steps_and_bad_ones_name_their_key() {
    let base =
        "model: {preset: tiny}\ntrain:\n  seq_len: 64\n  batch_size: 2\n  steps: 10\n  lr: 0.001\nevals:\n  - {kind: loss, len: 128}\n";
    let with = |points: &str| format!("{base}evals_at: {points}\n");
    // Fractions round up, tokens become the step that reaches them, repeats merge, and the
    // final step may be listed (it is evaluated anyway).
    let j = JobConfig::from_yaml(&with("[0.25, 3, {tokens: 300}, {step: 3}, {fraction: 1.0}]"), Path::new("job.yaml")).unwrap();
    assert_eq!(j.eval_steps(), [3, 10]);
    let j = JobConfig::from_yaml(&with("[0.5, {tokens: 129}]"), Path::new("job.yaml")).unwrap();
    assert_eq!(j.eval_steps(), [2, 5]);
    // With truncated BPTT a point moves up to the next window boundary (an exact checkpoint).
    let tbptt = with("[0.25]").replace("model: {preset: tiny}\n", "model: {preset: tiny}\ndata: {tbptt_segments: 4}\n");
    assert_eq!(JobConfig::from_yaml(&tbptt, Path::new("job.yaml")).unwrap().eval_steps(), [4]);

    let e = config_error(&with("[0.5, 1.5]"));
    assert!(e.contains("job.yaml:9") && e.contains("`evals_at[1]`") && e.contains("fraction 1.5 is not within (0, 1]"), "{e}");
    let e = config_error(&with("[11]"));
    assert!(e.contains("`evals_at[0]`") && e.contains("step 11 is not within the job's steps 1..=10"), "{e}");
    let e = config_error(&with("[{tokens: 5000}]"));
    assert!(e.contains("`evals_at[0]`") && e.contains("5000 tokens is not within the job's training tokens 1..=1280"), "{e}");
    let e = config_error(&with("[{tokens: 5, step: 2}]"));
    assert!(e.contains("`evals_at[0]`") && e.contains("exactly one of"), "{e}");
    let e = config_error(&with("[{tokns: 5}]"));
    assert!(e.contains("evals_at") && e.contains("a fraction in (0, 1], a step"), "{e}");
    let e = config_error(&with("[0]"));
    assert!(e.contains("`evals_at[0]`") && e.contains("step 0"), "{e}");
    let e = config_error(&with("[0.5]").replace("evals:\n  - {kind: loss, len: 128}\n", ""));
    assert!(e.contains("`evals_at`") && e.contains("need `evals`"), "{e}");
}

#[test]
fn evaluation_points_keep_the_loss_curve_their_checkpoints_and_can_stop_training() {
    use stuffed_model::train::{Control, EvalMoment};
    let tmp = tempfile::tempdir().unwrap();
    let c = fixture_corpus(tmp.path());
    let plain = job(&c, 8, 0);
    let mut points = plain.clone();
    points.evals_at = serde_json::from_str("[0.25, 0.5]").unwrap();
    points.train.keep_checkpoints = 1;
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    run(&plain, &a, None).unwrap();
    let _one_at_a_time = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    std::fs::create_dir_all(&b).unwrap();
    let mut log = EventLog::open(&b.join("events.jsonl")).unwrap();
    let stop = AtomicBool::new(false);
    let mut seen = Vec::new();
    // The hook reads the checkpoint of its moment (as the worker's evaluations do).
    let mut on_eval = |m: &EvalMoment, _: &mut EventLog| {
        let (_lm, meta) = checkpoint::load(m.checkpoint, Device::Cpu)?;
        seen.push((m.step, m.tokens, meta.step));
        Ok::<_, Error>(Control::Continue)
    };
    train::train(&points, &b, &mut log, &stop, &mut |_| {}, &mut on_eval).unwrap();
    assert_eq!(seen, [(2, 2 * 3 * 48, Some(2)), (4, 4 * 3 * 48, Some(4))]);
    assert_eq!(losses(&a.join("events.jsonl")), losses(&b.join("events.jsonl")));
    let mut kept: Vec<String> = std::fs::read_dir(b.join("ckpt"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("step-"))
        .collect();
    kept.sort();
    assert_eq!(kept, ["step-00000002", "step-00000004", "step-00000008"]);

    // A hook that stops at the first point ends training there, with that checkpoint.
    let s = tmp.path().join("s");
    std::fs::create_dir_all(&s).unwrap();
    let mut log = EventLog::open(&s.join("events.jsonl")).unwrap();
    let o = train::train(&points, &s, &mut log, &stop, &mut |_| {}, &mut |_: &EvalMoment, _: &mut EventLog| Ok::<_, Error>(Control::Stop))
        .unwrap();
    assert_eq!((o.steps, o.stopped_early), (2, Some(2)));
    assert!(o.checkpoint.ends_with("step-00000002"));
}
