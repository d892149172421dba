//! Passkey retrieval prompts for any tokenizer, seeded, in two formats:
//!
//! * `authors` (the default): the generator of the authors' released code
//!   (thunlp/stuffed-mamba, passkey-retrieval/passkey.py), text byte for byte:
//!
//!   ```text
//!   There is an important info hidden inside a lot of irrelevant text. Find it and memorize it.\n\n
//!   The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n   (block, repeated)
//!   The passkey is 34847. Remember it. 34847 is the passkey.\n                                   (replaces one block)
//!   \nWhat is the pass key? The passkey is
//!   ```
//!
//!   For a length T: blocks = floor((T - |prefix| - |suffix|) / |block|) with |x| the token
//!   count of each piece tokenized alone; the needle replaces block floor(d * (blocks - 1)); the
//!   whole text is then tokenized at once (as the authors do), so a prompt has at most about T
//!   tokens (exactly the sum of the pieces for the byte tokenizer). Keys are uniform over
//!   00000-99999.
//! * `exact`: the text of the paper's appendix B.1 (no "an", one newline after the intro,
//!   "What is the passkey?"), assembled from separately tokenized pieces so that its length is
//!   exactly T: whole blocks, then whole filler sentences, then single spaces; the needle
//!   replaces block round(d * (blocks - 1)); keys 10000-99999. The format of the earlier
//!   reproduction, kept as an option.
use serde::Serialize;

use crate::rng::Rng;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Which passkey generator (see the module comment).
pub use stuffed_protocol::eval::PasskeyFormat;

/// The authors' pieces (passkey-retrieval/passkey.py defaults).
pub mod authors {
    pub const PREFIX: &str = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it.\n\n";
    pub const BLOCK: &str = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n";
    pub const SUFFIX: &str = "\nWhat is the pass key? The passkey is";
}

pub const INTRO: &str = "There is important info hidden inside a lot of irrelevant text. Find it and memorize it.\n";
pub const FILLER_SENTENCES: [&str; 5] =
    ["The grass is green. ", "The sky is blue. ", "The sun is yellow. ", "Here we go. ", "There and back again.\n"];
pub const QUESTION: &str = "What is the passkey? The passkey is";

/// The needle block (the same text in both formats).
pub fn needle(passkey: &str) -> String {
    format!("The passkey is {passkey}. Remember it. {passkey} is the passkey.\n")
}

/// The authors' prompt text for `blocks` filler blocks with the needle at block `needle_index`.
pub fn authors_text(blocks: usize, needle_index: usize, passkey: &str) -> String {
    let n = needle(passkey);
    let mut s = String::with_capacity(authors::PREFIX.len() + blocks * authors::BLOCK.len() + authors::SUFFIX.len());
    s.push_str(authors::PREFIX);
    for i in 0..blocks {
        s.push_str(if i == needle_index { &n } else { authors::BLOCK });
    }
    s.push_str(authors::SUFFIX);
    s
}

/// The authors' block arithmetic: (blocks, needle block index) for a length budget `len` and
/// piece lengths in tokens; `None` when not even one block fits.
pub fn authors_layout(len: usize, prefix: usize, suffix: usize, block: usize, depth: f64) -> Option<(usize, usize)> {
    let blocks = len.checked_sub(prefix + suffix)? / block.max(1);
    if blocks == 0 {
        return None;
    }
    Some((blocks, (depth * (blocks - 1) as f64).floor() as usize))
}

/// One prompt with its answer.
#[derive(Debug, Clone, Serialize)]
pub struct PasskeyPrompt {
    pub passkey: String,
    pub depth: f64,
    /// Token ids of the prompt.
    #[serde(skip)]
    pub tokens: Vec<u32>,
    /// Its length in tokens (`authors`: at most about the requested length; `exact`: equal).
    pub len: usize,
    /// Token index where the needle starts (in piece tokens for `authors`).
    pub needle_position: usize,
    /// Filler blocks (the needle counts as one).
    pub blocks: usize,
    /// Index of the block the needle replaces.
    pub needle_index: usize,
    /// Token ids of the answer continuation (" 34847").
    #[serde(skip)]
    pub answer: Vec<u32>,
}

/// The token pieces of the template for one tokenizer, computed once.
pub struct PasskeyTemplate<'a> {
    tok: &'a Tokenizer,
    format: PasskeyFormat,
    intro: Vec<u32>,
    sentences: Vec<Vec<u32>>,
    block: Vec<u32>,
    question: Vec<u32>,
    space: Vec<u32>,
}

impl<'a> PasskeyTemplate<'a> {
    pub fn new(tok: &'a Tokenizer, format: PasskeyFormat) -> Self {
        let (intro, sentences, question) = match format {
            PasskeyFormat::Authors => (tok.encode(authors::PREFIX), vec![tok.encode(authors::BLOCK)], tok.encode(authors::SUFFIX)),
            PasskeyFormat::Exact => (tok.encode(INTRO), FILLER_SENTENCES.iter().map(|s| tok.encode(s)).collect(), tok.encode(QUESTION)),
        };
        let block = sentences.concat();
        PasskeyTemplate { format, intro, block, sentences, question, space: tok.encode(" "), tok }
    }

    pub fn format(&self) -> PasskeyFormat {
        self.format
    }

    /// The shortest prompt length this template supports for `passkey`.
    pub fn min_len(&self, passkey: &str) -> usize {
        match self.format {
            PasskeyFormat::Authors => {
                self.intro.len() + self.question.len() + self.block.len().max(self.tok.encode(&needle(passkey)).len())
            }
            PasskeyFormat::Exact => self.intro.len() + self.tok.encode(&needle(passkey)).len() + self.question.len(),
        }
    }

    /// A random passkey from `rng`: 00000-99999 (`authors`) or 10000-99999 (`exact`).
    pub fn draw_passkey(&self, rng: &mut Rng) -> String {
        match self.format {
            PasskeyFormat::Authors => format!("{:05}", rng.below(100_000)),
            PasskeyFormat::Exact => (10000 + rng.below(90000)).to_string(),
        }
    }

    /// A prompt for length `len` with the needle at `depth` in [0, 1].
    pub fn prompt(&self, len: usize, depth: f64, passkey: &str) -> Result<PasskeyPrompt> {
        if !(0.0..=1.0).contains(&depth) {
            return Err(Error::Data(format!("passkey depth must be within [0, 1], got {depth}")));
        }
        if len as u64 > crate::limits::MAX_SEQ_LEN as u64 {
            return Err(Error::Data(format!("passkey length {len} is larger than the limit {}", crate::limits::MAX_SEQ_LEN)));
        }
        let min = self.min_len(passkey);
        if len < min {
            return Err(Error::Data(format!(
                "passkey length {len} is shorter than the template itself ({min} tokens with tokenizer {})",
                self.tok.spec()
            )));
        }
        match self.format {
            PasskeyFormat::Authors => self.authors_prompt(len, depth, passkey),
            PasskeyFormat::Exact => self.exact_prompt(len, depth, passkey),
        }
    }

    fn authors_prompt(&self, len: usize, depth: f64, passkey: &str) -> Result<PasskeyPrompt> {
        let (blocks, needle_index) = authors_layout(len, self.intro.len(), self.question.len(), self.block.len(), depth)
            .ok_or_else(|| Error::Data(format!("passkey length {len} leaves no room for one block")))?;
        let tokens = self.tok.encode(&authors_text(blocks, needle_index, passkey));
        Ok(PasskeyPrompt {
            passkey: passkey.to_string(),
            depth,
            len: tokens.len(),
            tokens,
            needle_position: self.intro.len() + needle_index * self.block.len(),
            blocks,
            needle_index,
            answer: self.tok.encode(&format!(" {passkey}")),
        })
    }

    fn exact_prompt(&self, len: usize, depth: f64, passkey: &str) -> Result<PasskeyPrompt> {
        let needle_ids = self.tok.encode(&needle(passkey));
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
            needle_index,
            answer: self.tok.encode(&format!(" {passkey}")),
        })
    }
}

/// Scoring as the paper: the prompt counts as retrieved when the greedy continuation contains
/// the passkey.
pub fn is_retrieved(continuation: &str, passkey: &str) -> bool {
    continuation.contains(passkey)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The authors' generator by hand for the byte tokenizer: prefix 93 tokens, block 90,
    /// suffix 37; T = 500 gives floor((500 - 130) / 90) = 4 blocks; depth 0.5 puts the needle
    /// at floor(0.5 * 3) = 1.
    #[test]
    fn authors_prompt_by_hand_for_bytes() {
        let tok = Tokenizer::from_spec("bytes").unwrap();
        let tpl = PasskeyTemplate::new(&tok, PasskeyFormat::Authors);
        assert_eq!((authors::PREFIX.len(), authors::BLOCK.len(), authors::SUFFIX.len()), (93, 90, 37));
        let p = tpl.prompt(500, 0.5, "00042").unwrap();
        let expected = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it.\n\n\
The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n\
The passkey is 00042. Remember it. 00042 is the passkey.\n\
The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n\
The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n\
\nWhat is the pass key? The passkey is";
        assert_eq!(tok.decode(&p.tokens), expected);
        assert_eq!((p.blocks, p.needle_index, p.needle_position), (4, 1, 93 + 90));
        assert_eq!(p.len, 93 + 3 * 90 + 57 + 37);
        assert!(p.len <= 500);
    }

    /// floor(d * (blocks - 1)), not round: 4 blocks at depth 0.9 -> block 2 (round would give 3);
    /// depth 1 -> the last block; depth 0 -> the first.
    #[test]
    fn authors_needle_block_is_floored() {
        assert_eq!(authors_layout(500, 93, 37, 90, 0.9), Some((4, 2)));
        assert_eq!(authors_layout(500, 93, 37, 90, 1.0), Some((4, 3)));
        assert_eq!(authors_layout(500, 93, 37, 90, 0.0), Some((4, 0)));
        // (i + 0.5) / n depths of n = 4 over 4 blocks: 0.125, 0.375, 0.625, 0.875 -> 0, 1, 1, 2.
        let idx: Vec<usize> = (0..4).map(|i| authors_layout(500, 93, 37, 90, (i as f64 + 0.5) / 4.0).unwrap().1).collect();
        assert_eq!(idx, vec![0, 1, 1, 2]);
        assert_eq!(authors_layout(219, 93, 37, 90, 0.5), None);
        assert_eq!(authors_layout(220, 93, 37, 90, 0.5), Some((1, 0)));
    }

    #[test]
    fn authors_keys_cover_00000_to_99999() {
        let tok = Tokenizer::from_spec("bytes").unwrap();
        let tpl = PasskeyTemplate::new(&tok, PasskeyFormat::Authors);
        let mut rng = Rng::new(7);
        let keys: Vec<String> = (0..2000).map(|_| tpl.draw_passkey(&mut rng)).collect();
        assert!(keys.iter().all(|k| k.len() == 5 && k.bytes().all(|b| b.is_ascii_digit())));
        assert!(keys.iter().any(|k| k.starts_with('0')), "a leading zero appears about 10% of the time");
        let exact = PasskeyTemplate::new(&tok, PasskeyFormat::Exact);
        assert!((0..2000).map(|_| exact.draw_passkey(&mut rng)).all(|k| !k.starts_with('0')));
    }

    #[test]
    fn authors_prompts_are_at_most_the_length() {
        for spec in ["bytes", "gpt2"] {
            let tok = Tokenizer::from_spec(spec).unwrap();
            let tpl = PasskeyTemplate::new(&tok, PasskeyFormat::Authors);
            for len in [300, 1024, 4096] {
                let p = tpl.prompt(len, 0.3, "12345").unwrap();
                assert!(p.len <= len && p.len + 2 * tpl.block.len() > len, "{spec} {len}: {}", p.len);
                assert!(tok.decode(&p.tokens).ends_with(authors::SUFFIX));
            }
        }
    }
}
