//! Evaluations: streaming loss equals the whole-sequence loss, passkey prompts are exact,
//! mitigations with neutral parameters change nothing.
use stuffed_model::data::passkey::{PasskeyFormat, PasskeyTemplate, INTRO, QUESTION};
use stuffed_model::eval::{loss, LossEval, Mitigation};
use stuffed_model::rng::Rng;
use stuffed_model::{Exec, Mamba2LM, ModelSpec, Tokenizer};
use tch::{Device, Kind, Tensor};

fn model() -> Mamba2LM {
    let cfg = ModelSpec {
        d_model: Some(32),
        n_layer: Some(2),
        d_state: Some(8),
        headdim: Some(16),
        chunk_size: Some(16),
        vocab_size: Some(257),
        ..Default::default()
    }
    .resolve(None)
    .unwrap();
    Mamba2LM::seeded(&cfg, Device::Cpu, 21).unwrap()
}

fn prompt(len: usize, seed: u64) -> Vec<u32> {
    let mut r = Rng::new(seed);
    (0..len).map(|_| r.below(257) as u32).collect()
}

fn cfg(chunk: i64, mitigation: Mitigation) -> LossEval {
    LossEval { chunk, bucket: 16, batch: 4, train_len: Some(32), kind: Kind::Float, mitigation, per_token: true, probe: false }
}

#[test]
fn streaming_loss_equals_whole_sequence_loss() {
    let lm = model();
    let p = prompt(131, 1);
    let toks = Tensor::from_slice(&p.iter().map(|&t| t as i64).collect::<Vec<_>>()).view([1, 131]);
    let whole = tch::no_grad(|| {
        let logits = lm.forward(&toks.narrow(1, 0, 130), None, &mut Exec::new(Kind::Float));
        Vec::<f64>::try_from(Mamba2LM::token_losses(&logits, &toks.narrow(1, 1, 130)).reshape([-1]).to_kind(Kind::Double)).unwrap()
    });
    for chunk in [1, 7, 16, 50, 130, 1000] {
        let c = loss::run(&lm, std::slice::from_ref(&p), &cfg(chunk, Mitigation::None)).unwrap();
        let per = c.per_token.unwrap();
        assert_eq!(per.len(), 130);
        let diff = per.iter().zip(&whole).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(diff <= 1e-4, "chunk {chunk}: max diff {diff}");
    }
}

fn per_token(lm: &Mamba2LM, ps: &[Vec<u32>], chunk: i64, m: Mitigation) -> Vec<f64> {
    loss::run(lm, ps, &cfg(chunk, m)).unwrap().per_token.unwrap()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn neutral_mitigations_equal_none() {
    let lm = model();
    let ps = vec![prompt(97, 2), prompt(97, 3)];
    let base = per_token(&lm, &ps, 20, Mitigation::None);
    let rri = per_token(&lm, &ps, 20, Mitigation::Rri { decay: 1.0, b: 1.0 });
    assert!(max_diff(&base, &rri) <= 1e-5);
    let window = per_token(&lm, &ps, 20, Mitigation::SlidingWindow { r: 96 });
    assert!(max_diff(&base, &window) <= 1e-4, "sliding window r >= length: {}", max_diff(&base, &window));
    let window = per_token(&lm, &ps, 20, Mitigation::SlidingWindow { r: 500 });
    assert!(max_diff(&base, &window) <= 1e-4);
    let norm = per_token(&lm, &ps, 20, Mitigation::StateNorm { tau: Some(1e9), every: 8 });
    assert!(max_diff(&base, &norm) <= 1e-4);
    // And the non-neutral ones do change the outputs.
    let short = per_token(&lm, &ps, 20, Mitigation::SlidingWindow { r: 8 });
    assert!(max_diff(&base, &short) > 1e-3, "sliding window r = 8: {}", max_diff(&base, &short));
    let dt = per_token(&lm, &ps, 20, Mitigation::DtScale { c: 0.5 });
    assert!(max_diff(&base, &dt) > 1e-4, "dt scale 0.5: {}", max_diff(&base, &dt));
}

#[test]
fn sliding_window_is_independent_of_the_chunking() {
    // The window buffer and the window sums of log-decays carry across calls: streaming with
    // chunks of 1, 7 or the whole length must give the same losses.
    let lm = model();
    let ps = vec![prompt(90, 4)];
    let a = per_token(&lm, &ps, 7, Mitigation::SlidingWindow { r: 12 });
    let b = per_token(&lm, &ps, 90, Mitigation::SlidingWindow { r: 12 });
    let c = per_token(&lm, &ps, 1, Mitigation::SlidingWindow { r: 12 });
    assert!(max_diff(&a, &b) <= 1e-4, "chunk 7 vs 90: {}", max_diff(&a, &b));
    assert!(max_diff(&a, &c) <= 1e-4, "chunk 7 vs 1: {}", max_diff(&a, &c));
}

/// The exact prompt for seed 0, bytes tokenizer, 420 tokens, depth 0.5 (the template of the
/// paper's appendix B.1).
const GOLDEN: &str = "There is important info hidden inside a lot of irrelevant text. Find it and memorize it.\n\
The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n\
The passkey is 75700. Remember it. 75700 is the passkey.\n\
The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n\
The grass is green. The sky is blue. The sun is yellow.    \
What is the passkey? The passkey is";

#[test]
fn passkey_prompt_matches_golden_string() {
    let tok = Tokenizer::from_spec("bytes").unwrap();
    let tpl = PasskeyTemplate::new(&tok, PasskeyFormat::Exact);
    let key = tpl.draw_passkey(&mut Rng::new(0));
    let p = tpl.prompt(420, 0.5, &key).unwrap();
    assert_eq!(tok.decode(&p.tokens), GOLDEN);
    assert_eq!(p.passkey, "75700");
}

#[test]
fn passkey_lengths_are_exact_and_needle_sits_at_depth() {
    for spec in ["bytes", "gpt2"] {
        let tok = Tokenizer::from_spec(spec).unwrap();
        let tpl = PasskeyTemplate::new(&tok, PasskeyFormat::Exact);
        for (len, depth) in [(200, 0.0), (333, 0.25), (1000, 0.5), (4097, 0.9), (2500, 1.0)] {
            let p = tpl.prompt(len, depth, "12345").unwrap();
            assert_eq!(p.tokens.len(), len, "{spec} len {len}");
            let text = tok.decode(&p.tokens);
            assert!(text.starts_with(INTRO) && text.ends_with(QUESTION), "{spec}");
            // The needle is block round(d * (blocks - 1)).
            let intro = tok.encode(INTRO).len();
            let block = tpl_block_len(&tok);
            let expected = intro + ((depth * (p.blocks - 1) as f64).round() as usize) * block;
            assert_eq!(p.needle_position, expected, "{spec} len {len} depth {depth}");
            let needle_text = tok.decode(&p.tokens[p.needle_position..p.needle_position + 6]);
            assert!(needle_text.starts_with("The"), "{spec}: {needle_text}");
        }
        let min = tpl.min_len("12345");
        let err = tpl.prompt(min - 1, 0.5, "12345").unwrap_err().to_string();
        assert!(err.contains("shorter than the template"), "{err}");
    }
}

fn tpl_block_len(tok: &Tokenizer) -> usize {
    stuffed_model::data::passkey::FILLER_SENTENCES.iter().map(|s| tok.encode(s).len()).sum()
}

#[test]
fn buckets_accumulated_directly_equal_buckets_of_the_per_token_curve() {
    let lm = model();
    let ps = vec![prompt(101, 5), prompt(101, 6)];
    let mut c = cfg(30, Mitigation::None);
    let with = loss::run(&lm, &ps, &c).unwrap();
    c.per_token = false;
    let without = loss::run(&lm, &ps, &c).unwrap();
    assert_eq!(with.buckets.len(), without.buckets.len());
    for (a, b) in with.buckets.iter().zip(&without.buckets) {
        assert_eq!((a.start, a.end), (b.start, b.end));
        assert!((a.loss - b.loss).abs() < 1e-9);
    }
    assert!((with.mean_loss - without.mean_loss).abs() < 1e-9);
}
