//! Checkpoints. Ours is a directory in the reference format: `config.json` (mamba_ssm's keys),
//! `model.safetensors` (mamba_ssm's parameter names, fp32) and `stuffed.json` with what the
//! reference format has no room for (the tokenizer). Loading also reads the forms checkpoints
//! come in elsewhere, with no conversion step: transformers' `Mamba2Config` layout
//! (hf_config.rs), sharded safetensors or a `pytorch_model.bin` (weights.rs), Hugging Face
//! parameter names (`backbone.embeddings.weight`), any float dtype, a missing `lm_head.weight`
//! when tied, and `hf:ORG/NAME[@REVISION]` from the local hub cache (hub.rs).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::config::MambaConfig;
use crate::lm::Mamba2LM;
use crate::{Error, Result};

mod hf_config;
mod weights;

pub use hf_config::{read_config, ConfigLayout};
pub use weights::{read_torch_pickle, WeightFiles, SHARD_INDEX_FILE, TORCH_PICKLE_FILE};

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const META_FILE: &str = "stuffed.json";

/// What a checkpoint records beyond the reference format.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Tokenizer spec (`bytes`, `gpt2`, `hf:PATH`); absent for foreign checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
    /// Training step at which it was written, when written by the trainer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i64>,
    /// Tokens trained on so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<i64>,
    /// For a checkpoint without `stuffed.json`: the tokenizer it most likely needs (its own
    /// `tokenizer.json`, or GPT-NeoX's for the official Mamba-2 vocabulary), used when no
    /// tokenizer is asked for. Never written.
    #[serde(skip)]
    pub tokenizer_hint: Option<String>,
}

/// Writes `path` through a temporary file and a rename, so a crash leaves the old file or the
/// new one, never half of one.
pub fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = tmp_path(path);
    write(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, |tmp| {
        let text = serde_json::to_string_pretty(value)?;
        std::fs::write(tmp, text + "\n").map_err(|e| Error::io(tmp, e))
    })
}

/// Saves weights, config and meta into `dir` (created if missing).
pub fn save(lm: &Mamba2LM, dir: &Path, meta: &CheckpointMeta) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    save_tensors(&dir.join(WEIGHTS_FILE), lm.params().iter().map(|(n, t)| (n.to_string(), t)))?;
    write_json_atomic(&dir.join(CONFIG_FILE), &lm.cfg)?;
    write_json_atomic(&dir.join(META_FILE), meta)
}

/// Writes named tensors (moved to the CPU, made contiguous) as one safetensors file, atomically.
pub fn save_tensors<'a>(path: &Path, named: impl Iterator<Item = (String, &'a Tensor)>) -> Result<()> {
    let cpu: Vec<(String, Tensor)> = named.map(|(n, t)| (n, t.detach().to_device(Device::Cpu).contiguous())).collect();
    write_atomic(path, |tmp| Tensor::write_safetensors(&cpu, tmp).map_err(|e| Error::at(path, e.to_string())))
}

/// Reads a safetensors file into a name -> tensor map, with the file named in every error.
pub fn read_tensors(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    if !path.exists() {
        return Err(Error::at(path, "file not found"));
    }
    let named = Tensor::read_safetensors(path).map_err(|e| Error::at(path, format!("unreadable safetensors file: {e}")))?;
    Ok(named.into_iter().collect())
}

/// A checkpoint found and read up to its weights: where it is, its config (either layout) and
/// where its tensors are.
#[derive(Debug, Clone)]
pub struct Source {
    /// The directory (for `hf:`, the hub snapshot).
    pub dir: PathBuf,
    pub cfg: MambaConfig,
    pub layout: ConfigLayout,
    pub weights: WeightFiles,
    pub meta: CheckpointMeta,
}

/// The official Mamba-2 checkpoints' vocabulary (GPT-NeoX, 50277 tokens, padded to 50280 by
/// transformers' conversions and 50288 by mamba_ssm).
const NEOX_VOCABS: &[i64] = &[50277, 50280, 50288];
/// The tokenizer of the official Mamba-2 checkpoints.
pub const NEOX_TOKENIZER: &str = "hf:EleutherAI/gpt-neox-20b";

/// Finds the checkpoint `src`: a directory in any supported form, or `hf:ORG/NAME[@REVISION]`
/// in the local hub cache. Reads the config and meta, not the weights.
pub fn open(src: &Path) -> Result<Source> {
    let dir = match src.to_str().and_then(|s| s.strip_prefix("hf:")) {
        Some(spec) => crate::hub::resolve_spec(spec)?,
        None => src.to_path_buf(),
    };
    if !dir.is_dir() {
        return Err(Error::at(&dir, "checkpoint directory not found"));
    }
    let (cfg, layout) = read_config(&dir.join(CONFIG_FILE))?;
    let weights = WeightFiles::find(&dir)?;
    let mut meta = read_meta(&dir)?;
    if meta.tokenizer.is_none() {
        meta.tokenizer_hint = if dir.join("tokenizer.json").is_file() {
            Some(format!("hf:{}", dir.join("tokenizer.json").display()))
        } else if NEOX_VOCABS.contains(&cfg.vocab_size) {
            Some(NEOX_TOKENIZER.into())
        } else {
            None
        };
    }
    Ok(Source { dir, cfg, layout, weights, meta })
}

/// Loads a checkpoint (see `open`) onto `device`.
pub fn load(src: &Path, device: Device) -> Result<(Mamba2LM, CheckpointMeta)> {
    let source = open(src)?;
    let lm = Mamba2LM::zeroed(&source.cfg, device)?;
    load_weights(&lm, &source.weights)?;
    Ok((lm, source.meta))
}

pub fn read_meta(dir: &Path) -> Result<CheckpointMeta> {
    let path = dir.join(META_FILE);
    if !path.exists() {
        return Ok(CheckpointMeta::default());
    }
    let text = crate::limits::read_text_bounded(&path, crate::limits::MAX_CONFIG_BYTES)?;
    serde_json::from_str(&text).map_err(|e| Error::at(&path, e.to_string()))
}

/// Hugging Face's names for the few tensors that differ from mamba_ssm's.
fn canonical_name(name: &str) -> String {
    name.replacen("backbone.embeddings.", "backbone.embedding.", 1)
}

/// Copies the tensors of `weights` into the model's parameters, checking names, shapes and
/// dtypes; an error names the file and the tensor.
pub fn load_weights(lm: &Mamba2LM, weights: &WeightFiles) -> Result<()> {
    let mut file: BTreeMap<String, (Tensor, PathBuf)> = weights.read()?.into_iter().map(|(n, t, f)| (canonical_name(&n), (t, f))).collect();
    if lm.cfg.tie_embeddings {
        file.remove("lm_head.weight"); // tied: the embedding is the head
    }
    let first_file = || match weights {
        WeightFiles::Safetensors(p) | WeightFiles::TorchPickle(p) => p.clone(),
        WeightFiles::Sharded { index, .. } => index.clone(),
    };
    let _guard = tch::no_grad_guard();
    for (name, param) in lm.params().iter() {
        let (src, path) = file.remove(name).ok_or_else(|| Error::at(first_file(), format!("missing tensor '{name}'")))?;
        if src.size() != param.size() {
            let shape = Error::Shape { name: name.to_string(), expected: param.size(), got: src.size() };
            return Err(Error::at(path, shape.to_string()));
        }
        if !matches!(src.kind(), Kind::Float | Kind::BFloat16 | Kind::Half | Kind::Double) {
            return Err(Error::at(path, format!("tensor '{name}' has dtype {:?}, expected a float type", src.kind())));
        }
        param.shallow_clone().copy_(&src.to_kind(Kind::Float).to_device(param.device()));
    }
    if !file.is_empty() {
        let extra: Vec<&str> = file.keys().take(5).map(String::as_str).collect();
        return Err(Error::at(first_file(), format!("{} unexpected tensor(s) for this config, e.g. {}", file.len(), extra.join(", "))));
    }
    Ok(())
}

/// Writes checkpoint `src` (any supported form) as our canonical directory `out`: mamba_ssm's
/// config, fp32 `model.safetensors`, and `stuffed.json` with the tokenizer (`tokenizer`, else
/// the source's recorded or likely one). Returns the source as read.
pub fn import(src: &Path, out: &Path, tokenizer: Option<String>) -> Result<Source> {
    let source = open(src)?;
    let lm = Mamba2LM::zeroed(&source.cfg, Device::Cpu)?;
    load_weights(&lm, &source.weights)?;
    let meta = CheckpointMeta {
        tokenizer: tokenizer.or_else(|| source.meta.tokenizer.clone()).or_else(|| source.meta.tokenizer_hint.clone()),
        step: source.meta.step,
        tokens: source.meta.tokens,
        tokenizer_hint: None,
    };
    save(&lm, out, &meta)?;
    Ok(source)
}
