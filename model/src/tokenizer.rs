//! Tokenizers, named by a spec string recorded with every corpus and checkpoint:
//! `bytes` (ids 0..255 = the UTF-8 bytes, 256 = EOS), `gpt2` (the r50k BPE that tiktoken-rs
//! embeds, EOS 50256; works offline), `hf:PATH` (any local `tokenizer.json`) and
//! `hf:ORG/NAME[@REVISION]` (the `tokenizer.json` of a repository in the local Hugging Face
//! cache, e.g. `hf:EleutherAI/gpt-neox-20b`, the tokenizer of the official Mamba-2 checkpoints).
use std::path::{Path, PathBuf};

use crate::{Error, Result};

pub enum Tokenizer {
    Bytes,
    Gpt2(&'static tiktoken_rs::CoreBPE),
    /// `repo` is set when it came from the hub cache: the spec names the repository, not the
    /// machine's cache path.
    Hf {
        path: PathBuf,
        repo: Option<String>,
        tok: Box<tokenizers::Tokenizer>,
        eos: u32,
    },
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokenizer({})", self.spec())
    }
}

const BYTES_EOS: u32 = 256;
const GPT2_EOS: u32 = 50256;

impl Tokenizer {
    /// Parses `bytes`, `gpt2` or `hf:PATH`.
    pub fn from_spec(spec: &str) -> Result<Tokenizer> {
        match spec {
            "bytes" => Ok(Tokenizer::Bytes),
            "gpt2" => Ok(Tokenizer::Gpt2(tiktoken_rs::r50k_base_singleton())),
            s => match s.strip_prefix("hf:") {
                Some(p) if Path::new(p).exists() => Self::hf(Path::new(p), None),
                Some(p) => match crate::hub::HubRef::parse(p) {
                    Some(r) => Self::hf(&r.resolve()?, Some(r.to_string())),
                    None => Err(Error::at(p, "tokenizer file not found (and not a hub repository name hf:ORG/NAME)")),
                },
                None => Err(Error::Tokenizer(format!(
                    "unknown tokenizer '{s}': expected bytes, gpt2, hf:PATH/tokenizer.json or hf:ORG/NAME (local hub cache)"
                ))),
            },
        }
    }

    fn hf(path: &Path, repo: Option<String>) -> Result<Tokenizer> {
        let file = if path.is_dir() { path.join("tokenizer.json") } else { path.to_path_buf() };
        let tok = tokenizers::Tokenizer::from_file(&file).map_err(|e| Error::at(&file, format!("cannot load tokenizer: {e}")))?;
        let eos = ["<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>"]
            .iter()
            .find_map(|t| tok.token_to_id(t))
            .ok_or_else(|| Error::at(&file, "tokenizer has no end-of-text token (<|endoftext|>, </s> or <eos>)"))?;
        let path = std::fs::canonicalize(&file).unwrap_or(file);
        Ok(Tokenizer::Hf { path, repo, tok: Box::new(tok), eos })
    }

    /// Canonical spec string (what corpora and checkpoints record).
    pub fn spec(&self) -> String {
        match self {
            Tokenizer::Bytes => "bytes".into(),
            Tokenizer::Gpt2(_) => "gpt2".into(),
            Tokenizer::Hf { repo: Some(r), .. } => format!("hf:{r}"),
            Tokenizer::Hf { path, .. } => format!("hf:{}", path.display()),
        }
    }

    /// Number of token ids (EOS included).
    pub fn vocab_size(&self) -> i64 {
        match self {
            Tokenizer::Bytes => 257,
            Tokenizer::Gpt2(_) => 50257,
            Tokenizer::Hf { tok, .. } => tok.get_vocab_size(true) as i64,
        }
    }

    pub fn eos(&self) -> u32 {
        match self {
            Tokenizer::Bytes => BYTES_EOS,
            Tokenizer::Gpt2(_) => GPT2_EOS,
            Tokenizer::Hf { eos, .. } => *eos,
        }
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self {
            Tokenizer::Bytes => text.bytes().map(u32::from).collect(),
            Tokenizer::Gpt2(bpe) => bpe.encode_ordinary(text),
            Tokenizer::Hf { tok, .. } => tok.encode(text, false).map(|e| e.get_ids().to_vec()).unwrap_or_default(),
        }
    }

    /// Text of `ids`; ids that are not text (EOS, out of range) are dropped, invalid UTF-8 is
    /// replaced.
    pub fn decode(&self, ids: &[u32]) -> String {
        match self {
            Tokenizer::Bytes => {
                let bytes: Vec<u8> = ids.iter().filter(|&&i| i < 256).map(|&i| i as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            Tokenizer::Gpt2(bpe) => {
                let ids: Vec<u32> = ids.iter().copied().filter(|&i| i < GPT2_EOS).collect();
                bpe.decode_bytes(&ids).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
            }
            Tokenizer::Hf { tok, .. } => tok.decode(ids, true).unwrap_or_default(),
        }
    }

    /// Errors unless `other` names the same tokenizer (a corpus or checkpoint mismatch).
    pub fn check_same(&self, other: &str, what: &str) -> Result<()> {
        if self.spec() == other || Tokenizer::from_spec(other).map(|t| t.spec()).ok() == Some(self.spec()) {
            Ok(())
        } else {
            Err(Error::Tokenizer(format!("tokenizer mismatch: {what} was made with '{other}', but this run uses '{}'", self.spec())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        let t = Tokenizer::from_spec("bytes").unwrap();
        let ids = t.encode("héllo");
        assert_eq!(ids.len(), 6);
        assert_eq!(t.decode(&ids), "héllo");
        assert_eq!(t.vocab_size(), 257);
    }

    #[test]
    fn gpt2_is_offline_r50k() {
        let t = Tokenizer::from_spec("gpt2").unwrap();
        assert_eq!(t.encode("Hello world"), vec![15496, 995]);
        assert_eq!(t.decode(&[15496, 995, 50256]), "Hello world");
    }

    #[test]
    fn unknown_spec_is_an_error() {
        let e = Tokenizer::from_spec("sentencepiece").unwrap_err().to_string();
        assert!(e.contains("expected bytes, gpt2, hf:"), "{e}");
        assert!(Tokenizer::from_spec("hf:/nonexistent/tokenizer.json").is_err());
    }

    #[test]
    fn mismatch_names_both() {
        let t = Tokenizer::from_spec("bytes").unwrap();
        let e = t.check_same("gpt2", "corpus x").unwrap_err().to_string();
        assert!(e.contains("gpt2") && e.contains("bytes") && e.contains("corpus x"), "{e}");
    }
}
