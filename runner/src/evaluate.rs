//! Running one evaluation and building its typed result: the one place shared by sweep jobs
//! (`job.rs`) and `stuffed eval`, so both store the same [`EvalResult`] for the same
//! parameters. The parameters are the result's own (`LossParams`, ...): whatever asked for
//! the evaluation fills them in, this module turns them into the model's evaluation configs.
use stuffed_model::data::{probes, Corpus};
use stuffed_model::eval::length_search::LengthGrid;
use stuffed_model::eval::{self, LossEval, Mitigation, PasskeyEval, StatesEval};
use stuffed_model::protocol::eval::{LossParams, LossResult, PasskeyParams, PasskeyResult, StatesParams, StatesResult};
use stuffed_model::train::config::EvalSource;
use stuffed_model::train::PrecisionExt;
use stuffed_model::{Mamba2LM, Tokenizer};

/// Prompts side by side in one forward batch of a loss evaluation.
pub const LOSS_BATCH: usize = 8;
/// Prompts per forward batch of a passkey evaluation.
pub const PASSKEY_BATCH: usize = 16;
/// Tokens per streamed forward call of a passkey evaluation.
pub const PASSKEY_CHUNK: i64 = 4096;
/// Bins of the state-channel histogram.
pub const HIST_BINS: usize = 41;

/// `n` evenly spaced needle depths d_i = (i + 0.5) / n.
pub fn even_depths(n: usize) -> Vec<f64> {
    (0..n).map(|i| (i as f64 + 0.5) / n as f64).collect()
}

/// Tokens generated for a passkey answer: a five-digit key after a space, and two spare.
pub fn answer_tokens(tok: &Tokenizer) -> i64 {
    tok.encode(" 12345").len() as i64 + 2
}

/// Evaluation prompts of `n` x `len` tokens, each from its own held-out document of at least
/// `min_doc` tokens of `corpus`, or the newline probe; with the number of distinct documents
/// behind them (none for the probe).
pub fn prompts(
    source: EvalSource,
    corpus: &std::path::Path,
    tok: &Tokenizer,
    len: usize,
    n: usize,
    min_doc: i64,
) -> anyhow::Result<(Vec<Vec<u32>>, Option<usize>)> {
    Ok(match source {
        EvalSource::Newlines => (vec![probes::newlines(tok, len); n], None),
        EvalSource::Corpus => {
            let p = Corpus::open(corpus)?.val_prompts(len, n, min_doc.max(0) as usize)?;
            (p.prompts, Some(p.documents))
        }
    })
}

/// The name a source is stored under.
pub fn source_name(s: EvalSource) -> &'static str {
    match s {
        EvalSource::Corpus => "corpus",
        EvalSource::Newlines => "newlines",
    }
}

/// Loss by position over `prompts`; also returns the per-position losses when `per_token`.
pub fn loss(lm: &Mamba2LM, prompts: &[Vec<u32>], params: LossParams, per_token: bool) -> anyhow::Result<(LossResult, Option<Vec<f64>>)> {
    loss_with_progress(lm, prompts, params, per_token, &eval::no_progress)
}

/// `loss`, reporting the tokens scored so far (a progress bar).
pub fn loss_with_progress(
    lm: &Mamba2LM,
    prompts: &[Vec<u32>],
    params: LossParams,
    per_token: bool,
    progress: eval::Progress,
) -> anyhow::Result<(LossResult, Option<Vec<f64>>)> {
    let cfg = LossEval {
        chunk: params.chunk,
        bucket: params.bucket,
        batch: LOSS_BATCH,
        train_len: params.train_len,
        kind: params.precision.kind(lm.device()),
        mitigation: params.mitigation.parse::<Mitigation>()?,
        per_token,
        // The probe (and a single text) is one fixed input: no sampling over prompts.
        probe: params.source != "corpus",
    };
    let c = eval::loss::run_with_progress(lm, prompts, &cfg, progress)?;
    let result = LossResult {
        params,
        buckets: c.buckets,
        collapse: c.collapse,
        mean_loss: Some(c.mean_loss),
        tokens: c.tokens,
        wall_s: c.wall_s,
        tokens_per_s: c.tokens_per_s,
        prompt_buckets: c.prompt_buckets,
    };
    Ok((result, c.per_token))
}

/// Passkey accuracy over lengths x depths and T_recall; with `params.search`, T_recall by
/// bisection over that range (then `params.lengths` become the lengths it probed, ascending).
pub fn passkey(lm: &Mamba2LM, tok: &Tokenizer, params: PasskeyParams, train_len: Option<i64>) -> anyhow::Result<PasskeyResult> {
    passkey_with_progress(lm, tok, params, train_len, &eval::no_progress)
}

/// `passkey`, reporting the prompt tokens read so far (a progress bar; a length search reports
/// nothing: its probes are not known in advance).
pub fn passkey_with_progress(
    lm: &Mamba2LM,
    tok: &Tokenizer,
    mut params: PasskeyParams,
    train_len: Option<i64>,
    progress: eval::Progress,
) -> anyhow::Result<PasskeyResult> {
    let cfg = PasskeyEval {
        lengths: params.lengths.clone(),
        depths: params.depths.clone(),
        n: params.n,
        seed: params.seed,
        kind: params.precision.kind(lm.device()),
        mitigation: params.mitigation.parse::<Mitigation>()?,
        answer_tokens: params.answer_tokens as usize,
        batch: PASSKEY_BATCH,
        chunk: PASSKEY_CHUNK,
        train_len,
        template: params.template,
        recall_rule: params.recall_rule,
    };
    let r = match params.search {
        None => eval::passkey::run_with_progress(lm, tok, &cfg, progress)?,
        Some(range) => {
            let grid = LengthGrid::new(range).map_err(|(key, msg)| anyhow::anyhow!("passkey length search: {key} {msg}"))?;
            let r = eval::passkey::run_search(lm, tok, &cfg, &grid)?;
            params.lengths = r.accuracy_by_len.iter().map(|a| a.len).collect();
            r
        }
    };
    Ok(PasskeyResult {
        params,
        cells: r.cells,
        accuracy_by_len: r.accuracy_by_len,
        t_recall: r.t_recall,
        t_recall_mean: r.t_recall_mean,
        t_recall_strict: r.t_recall_strict,
        t_recall_per_depth: r.t_recall_per_depth,
        search: r.search,
        wall_s: r.wall_s,
        tokens_per_s: r.tokens_per_s,
    })
}

/// Per-head state statistics along `prompts` (always in fp32: the paper's analyses).
pub fn states(lm: &Mamba2LM, prompts: &[Vec<u32>], params: StatesParams) -> anyhow::Result<StatesResult> {
    states_with_progress(lm, prompts, params, &eval::no_progress)
}

/// `states`, reporting the positions streamed so far to `progress`.
pub fn states_with_progress(
    lm: &Mamba2LM,
    prompts: &[Vec<u32>],
    params: StatesParams,
    progress: eval::Progress,
) -> anyhow::Result<StatesResult> {
    let cfg = StatesEval {
        bucket: params.bucket,
        kind: tch::Kind::Float,
        mitigation: params.mitigation.parse::<Mitigation>()?,
        hist_layer: params.hist_layer,
        hist_head: params.hist_head,
        hist_positions: params.hist_positions.clone(),
        hist_bins: HIST_BINS,
        train_len: params.train_len,
    };
    let r = eval::states::run_with_progress(lm, prompts, &cfg, progress)?;
    Ok(StatesResult { params, positions: r.positions, layers: r.layers, histogram: r.histogram, wall_s: r.wall_s })
}
