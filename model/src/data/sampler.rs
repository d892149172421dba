//! Training batches as the paper builds them: documents concatenated with EOS into sequences
//! of exactly seq_len (+1 for the shifted targets), optionally mixed with synthetic passkey
//! prompts (loss on the answer only). Each batch row is its own stream over the shuffled
//! documents (row r takes documents r, r+B, r+2B, ... of each epoch's permutation) and
//! consecutive windows of a row overlap by one token, so truncated BPTT can carry a row's
//! state from one segment to the next. The whole position is a small serialisable state:
//! resuming from it continues exactly.
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::data::corpus::{Corpus, Split};
use crate::data::passkey::{PasskeyFormat, PasskeyTemplate};
use crate::data::probes;
use crate::rng::Rng;
use crate::tokenizer::Tokenizer;
use crate::train::{Batch, IGNORE};
use crate::{Error, Result};

/// Sources a training sample can come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Corpus,
    Passkey,
    Newlines,
}

/// One entry of a data mixture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixtureItem {
    pub source: SourceKind,
    pub weight: f64,
    /// Passkey prompts: shortest prompt length (default: the template's minimum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_len: Option<i64>,
    /// Passkey prompts: the generator (`authors`, the default, or `exact`). Written out for
    /// passkey sources so that job ids tell the two apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PasskeyFormat>,
}

/// Where one row of the batch stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RowCursor {
    /// Documents this row has started (its k-th document is global index row + k * B).
    pub doc: u64,
    /// Tokens of the current document already consumed (== its length: EOS comes next).
    pub offset: u64,
    /// Last token of the previous window: the first input of the next one.
    pub carry: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplerState {
    pub rows: Vec<RowCursor>,
    pub rng: Rng,
    pub batches: u64,
}

pub struct Sampler<'a> {
    corpus: &'a Corpus,
    docs: Vec<usize>,
    seq_len: usize,
    batch: usize,
    seed: u64,
    mixture: Vec<MixtureItem>,
    passkey: Option<PasskeyTemplate<'a>>,
    newline: Vec<u32>,
    perm_cache: Option<(u64, Vec<usize>)>,
    pub state: SamplerState,
}

impl<'a> Sampler<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        corpus: &'a Corpus,
        tok: &'a Tokenizer,
        split: Split,
        seq_len: usize,
        batch: usize,
        min_doc_tokens: usize,
        mixture: &[MixtureItem],
        seed: u64,
    ) -> Result<Sampler<'a>> {
        let docs: Vec<usize> = corpus.docs(split).filter(|&d| corpus.doc_len(d) >= min_doc_tokens.max(1)).collect();
        let needs_corpus = mixture.is_empty() || mixture.iter().any(|m| m.source == SourceKind::Corpus && m.weight > 0.0);
        if docs.is_empty() && needs_corpus {
            return Err(Error::at(
                &corpus.dir,
                format!("no {split:?} documents of at least {min_doc_tokens} tokens"),
            ));
        }
        if mixture.iter().any(|m| !(m.weight >= 0.0 && m.weight.is_finite())) || (!mixture.is_empty() && mixture.iter().all(|m| m.weight == 0.0)) {
            return Err(Error::Data("data.mixture weights must be non-negative with a positive sum".into()));
        }
        let format = mixture.iter().find(|m| m.source == SourceKind::Passkey).map(|m| m.template.unwrap_or_default());
        let passkey = format.map(|f| PasskeyTemplate::new(tok, f));
        Ok(Sampler {
            corpus,
            docs,
            seq_len,
            batch,
            seed,
            mixture: mixture.to_vec(),
            passkey,
            newline: probes::newlines(tok, 1),
            perm_cache: None,
            state: SamplerState { rows: vec![RowCursor::default(); batch], rng: Rng::derive(seed, &[0xDA7A]), batches: 0 },
        })
    }

    /// The document a row's k-th document index refers to.
    fn doc_at(&mut self, row: usize, k: u64) -> usize {
        let n = self.docs.len() as u64;
        let g = row as u64 + k * self.batch as u64;
        let (epoch, i) = (g / n, (g % n) as usize);
        if self.perm_cache.as_ref().map(|(e, _)| *e) != Some(epoch) {
            let mut perm = self.docs.clone();
            Rng::derive(self.seed, &[0x5EED, epoch]).shuffle(&mut perm);
            self.perm_cache = Some((epoch, perm));
        }
        self.perm_cache.as_ref().expect("perm cached").1[i]
    }

    /// The next seq_len + 1 tokens of a row's stream.
    fn corpus_window(&mut self, row: usize) -> Vec<u32> {
        let need = self.seq_len + 1;
        let mut out = Vec::with_capacity(need);
        if let Some(c) = self.state.rows[row].carry {
            out.push(c);
        }
        while out.len() < need {
            let RowCursor { doc: k, offset, .. } = self.state.rows[row].clone();
            let d = self.doc_at(row, k);
            let len = self.corpus.doc_len(d) as u64;
            if offset >= len {
                out.push(self.corpus.eos());
                self.state.rows[row].doc = k + 1;
                self.state.rows[row].offset = 0;
                continue;
            }
            let take = (len - offset).min((need - out.len()) as u64);
            self.corpus.read(d, offset as usize, (offset + take) as usize, &mut out);
            self.state.rows[row].offset = offset + take;
        }
        self.state.rows[row].carry = out.last().copied();
        out
    }

    /// A passkey prompt with its answer, EOS-padded in front to seq_len + 1; only the answer
    /// tokens are targets.
    fn passkey_window(&mut self, min_len: Option<i64>) -> Result<(Vec<u32>, Vec<bool>)> {
        let tpl = self.passkey.as_ref().expect("passkey template for a passkey mixture");
        let passkey = tpl.draw_passkey(&mut self.state.rng);
        let answer_len = tpl.prompt(tpl.min_len(&passkey), 0.5, &passkey)?.answer.len();
        let max_len = self.seq_len + 1 - answer_len;
        let lo = (min_len.unwrap_or(0).max(0) as usize).max(tpl.min_len(&passkey));
        if lo > max_len {
            return Err(Error::Data(format!(
                "passkey prompts need at least {lo} tokens, longer than train.seq_len {} allows",
                self.seq_len
            )));
        }
        let len = lo + self.state.rng.below((max_len - lo + 1) as u64) as usize;
        let depth = self.state.rng.unit();
        let p = tpl.prompt(len, depth, &passkey)?;
        // `authors` prompts may be a little shorter than `len`: the EOS padding takes the rest.
        let pad = self.seq_len + 1 - p.tokens.len() - p.answer.len();
        let mut toks = vec![self.corpus.eos(); pad];
        toks.extend_from_slice(&p.tokens);
        toks.extend_from_slice(&p.answer);
        let mut scored = vec![false; toks.len()];
        for s in scored.iter_mut().rev().take(p.answer.len()) {
            *s = true;
        }
        Ok((toks, scored))
    }

    fn pick_source(&mut self) -> (SourceKind, Option<i64>) {
        if self.mixture.is_empty() {
            return (SourceKind::Corpus, None);
        }
        let total: f64 = self.mixture.iter().map(|m| m.weight).sum();
        let mut x = self.state.rng.unit() * total;
        for m in &self.mixture {
            if x < m.weight {
                return (m.source, m.min_len);
            }
            x -= m.weight;
        }
        let last = self.mixture.last().expect("non-empty mixture");
        (last.source, last.min_len)
    }

    /// The next batch: inputs [B, L] and targets [B, L] (IGNORE where not scored), on the CPU.
    pub fn next_batch(&mut self) -> Result<Batch> {
        let (b, l) = (self.batch, self.seq_len);
        let mut inputs = Vec::with_capacity(b * l);
        let mut targets = Vec::with_capacity(b * l);
        for row in 0..b {
            let (src, min_len) = self.pick_source();
            let (toks, scored) = match src {
                SourceKind::Corpus => (self.corpus_window(row), None),
                SourceKind::Newlines => (self.newline.iter().copied().cycle().take(l + 1).collect(), None),
                SourceKind::Passkey => {
                    let (t, s) = self.passkey_window(min_len)?;
                    (t, Some(s))
                }
            };
            inputs.extend(toks[..l].iter().map(|&t| t as i64));
            for i in 1..=l {
                let keep = scored.as_ref().is_none_or(|s| s[i]);
                targets.push(if keep { toks[i] as i64 } else { IGNORE });
            }
        }
        self.state.batches += 1;
        Ok(Batch {
            inputs: Tensor::from_slice(&inputs).view([b as i64, l as i64]),
            targets: Tensor::from_slice(&targets).view([b as i64, l as i64]),
        })
    }
}
