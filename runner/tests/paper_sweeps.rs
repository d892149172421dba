//! The paper and reproduction sweeps can produce their laws (issue 17): each expands and
//! validates; at least 4 state sizes above 0.86M (where the T_forget law is positive); every
//! loss bucket at most T / 4 (the verdict drops the first and last bucket and needs buckets
//! within T); training lengths that bracket the predicted T_forget, passkey grids that bracket
//! the predicted T_recall; a learning-rate grid and seeds.
use std::collections::BTreeSet;
use std::path::Path;

use stuffed::sweep::{expand, SweepSpec};
use stuffed_model::train::config::EvalSpec;
use stuffed_model::Tokenizer;

fn t_forget_k(s_m: f64) -> f64 {
    5.172 * s_m - 4.469
}

fn t_recall_k(s_m: f64) -> f64 {
    4.756 * (1.365f64.powf(s_m) - 1.0) - 0.742
}

struct Job {
    s_m: f64,
    seq_len: i64,
    lr: f64,
    seed: u64,
    buckets: Vec<i64>,
    passkey_lengths: Vec<i64>,
}

fn jobs(file: &str) -> Vec<Job> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(file);
    let loaded = SweepSpec::load(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    expand(&loaded, 10_000)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .into_iter()
        .map(|j| {
            let c = &j.config;
            let vocab = Tokenizer::from_spec(&c.tokenizer).unwrap().vocab_size();
            let s = c.model.resolve(Some(vocab)).unwrap().state_size();
            let mut buckets = Vec::new();
            let mut passkey_lengths = Vec::new();
            for e in &c.evals {
                match e {
                    EvalSpec::Loss(l) => buckets.push(l.bucket),
                    EvalSpec::Passkey(p) => passkey_lengths.extend(&p.lengths),
                    EvalSpec::States(_) => {}
                }
            }
            Job { s_m: s as f64 / 1e6, seq_len: c.train.seq_len, lr: c.train.lr, seed: c.train.seed, buckets, passkey_lengths }
        })
        .collect()
}

fn common_checks(file: &str, jobs: &[Job]) -> BTreeSet<u64> {
    for j in jobs {
        assert!(!j.buckets.is_empty(), "{file}: a loss eval per job");
        for &b in &j.buckets {
            assert!(b > 0 && 4 * b <= j.seq_len, "{file}: bucket {b} > T / 4 at T = {}", j.seq_len);
        }
    }
    let lrs: BTreeSet<u64> = jobs.iter().map(|j| j.lr.to_bits()).collect();
    let seeds: BTreeSet<u64> = jobs.iter().map(|j| j.seed).collect();
    assert!(lrs.len() >= 2, "{file}: a learning-rate grid");
    assert!(seeds.len() >= 2, "{file}: seeds");
    let sizes: BTreeSet<u64> = jobs.iter().filter(|j| j.s_m > 0.86).map(|j| j.s_m.to_bits()).collect();
    assert!(sizes.len() >= 4, "{file}: {} state sizes above 0.86M", sizes.len());
    sizes
}

#[test]
fn forget_sweeps_bracket_the_linear_law() {
    for file in ["sweeps/paper/forget-threshold.yaml", "sweeps/repro/forget-threshold.yaml"] {
        let jobs = jobs(file);
        for s in common_checks(file, &jobs) {
            let s = f64::from_bits(s);
            let lens: Vec<i64> = jobs.iter().filter(|j| j.s_m == s).map(|j| j.seq_len).collect();
            let want = t_forget_k(s) * 1000.0;
            let (lo, hi) = (*lens.iter().min().unwrap() as f64, *lens.iter().max().unwrap() as f64);
            assert!(lo < want && want < hi, "{file}: S = {s}M predicts T_forget {want}, lengths {lo}..{hi}");
        }
    }
}

#[test]
fn recall_sweeps_bracket_the_exponential_law() {
    for file in ["sweeps/paper/recall-capacity.yaml", "sweeps/repro/recall-capacity.yaml"] {
        let jobs = jobs(file);
        common_checks(file, &jobs);
        for j in jobs.iter().filter(|j| j.s_m > 0.86) {
            let want = t_recall_k(j.s_m) * 1000.0;
            let (lo, hi) = (*j.passkey_lengths.iter().min().unwrap() as f64, *j.passkey_lengths.iter().max().unwrap() as f64);
            assert!(lo < want && want < hi, "{file}: S = {}M predicts T_recall {want}, grid {lo}..{hi}", j.s_m);
            assert!(j.passkey_lengths.len() >= 32, "{file}: a fine length grid");
        }
    }
}
