//! Training batches as the paper builds them: documents concatenated with EOS into sequences
//! of exactly seq_len (+1 for the shifted targets), optionally mixed with synthetic passkey
//! prompts (loss on the answer only). Each batch row is its own stream over the shuffled
//! documents (row r takes documents r, r+B, r+2B, ... of each epoch's permutation) and
//! consecutive windows of a row overlap by one token, so truncated BPTT can carry a row's
//! state from one segment to the next. The whole position is a small serialisable state:
//! resuming from it continues exactly. A `Selection` restricts or reweights the documents of a
//! cleaned corpus by kind (prose, code) and by source.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::data::clean::DocKind;
use crate::data::corpus::{Corpus, Split};
use crate::data::passkey::{PasskeyFormat, PasskeyTemplate};
use crate::data::probes;
use crate::rng::Rng;
use crate::tokenizer::Tokenizer;
use crate::train::{Batch, IGNORE};
use crate::{Error, Result};

/// Sources a training sample can come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Corpus,
    Passkey,
    Newlines,
}

/// One entry of a data mixture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// Passkey prompts: which tokens the loss scores (`answer`, the default: the answer only;
    /// `prompt`: the whole prompt and its answer, so a small model also learns the template
    /// and to copy the key inside the needle, a denser signal for the same skill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<PasskeyScore>,
}

/// Which tokens of a training passkey prompt the loss scores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PasskeyScore {
    /// The answer tokens only (the campaign's recall training).
    #[default]
    Answer,
    /// Every token of the prompt and the answer (not the EOS padding in front).
    Prompt,
}

/// Which documents of a cleaned corpus training draws, and how often.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// Only prose or only code documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only: Option<DocKind>,
    /// Weight per source name (`manifest.clean.sources[].name`); unnamed sources weigh 1, 0
    /// drops a source. A weight w repeats each document of the source floor(w) times, plus once
    /// more for a fraction w - floor(w) of them, so a source's token share scales with w.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_weights: BTreeMap<String, f64>,
}

impl Selection {
    pub fn is_all(&self) -> bool {
        self.only.is_none() && self.source_weights.is_empty()
    }
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
            return Err(Error::at(&corpus.dir, format!("no {split:?} documents of at least {min_doc_tokens} tokens")));
        }
        if mixture.iter().any(|m| !(m.weight >= 0.0 && m.weight.is_finite()))
            || (!mixture.is_empty() && mixture.iter().all(|m| m.weight == 0.0))
        {
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

    /// Restricts and reweights the documents drawn (a no-op for `Selection::default()`).
    pub fn with_selection(mut self, sel: &Selection) -> Result<Sampler<'a>> {
        if sel.is_all() {
            return Ok(self);
        }
        let names: Vec<String> =
            self.corpus.manifest.clean.as_ref().map(|c| c.sources.iter().map(|s| s.name.clone()).collect()).unwrap_or_default();
        if self.corpus.doc_source(0).is_none() && !self.docs.is_empty() {
            return Err(Error::at(
                &self.corpus.dir,
                "data.select needs a cleaned corpus (one with docs.bin: `stuffed corpus build --clean` or --preset large)",
            ));
        }
        for (name, w) in &sel.source_weights {
            if !names.contains(name) {
                return Err(Error::Data(format!(
                    "data.select.source_weights: no source '{name}' in this corpus (sources: {})",
                    names.join(", ")
                )));
            }
            if !(*w >= 0.0 && w.is_finite()) {
                return Err(Error::Data(format!("data.select.source_weights.{name} must be a non-negative number, got {w}")));
            }
        }
        let mut docs = Vec::with_capacity(self.docs.len());
        for &d in &self.docs {
            let Some((src, kind)) = self.corpus.doc_source(d) else { continue };
            if sel.only.is_some_and(|k| k != kind) {
                continue;
            }
            let w = names.get(src).and_then(|n| sel.source_weights.get(n)).copied().unwrap_or(1.0);
            let frac = Rng::derive(self.seed, &[0x5E1, d as u64]).unit();
            let copies = w.floor() as usize + usize::from(frac < w - w.floor());
            docs.extend(std::iter::repeat_n(d, copies));
        }
        if docs.is_empty() {
            return Err(Error::at(&self.corpus.dir, format!("data.select leaves no documents ({sel:?})")));
        }
        self.docs = docs;
        self.perm_cache = None;
        Ok(self)
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
    fn passkey_window(&mut self, min_len: Option<i64>, score: PasskeyScore) -> Result<(Vec<u32>, Vec<bool>)> {
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
        let take = match score {
            PasskeyScore::Answer => p.answer.len(),
            // the first prompt token has no predecessor in the window: scored from the second
            PasskeyScore::Prompt => p.tokens.len() + p.answer.len() - 1,
        };
        let mut scored = vec![false; toks.len()];
        for s in scored.iter_mut().rev().take(take) {
            *s = true;
        }
        Ok((toks, scored))
    }

    fn pick_source(&mut self) -> (SourceKind, Option<i64>, PasskeyScore) {
        if self.mixture.is_empty() {
            return (SourceKind::Corpus, None, PasskeyScore::Answer);
        }
        let total: f64 = self.mixture.iter().map(|m| m.weight).sum();
        let mut x = self.state.rng.unit() * total;
        for m in &self.mixture {
            if x < m.weight {
                return (m.source, m.min_len, m.score.unwrap_or_default());
            }
            x -= m.weight;
        }
        let last = self.mixture.last().expect("non-empty mixture");
        (last.source, last.min_len, last.score.unwrap_or_default())
    }

    /// The next batch: inputs [B, L] and targets [B, L] (IGNORE where not scored), on the CPU.
    pub fn next_batch(&mut self) -> Result<Batch> {
        let (b, l) = (self.batch, self.seq_len);
        let mut inputs = Vec::with_capacity(b * l);
        let mut targets = Vec::with_capacity(b * l);
        for row in 0..b {
            let (src, min_len, score) = self.pick_source();
            let (toks, scored) = match src {
                SourceKind::Corpus => (self.corpus_window(row), None),
                SourceKind::Newlines => (self.newline.iter().copied().cycle().take(l + 1).collect(), None),
                SourceKind::Passkey => {
                    let (t, s) = self.passkey_window(min_len, score)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::clean::Quality;
    use crate::data::corpus::{build, BuildOptions, InputSpec};
    use crate::data::pipeline::{self, PipelineOptions, SourceSpec};
    use std::path::Path;

    fn name(i: usize) -> String {
        let (a, b) = (b'a' + (i % 26) as u8, b'a' + (i / 26) as u8);
        format!("q{}{}", a as char, b as char)
    }

    /// Row r's input stream over `n` batches (consecutive windows continue each other).
    fn streams(s: &mut Sampler, n: usize) -> Vec<Vec<u32>> {
        let mut rows = vec![Vec::new(); s.batch];
        for _ in 0..n {
            let b = s.next_batch().expect("batch");
            let v: Vec<i64> = Vec::try_from(b.inputs.flatten(0, -1)).expect("ids");
            for (r, row) in v.chunks(s.seq_len).enumerate() {
                rows[r].extend(row.iter().map(|&t| t as u32));
            }
        }
        rows
    }

    #[test]
    fn sampling_concatenates_whole_documents_with_eos_and_skips_short_ones() {
        let dir = tempfile::tempdir().expect("tmp");
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).expect("mkdir");
        // Document i is one letter repeated; lengths 10..=200, letters distinct.
        let lens: Vec<usize> = (0..20).map(|i| 10 + i * 10).collect();
        for (i, l) in lens.iter().enumerate() {
            std::fs::write(src.join(format!("{i:02}.txt")), ((b'A' + i as u8) as char).to_string().repeat(*l)).expect("write");
        }
        let out = dir.path().join("c");
        let opts = BuildOptions {
            inputs: vec![InputSpec { path: src, include: vec![], exclude: vec![] }],
            field: "text".into(),
            min_doc_tokens: 1,
            val_fraction: 0.0,
        };
        let tok = Tokenizer::Bytes;
        build(&tok, &opts, &out, &|_, _, _| {}).expect("build");
        let corpus = Corpus::open(&out).expect("open");
        let min = 100;
        let mut s = Sampler::new(&corpus, &tok, Split::Train, 64, 2, min, &[], 7).expect("sampler");
        let eos = tok.eos();
        for row in streams(&mut s, 80) {
            // Split at EOS: every piece strictly inside the stream is one whole document.
            let pieces: Vec<&[u32]> = row.split(|&t| t == eos).collect();
            assert!(pieces.len() > 4);
            for p in &pieces[1..pieces.len() - 1] {
                let letter = p[0];
                assert!(p.iter().all(|&t| t == letter), "a document interleaved with another");
                let i = (letter - b'A' as u32) as usize;
                assert_eq!(p.len(), lens[i], "document {i} cut or padded");
                assert!(lens[i] >= min, "document {i} is shorter than min_doc_tokens");
            }
        }
    }

    fn cleaned(dir: &Path) -> std::path::PathBuf {
        let prose = dir.join("prose");
        let code = dir.join("code");
        std::fs::create_dir_all(&prose).expect("mkdir");
        std::fs::create_dir_all(&code).expect("mkdir");
        for i in 0..12 {
            std::fs::write(prose.join(format!("{i}.txt")), format!("{} river stone\n", name(i)).repeat(30)).expect("write");
            std::fs::write(
                code.join(format!("{i}.c")),
                format!("INT {}X = {}Y;\n", name(i).to_uppercase(), name(i).to_uppercase()).repeat(30),
            )
            .expect("write");
        }
        let spec = |n: &str, root: std::path::PathBuf| SourceSpec {
            name: n.into(),
            version: "1".into(),
            license: "MIT".into(),
            kind: DocKind::Prose,
            root,
            include: vec![],
            exclude: vec![],
        };
        let opts = PipelineOptions {
            sources: vec![spec("prose", prose), spec("code", code)],
            field: "text".into(),
            quality: Quality { min_bytes: 16 },
            max_doc_bytes: 1 << 20,
            min_doc_tokens: 1,
            val_fraction: 0.0,
            val_long_tokens: 1 << 20,
            val_long_docs: 0,
            only: None,
            gpt2_sample: 0,
            shard_bytes: 1 << 20,
            stop_after_shards: None,
        };
        let out = dir.join("c");
        pipeline::build(&Tokenizer::Bytes, &opts, &out, &|_| {}).expect("build");
        out
    }

    #[test]
    fn selection_keeps_one_kind_and_weights_sources() {
        let dir = tempfile::tempdir().expect("tmp");
        let out = cleaned(dir.path());
        let corpus = Corpus::open(&out).expect("open");
        let tok = Tokenizer::Bytes;
        let new = || Sampler::new(&corpus, &tok, Split::Train, 32, 2, 0, &[], 1).expect("sampler");
        assert_eq!(new().docs.len(), 24);
        let only_code = Selection { only: Some(DocKind::Code), ..Default::default() };
        let mut s = new().with_selection(&only_code).expect("select");
        assert_eq!(s.docs.len(), 12);
        for row in streams(&mut s, 20) {
            assert!(row.iter().all(|&t| !(b'a' as u32..=b'z' as u32).contains(&t)), "prose drawn under only: code");
        }
        let weights =
            Selection { only: None, source_weights: [("prose".to_string(), 3.0), ("code".to_string(), 0.5)].into_iter().collect() };
        let s = new().with_selection(&weights).expect("select");
        let prose = s.docs.iter().filter(|&&d| corpus.doc_source(d).map(|x| x.1) == Some(DocKind::Prose)).count();
        assert_eq!(prose, 36);
        assert!(s.docs.len() - prose < 12);
        let typo = Selection { only: None, source_weights: [("prosee".to_string(), 1.0)].into_iter().collect() };
        assert!(new().with_selection(&typo).is_err());
        let none = Selection { only: None, source_weights: [("prose".to_string(), 0.0), ("code".to_string(), 0.0)].into_iter().collect() };
        assert!(new().with_selection(&none).is_err());
    }

    #[test]
    fn passkey_prompts_score_the_answer_or_the_whole_prompt() {
        let dir = tempfile::tempdir().expect("tmp");
        let out = cleaned(dir.path());
        let corpus = Corpus::open(&out).expect("open");
        let tok = Tokenizer::Bytes;
        let item = |score| MixtureItem { source: SourceKind::Passkey, weight: 1.0, min_len: None, template: None, score };
        for score in [None, Some(PasskeyScore::Answer), Some(PasskeyScore::Prompt)] {
            let mut s = Sampler::new(&corpus, &tok, Split::Train, 256, 4, 0, &[item(score)], 3).expect("sampler");
            let b = s.next_batch().expect("batch");
            let t: Vec<i64> = Vec::try_from(b.targets.flatten(0, -1)).expect("ids");
            for row in t.chunks(256) {
                let first = row.iter().position(|&x| x != IGNORE).expect("something scored");
                assert!(row[first..].iter().all(|&x| x != IGNORE), "the scored tokens are one run at the end");
                let scored = row.len() - first;
                match score.unwrap_or_default() {
                    PasskeyScore::Answer => assert!((5..=8).contains(&scored), "answer only: {scored}"),
                    PasskeyScore::Prompt => assert!(scored > 150, "the whole prompt: {scored}"),
                }
            }
        }
    }
}
