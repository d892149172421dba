//! Sweep files expanded into jobs: the grid product, zip groups, derived values and eval
//! templates, seeds, stable job ids, and errors that point at the line to fix.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::json;
use stuffed::sweep::{expand, Backend, ExpandedJob, LoadedSweep, MemorySpec, SweepError, SweepSpec};
use stuffed_model::train::config::EvalSpec;

const BASE: &str = "model:
  preset: tiny
train:
  seq_len: 256
  batch_size: 8
  steps: 10
  lr: 0.001
";

/// A sweep with `base` inline, `rest` appended.
fn inline(rest: &str) -> String {
    format!("name: s\nbase:\n{}{rest}", BASE.lines().map(|l| format!("  {l}\n")).collect::<String>())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn load(text: &str) -> (tempfile::TempDir, Result<LoadedSweep, SweepError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "x.yaml", text);
    let loaded = SweepSpec::load(&path);
    (dir, loaded)
}

fn jobs(text: &str) -> Vec<ExpandedJob> {
    let (_dir, loaded) = load(text);
    expand(&loaded.unwrap(), 1000).unwrap()
}

/// The error of loading or expanding, as displayed, with the temp dir's path cut off.
fn error(text: &str) -> String {
    let (dir, loaded) = load(text);
    let err = match loaded {
        Err(e) => e,
        Ok(l) => expand(&l, 1000).expect_err("expected an error"),
    };
    err.to_string().replace(&format!("{}/", dir.path().display()), "")
}

fn labels(jobs: &[ExpandedJob]) -> Vec<&str> {
    jobs.iter().map(|j| j.label.as_str()).collect()
}

#[test]
fn grid_is_a_cartesian_product_in_written_order() {
    let j = jobs(&inline("grid:\n  train.seq_len: [64, 128]\n  model.d_state: [8, 16, 32]\n"));
    assert_eq!(j.len(), 6);
    assert_eq!(
        labels(&j),
        [
            "seq_len=64 d_state=8",
            "seq_len=64 d_state=16",
            "seq_len=64 d_state=32",
            "seq_len=128 d_state=8",
            "seq_len=128 d_state=16",
            "seq_len=128 d_state=32"
        ]
    );
    assert_eq!(j[4].varied, vec![("train.seq_len".to_string(), json!(128)), ("model.d_state".to_string(), json!(16))]);
    assert_eq!(j[4].config.train.seq_len, 128);
    assert_eq!(j[4].config.model.d_state, Some(16));
    assert_eq!(j[4].config.name.as_deref(), Some("s/seq_len=128 d_state=16"));
    assert_eq!(j.iter().map(|j| j.index).collect::<Vec<_>>(), (0..6).collect::<Vec<_>>());
    let ids: BTreeSet<&str> = j.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids.len(), 6);
    assert!(j.iter().all(|j| j.id.len() == 16 && j.id.chars().all(|c| c.is_ascii_hexdigit())));
}

#[test]
fn no_grid_is_the_base_alone() {
    let j = jobs(&inline(""));
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].label, "");
    assert!(j[0].varied.is_empty());
    assert_eq!(j[0].config.name.as_deref(), Some("s"));
}

#[test]
fn labels_use_full_keys_where_last_names_clash() {
    let j = jobs(&inline("grid:\n  model.d_state: [8]\n  train.seed: [1]\n  evals[0].len: [64]\nevals:\n  - kind: loss\n    len: 8\n  - kind: states\n    len: 8\nzip:\n  - evals[1].len: [32]\n"));
    assert_eq!(j[0].label, "d_state=8 seed=1 evals[0].len=64 evals[1].len=32");
}

#[test]
fn zip_groups_advance_together_and_multiply_with_the_grid() {
    let j = jobs(&inline("grid:\n  train.seq_len: [64, 128]\nzip:\n  - model.d_state: [8, 16]\n    train.lr: [0.01, 0.001]\n"));
    assert_eq!(
        labels(&j),
        [
            "seq_len=64 d_state=8 lr=0.01",
            "seq_len=64 d_state=16 lr=0.001",
            "seq_len=128 d_state=8 lr=0.01",
            "seq_len=128 d_state=16 lr=0.001"
        ]
    );
    assert_eq!(j[1].config.train.lr, 0.001);
}

#[test]
fn zip_lists_of_unequal_length_are_an_error_naming_group_and_keys() {
    let e = error(&inline("zip:\n  - model.d_state: [8, 16]\n  - train.seq_len: [64, 128]\n    train.lr: [0.1]\n"));
    assert_eq!(e, "x.yaml:13:5: the lists of zip group 1 differ in length: `train.seq_len` has 2 values, `train.lr` has 1 value");
}

#[test]
fn derived_values_and_eval_templates() {
    let j = jobs(&inline(
        "grid:\n  train.seq_len: [64, 256]\nderived:\n  train.batch_size: \"2048 / {train.seq_len}\"\n  train.steps: \"{train.batch_size} + 2 * (3 - 1)\"\nevals:\n  - kind: loss\n    len: \"16 * {train.seq_len}\"\n    bucket: \"{train.batch_size} * 8\"\n  - kind: passkey\n    lengths: [\"4 * {train.seq_len}\", \"8 * {train.seq_len}\"]\n",
    ));
    assert_eq!(j[0].config.train.batch_size, Some(32));
    assert_eq!(j[0].config.train.steps, Some(36));
    assert_eq!(j[1].config.train.batch_size, Some(8));
    match (&j[1].config.evals[0], &j[1].config.evals[1]) {
        (EvalSpec::Loss(l), EvalSpec::Passkey(p)) => {
            assert_eq!((l.len, l.bucket), (4096, 64));
            assert_eq!(p.lengths.listed(), [1024, 2048]);
        }
        other => panic!("unexpected evals {other:?}"),
    }
    // Derived keys are not part of the label.
    assert_eq!(labels(&j), ["seq_len=64", "seq_len=256"]);
}

#[test]
fn a_single_reference_keeps_its_type() {
    let j = jobs(&inline("grid:\n  train.device: [cpu]\nderived:\n  init_from: \"{train.device}\"\n"));
    assert_eq!(j[0].config.init_from.as_deref(), Some(Path::new("cpu")));
}

#[test]
fn non_integral_derived_value_is_an_error_at_the_derived_key() {
    let e = error(&inline("grid:\n  train.seq_len: [3]\nderived:\n  train.steps: \"1000 / {train.seq_len}\"\n"));
    assert_eq!(e, "x.yaml:13:3: key `train.steps`: derived `train.steps` = 1000 / 3 is not an integer (job train.seq_len=3)");
    let e = error(&inline("derived:\n  train.steps: \"{train.total_tokens} / 2\"\n"));
    assert!(
        e.starts_with(
            "x.yaml:11:3: key `train.steps`: derived `train.steps` = `{train.total_tokens} / 2`: `{train.total_tokens}` is not set"
        ),
        "{e}"
    );
    let e = error(&inline("derived:\n  train.steps: {train.seq_len}\n"));
    assert!(e.contains("quote the expression"), "{e}");
}

#[test]
fn eval_template_errors_point_at_the_eval() {
    let e = error(&inline("evals:\n  - kind: loss\n    len: \"{train.seq_len} / 3\"\n"));
    assert!(e.starts_with("x.yaml:12:5: key `evals[0].len`: 256 / 3 is not an integer"), "{e}");
}

#[test]
fn seeds_replicate_every_job() {
    let j = jobs(&inline("grid:\n  model.d_state: [8, 16]\nseeds: [1, 2, 3]\n"));
    assert_eq!(j.len(), 6);
    assert_eq!(j[2].label, "d_state=8 seed=3");
    assert_eq!(j[2].config.train.seed, 3);
    assert_eq!(j[2].varied.last(), Some(&("train.seed".to_string(), json!(3))));
    let e = error(&inline("grid:\n  train.seed: [1]\nseeds: [1, 2]\n"));
    assert!(e.contains("`train.seed` is set twice: in grid and in seeds"), "{e}");
}

#[test]
fn job_ids_are_stable_across_key_order_and_number_spelling() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a/base.yaml",
        "name: first\nmodel:\n  preset: tiny\ntrain:\n  seq_len: 256\n  batch_size: 8\n  steps: 10\n  lr: 1e-3\n",
    );
    write(
        dir.path(),
        "b/base.yaml",
        "train:\n  lr: 0.001\n  decay_frac: 0.2\n  steps: 10\n  batch_size: 8\n  seq_len: 256\ntokenizer: bytes\nmodel: {preset: tiny}\nname: second\n",
    );
    let a = write(dir.path(), "a/s.yaml", "name: a\nbase: base.yaml\ngrid:\n  model.d_state: [8, 16]\n  train.lr: [1e-3, 2.0e-3]\n");
    let b = write(dir.path(), "b/s.yaml", "grid:\n  train.lr: [0.002, 0.0010]\n  \"model.d_state\": [16, 8]\nbase: base.yaml\nname: b\n");
    let ids = |p: &Path| -> BTreeSet<String> { expand(&SweepSpec::load(p).unwrap(), 100).unwrap().into_iter().map(|j| j.id).collect() };
    let (ia, ib) = (ids(&a), ids(&b));
    assert_eq!(ia.len(), 4);
    assert_eq!(ia, ib);
    // A different value is a different job.
    let c = write(dir.path(), "b/c.yaml", "name: c\nbase: base.yaml\ngrid:\n  model.d_state: [8, 16]\n  train.lr: [1e-3, 3e-3]\n");
    assert_eq!(ids(&c).intersection(&ia).count(), 2);
}

#[test]
fn the_same_job_twice_is_an_error_naming_both() {
    let e = error(&inline("grid:\n  train.lr: [0.001, 1e-3]\n"));
    assert!(e.starts_with("x.yaml: jobs `lr=0.001` and `lr=0.001` resolve to the same config"), "{e}");
}

#[test]
fn unknown_grid_key_is_located_with_a_suggestion() {
    let e = error(&inline("grid:\n  train.seq_len: [64]\n  model.d_stat: [8, 16]\n"));
    assert_eq!(
        e,
        "x.yaml:12:3: key `model.d_stat`: `model.d_stat` is not a job config key: `model` has no field `d_stat` (did you mean `model.d_state`?) (job train.seq_len=64 model.d_stat=8)"
    );
    let e = error(&inline("zip:\n  - trian.seq_len: [64]\n"));
    assert!(e.starts_with("x.yaml:11:5: key `trian.seq_len`: `trian.seq_len` is not a job config key: a job config has no field `trian` (did you mean `train.seq_len`?)"), "{e}");
    let e = error(&inline("evals:\n  - kind: loss\n    len: 8\ngrid:\n  evals[0].lne: [8]\n"));
    assert!(e.starts_with("x.yaml:14:3: key `evals[0].lne`:") && e.contains("(did you mean `evals[0].len`?)"), "{e}");
}

#[test]
fn unknown_top_level_key_suggests_the_right_one() {
    let e = error(&inline("gird:\n  model.d_state: [8]\n"));
    assert!(e.starts_with("x.yaml:10:1: ") && e.contains("unknown field `gird`"), "{e}");
    assert!(e.ends_with("(did you mean `grid`?)"), "{e}");
}

#[test]
fn yaml_syntax_error_has_file_line_and_column() {
    let e = error("name: s\nbase: b.yaml\ngrid:\n  model.d_state: [8, 16\n  train.seq_len: [1]\n");
    let parts: Vec<&str> = e.splitn(4, ':').collect();
    assert_eq!(parts[0], "x.yaml", "{e}");
    assert!(parts[1].parse::<usize>().is_ok_and(|l| l >= 4) && parts[2].parse::<usize>().is_ok(), "{e}");
}

#[test]
fn wrong_value_type_names_the_key_at_the_grid_entry() {
    let e = error(&inline("grid:\n  train.seq_len: [\"a\"]\n"));
    assert!(e.starts_with("x.yaml:11:3: key `train.seq_len`: invalid type: string \"a\", expected i64"), "{e}");
    assert!(e.ends_with("(job train.seq_len=\"a\")"), "{e}");
    let e = error(&inline("grid:\n  train.seq_len: 64\n"));
    assert_eq!(e, "x.yaml:11:3: grid key `train.seq_len` must be a list of values, like [64]");
}

#[test]
fn invalid_job_is_located_and_names_the_job() {
    let e = error(&inline("grid:\n  model.d_state: [16]\n  train.seq_len: [256, 0]\n"));
    assert_eq!(e, "x.yaml:12:3: key `train.seq_len`: must be a positive integer, got 0 (job model.d_state=16 train.seq_len=0)");
}

#[test]
fn problems_of_the_base_are_located_in_the_base_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.yaml", &BASE.replace("lr: 0.001", "lr: -1"));
    let s = write(dir.path(), "s.yaml", "name: s\nbase: base.yaml\ngrid:\n  model.d_state: [8]\n");
    let e = expand(&SweepSpec::load(&s).unwrap(), 10).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("{}:7:3: key `train.lr`: must be a positive number, got -1 (job model.d_state=8)", dir.path().join("base.yaml").display())
    );
    let e = error(&inline("grid:\n  model.d_state: [8]\n").replace("preset: tiny", "preset: tiny\n    n_layr: 2"));
    assert!(e.starts_with("x.yaml:5:5: key `model.n_layr`: unknown field `n_layr`") && e.contains("did you mean `n_layer`"), "{e}");
}

#[test]
fn empty_grid_list_is_an_error() {
    let e = error(&inline("grid:\n  model.d_state: [8]\n  train.seq_len: []\n"));
    assert_eq!(e, "x.yaml:12:3: grid key `train.seq_len` has no values");
}

#[test]
fn max_jobs_is_checked_before_expanding() {
    let values = format!("[{}]", (1..=200).map(|i| i.to_string()).collect::<Vec<_>>().join(", "));
    let text =
        inline(&format!("grid:\n  model.d_state: {values}\n  train.seq_len: {values}\n  train.steps: {values}\n  train.seed: {values}\n"));
    let (_dir, loaded) = load(&text);
    let loaded = loaded.unwrap();
    let t = std::time::Instant::now();
    let e = expand(&loaded, 100).unwrap_err();
    assert!(t.elapsed().as_secs() < 2);
    assert!(e.to_string().ends_with("the sweep expands to 1600000000 jobs, more than --max-jobs 100"), "{e}");
    assert!(matches!(e, SweepError::TooManyJobs { jobs: 1_600_000_000, max: 100, .. }));
}

#[test]
fn base_path_is_relative_to_the_sweep_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "sweeps/base.yaml", BASE);
    let s = write(dir.path(), "sweeps/s.yaml", "name: s\nbase: base.yaml\ngrid:\n  model.d_state: [8, 16]\n");
    let loaded = SweepSpec::load(&s).unwrap();
    assert_eq!(loaded.base.file, dir.path().join("sweeps/base.yaml"));
    assert_eq!(expand(&loaded, 10).unwrap().len(), 2);
    let s = write(dir.path(), "sweeps/t.yaml", "name: t\nbase: nowhere.yaml\n");
    let e = SweepSpec::load(&s).unwrap_err().to_string();
    assert!(e.contains(":2:1: key `base`: base job config `nowhere.yaml` not found"), "{e}");
}

#[test]
fn backend_forms_parse() {
    let (_d, l) = load(&inline("backend: local\n"));
    assert_eq!(l.unwrap().spec.backend, Backend::Local);
    let (_d, l) = load(&inline("backend: {kind: local}\n"));
    assert_eq!(l.unwrap().spec.backend, Backend::Local);
    let (_d, l) = load(&inline("backend: {kind: slurm, partition: x}\n"));
    match l.unwrap().spec.backend {
        Backend::Slurm(s) => {
            assert_eq!(s.partition.as_deref(), Some("x"));
            assert_eq!(s.gres, "gpu:1");
        }
        other => panic!("{other:?}"),
    }
    let (_d, l) = load(&inline("backend:\n  kind: slurm\n  account: a\n  extra_sbatch: [\"--constraint=a100\"]\n  max_concurrent: 4\n"));
    match l.unwrap().spec.backend {
        Backend::Slurm(s) => assert_eq!((s.account.as_deref(), s.extra_sbatch.len(), s.max_concurrent), (Some("a"), 1, Some(4))),
        other => panic!("{other:?}"),
    }
    let e = error(&inline("backend: {kind: slurm, partiton: x}\n"));
    assert!(e.contains("key `backend`") && e.contains("did you mean `partition`"), "{e}");
    let e = error(&inline("backend:\n  kind: slurm\n  partiton: x\n"));
    assert!(e.starts_with("x.yaml:12:3: key `backend.partiton`: unknown field `partiton`"), "{e}");
    let e = error(&inline("backend: lokal\n"));
    assert!(e.contains("did you mean `local`"), "{e}");
}

#[test]
fn resources_retries_and_defaults() {
    let (_d, l) = load(&inline(""));
    let spec = l.unwrap().spec;
    assert_eq!((spec.resources.gpus, spec.resources.memory, spec.retries), (1, MemorySpec::Auto, 2));
    assert_eq!((spec.resources.memory_gb(), spec.resources.timeout_secs()), (None, None));
    let (_d, l) = load(&inline("resources:\n  gpus: 0\n  memory: 512MB\n  timeout: 90m\nretries: 0\n"));
    let spec = l.unwrap().spec;
    assert_eq!(
        (spec.resources.gpus, spec.resources.memory_gb(), spec.resources.timeout_secs(), spec.retries),
        (0, Some(0.5), Some(5400), 0)
    );
    let (_d, l) = load(&inline("resources:\n  memory: 12\n  timeout: 3600\n"));
    let spec = l.unwrap().spec;
    assert_eq!((spec.resources.memory_gb(), spec.resources.timeout_secs()), (Some(12.0), Some(3600)));
    let e = error(&inline("resources:\n  memory: lots\n"));
    assert!(e.contains("key `resources.memory`") && e.contains("not a memory size"), "{e}");
    let e = error(&inline("resources:\n  timeout: 2 weeks\n"));
    assert!(e.contains("key `resources.timeout`") && e.contains("not a duration"), "{e}");
}

#[test]
fn sweep_name_must_be_simple() {
    let e = error(&inline("").replace("name: s", "name: my sweep"));
    assert_eq!(e, "x.yaml:1:1: key `name`: `my sweep` is not a valid sweep name (use letters, digits, `-`, `_` and `.`, not starting with `.`; at most 128 characters)");
    // Names become file and Slurm job names: never `.`, `..` or hidden.
    for bad in [".", "..", ".x"] {
        let e = error(&inline("").replace("name: s", &format!("name: \"{bad}\"")));
        assert!(e.contains("not a valid sweep name"), "{bad}: {e}");
    }
}

#[test]
fn the_example_grid_expands() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sweeps/examples/tiny-grid-cpu.yaml");
    let j = expand(&SweepSpec::load(&path).unwrap(), 100).unwrap();
    assert_eq!(labels(&j), ["d_state=8 seq_len=64", "d_state=8 seq_len=256", "d_state=32 seq_len=64", "d_state=32 seq_len=256"]);
    assert_eq!(j[3].config.train.batch_size, Some(8));
}

#[test]
fn passkey_length_searches_take_templates() {
    let j = jobs(&inline(
        "grid:\n  train.seq_len: [64, 256]\nevals:\n  - kind: passkey\n    lengths: {search: [\"4 * {train.seq_len}\", \"64 * {train.seq_len}\"], resolution: \"{train.seq_len}\"}\n",
    ));
    match &j[1].config.evals[0] {
        EvalSpec::Passkey(p) => assert_eq!(p.lengths.search().map(|s| (s.range, s.resolution)), Some(([1024, 16384], 256))),
        other => panic!("unexpected eval {other:?}"),
    }
    let e = error(&inline("evals:\n  - kind: passkey\n    lengths: {search: [4096, 1024], resolution: 1024}\n"));
    assert!(e.contains("evals[0].lengths.search") && e.contains("0 < LO < HI"), "{e}");
}

#[test]
fn search_key_is_the_last_axis_and_probes_carry_early_stop() {
    let text = inline(
        "grid:\n  model.d_state: [8, 16]\nevals:\n  - {kind: loss, source: corpus, len: 1024, bucket: 64}\nevals_at: [0.5]\n\
         search:\n  key: train.seq_len\n  range: {from: 64, to: 256, factor: 2}\n  criterion: {test: ratio, above: 1.5}\n\
         \x20 early_stop: {stop_when: true}\n",
    );
    let (_dir, loaded) = load(&text);
    let loaded = loaded.unwrap();
    let search = loaded.search.as_ref().unwrap();
    assert_eq!(search.values, vec![json!(64), json!(128), json!(256)]);
    let jobs = expand(&loaded, 100).unwrap();
    // Cells are runs of consecutive jobs: the searched key varies fastest, labels include it.
    assert_eq!(
        labels(&jobs),
        [
            "d_state=8 seq_len=64",
            "d_state=8 seq_len=128",
            "d_state=8 seq_len=256",
            "d_state=16 seq_len=64",
            "d_state=16 seq_len=128",
            "d_state=16 seq_len=256"
        ]
    );
    let es = jobs[0].config.early_stop.as_ref().unwrap();
    assert_eq!(es.criterion, search.spec.criterion);
    assert!(es.stop_when);
    // Early stopping needs evaluations during training to stop at.
    let (_dir, loaded) = load(&text.replace("evals_at: [0.5]\n", ""));
    let e = expand(&loaded.unwrap(), 100).unwrap_err().to_string();
    assert!(e.contains("early_stop") && e.contains("evals_at"), "{e}");
}

#[test]
fn search_errors_point_at_the_search_block() {
    let base = "evals:\n  - {kind: loss, source: corpus, len: 1024, bucket: 64}\n";
    let e = error(&inline(&format!(
        "grid:\n  train.seq_len: [64, 128]\n{base}search:\n  key: train.seq_len\n  values: [64, 128]\n  criterion: {{test: collapsed}}\n"
    )));
    assert!(e.contains("set twice"), "{e}");
    let e = error(&inline(&format!("{base}search:\n  key: train.seq_len\n  values: [128, 64]\n  criterion: {{test: collapsed}}\n")));
    assert!(e.contains(":14:3: key `search.values`") && e.contains("strictly ascending"), "{e}");
    let e = error(&inline(&format!(
        "{base}search:\n  key: train.seq_len\n  values: [64, 128]\n  criterion: {{test: passkey, len: 64, accuracy: 0.9}}\n"
    )));
    assert!(e.contains("search.criterion") && e.contains("has none"), "{e}");
    let e = error(&inline(&format!(
        "{base}search:\n  key: train.seq_len\n  values: [64, 128]\n  criterion: {{test: collapsed}}\n  budgt: 3\n"
    )));
    assert!(e.contains("budgt"), "{e}");
}

#[test]
fn sweep_evals_at_sets_every_job_and_a_bad_point_is_located_in_the_sweep() {
    let evals = "evals:\n  - {kind: loss, len: 512}\n";
    let j = jobs(&inline(&format!("grid:\n  model.d_state: [8, 16]\n{evals}evals_at: [0.5, {{tokens: 4096}}]\n")));
    assert!(j.iter().all(|j| j.config.eval_steps() == [2, 5]), "{:?}", j[0].config.evals_at);
    // Without evals_at, ids stay those of before (the key is left out of the canonical config).
    let plain = jobs(&inline(&format!("grid:\n  model.d_state: [8, 16]\n{evals}")));
    let empty = jobs(&inline(&format!("grid:\n  model.d_state: [8, 16]\n{evals}evals_at: []\n")));
    assert_eq!(plain.iter().map(|j| &j.id).collect::<Vec<_>>(), empty.iter().map(|j| &j.id).collect::<Vec<_>>());
    assert_ne!(plain[0].id, j[0].id);
    let e = error(&inline(&format!("{evals}evals_at: [0.5, 2.5]\n")));
    assert!(e.starts_with("x.yaml:12:") && e.contains("`evals_at[1]`") && e.contains("fraction 2.5"), "{e}");
}

/// Issue 23: the continued pre-training example starts every job from the official checkpoint
/// in the hub cache, at three training lengths, with the official models' tokenizer (here a
/// stand-in tokenizer.json in a fake hub cache: the only test of this binary that reads
/// HF_HUB_CACHE).
#[test]
fn continued_pretraining_example_starts_from_the_hub_checkpoint() {
    let hub = tempfile::tempdir().unwrap();
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let repo = hub.path().join("models--EleutherAI--gpt-neox-20b");
    write(&repo, "refs/main", sha);
    let vocab = r#"{"<|endoftext|>": 0, "[UNK]": 1}"#;
    let tok = format!(
        r#"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null, "pre_tokenizer": null,
            "post_processor": null, "decoder": null, "model": {{"type": "WordLevel", "vocab": {vocab}, "unk_token": "[UNK]"}}}}"#
    );
    write(&repo, &format!("snapshots/{sha}/tokenizer.json"), &tok);
    std::env::set_var("HF_HUB_CACHE", hub.path());
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sweeps/paper/continued-pretraining.yaml");
    let jobs = expand(&SweepSpec::load(&path).unwrap(), 100).unwrap();
    let lens: Vec<i64> = jobs.iter().map(|j| j.config.train.seq_len).collect();
    assert_eq!(lens, [4096, 16384, 65536]);
    for j in &jobs {
        assert_eq!(j.config.init_from.as_deref(), Some(Path::new("hf:state-spaces/mamba2-130m")));
        assert_eq!(j.config.tokenizer, "hf:EleutherAI/gpt-neox-20b");
        assert_eq!(j.config.model.preset.as_deref(), Some("130m"));
    }
}
