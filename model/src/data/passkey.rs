//! Passkey retrieval prompts exactly as the paper's appendix B.1, for any tokenizer, seeded:
//!
//! ```text
//! There is important info hidden inside a lot of irrelevant text. Find it and memorize it.
//! The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.   (repeated)
//! The passkey is 34847. Remember it. 34847 is the passkey.                                   (at depth d)
//! The grass is green. ... (repeated)
//! What is the passkey? The passkey is
//! ```
//!
//! The prompt is assembled from separately tokenized pieces, so its length in tokens is exact
//! by construction: whole filler blocks, then whole filler sentences, then single spaces fill
//! the length; the needle replaces the filler block at index round(d * (blocks - 1)).
use serde::Serialize;

use crate::rng::Rng;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

pub const INTRO: &str = "There is important info hidden inside a lot of irrelevant text. Find it and memorize it.\n";
pub const FILLER_SENTENCES: [&str; 5] =
    ["The grass is green. ", "The sky is blue. ", "The sun is yellow. ", "Here we go. ", "There and back again.\n"];
pub const QUESTION: &str = "What is the passkey? The passkey is";

pub fn needle(passkey: &str) -> String {
    format!("The passkey is {passkey}. Remember it. {passkey} is the passkey.\n")
}

/// One prompt with its answer.
#[derive(Debug, Clone, Serialize)]
pub struct PasskeyPrompt {
    pub passkey: String,
    pub depth: f64,
    /// Token ids of the prompt (exactly the requested length).
    #[serde(skip)]
    pub tokens: Vec<u32>,
    pub len: usize,
    /// Token index where the needle starts.
    pub needle_position: usize,
    /// Filler blocks (the needle counts as one).
    pub blocks: usize,
    /// Token ids of the answer continuation (" 34847").
    #[serde(skip)]
    pub answer: Vec<u32>,
}

/// The token pieces of the template for one tokenizer, computed once.
pub struct PasskeyTemplate<'a> {
    tok: &'a Tokenizer,
    intro: Vec<u32>,
    sentences: Vec<Vec<u32>>,
    block: Vec<u32>,
    question: Vec<u32>,
    space: Vec<u32>,
}

impl<'a> PasskeyTemplate<'a> {
    pub fn new(tok: &'a Tokenizer) -> Self {
        let sentences: Vec<Vec<u32>> = FILLER_SENTENCES.iter().map(|s| tok.encode(s)).collect();
        let block = sentences.concat();
        PasskeyTemplate {
            intro: tok.encode(INTRO),
            block,
            sentences,
            question: tok.encode(QUESTION),
            space: tok.encode(" "),
            tok,
        }
    }

    /// The shortest prompt length this template supports for `passkey`.
    pub fn min_len(&self, passkey: &str) -> usize {
        self.intro.len() + self.tok.encode(&needle(passkey)).len() + self.question.len()
    }

    /// A random 5-digit passkey (10000..99999) from `rng`.
    pub fn draw_passkey(rng: &mut Rng) -> String {
        (10000 + rng.below(90000)).to_string()
    }

    /// A prompt of exactly `len` tokens with the needle at `depth` in [0, 1].
    pub fn prompt(&self, len: usize, depth: f64, passkey: &str) -> Result<PasskeyPrompt> {
        if !(0.0..=1.0).contains(&depth) {
            return Err(Error::Data(format!("passkey depth must be within [0, 1], got {depth}")));
        }
        if len as u64 > crate::limits::MAX_SEQ_LEN as u64 {
            return Err(Error::Data(format!("passkey length {len} is larger than the limit {}", crate::limits::MAX_SEQ_LEN)));
        }
        let needle_ids = self.tok.encode(&needle(passkey));
        let min = self.min_len(passkey);
        if len < min {
            return Err(Error::Data(format!(
                "passkey length {len} is shorter than the template itself ({min} tokens with tokenizer {})",
                self.tok.spec()
            )));
        }
        // Room for the haystack: whole blocks (the needle is one of them), then whole sentences
        // and single spaces for the remainder.
        let room = len - self.intro.len() - self.question.len() - needle_ids.len();
        let filler_blocks = room / self.block.len();
        let mut rest = room - filler_blocks * self.block.len();
        let blocks = filler_blocks + 1;
        let needle_index = (depth * (blocks - 1) as f64).round() as usize;

        let mut tokens = Vec::with_capacity(len);
        tokens.extend_from_slice(&self.intro);
        let mut needle_position = 0;
        for i in 0..blocks {
            if i == needle_index {
                needle_position = tokens.len();
                tokens.extend_from_slice(&needle_ids);
            } else {
                tokens.extend_from_slice(&self.block);
            }
        }
        for s in self.sentences.iter().cycle() {
            if s.len() > rest || s.is_empty() {
                break;
            }
            tokens.extend_from_slice(s);
            rest -= s.len();
        }
        for _ in 0..rest / self.space.len().max(1) {
            tokens.extend_from_slice(&self.space);
        }
        tokens.extend_from_slice(&self.question);
        if tokens.len() != len {
            return Err(Error::Data(format!(
                "cannot fill a passkey prompt of exactly {len} tokens with tokenizer {} (got {})",
                self.tok.spec(),
                tokens.len()
            )));
        }
        Ok(PasskeyPrompt {
            passkey: passkey.to_string(),
            depth,
            tokens,
            len,
            needle_position,
            blocks,
            answer: self.tok.encode(&format!(" {passkey}")),
        })
    }
}

/// Scoring as the paper: the prompt counts as retrieved when the greedy continuation contains
/// the passkey.
pub fn is_retrieved(continuation: &str, passkey: &str) -> bool {
    continuation.contains(passkey)
}
