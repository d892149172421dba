//! Checkpoint directories in the reference format: `config.json` (mamba_ssm's keys) and
//! `model.safetensors` (mamba_ssm's parameter names, fp32), plus `stuffed.json` with what the
//! reference format has no room for (the tokenizer). Loading also accepts Hugging Face names
//! (`backbone.embeddings.weight`), any float dtype, and a missing `lm_head.weight` when tied.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::config::MambaConfig;
use crate::lm::Mamba2LM;
use crate::{Error, Result};

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

/// Loads a checkpoint directory onto `device`.
pub fn load(dir: &Path, device: Device) -> Result<(Mamba2LM, CheckpointMeta)> {
    if !dir.is_dir() {
        return Err(Error::at(dir, "checkpoint directory not found"));
    }
    let cfg = MambaConfig::from_json_file(&dir.join(CONFIG_FILE))?;
    let meta = read_meta(dir)?;
    let lm = Mamba2LM::zeroed(&cfg, device)?;
    load_weights(&lm, &dir.join(WEIGHTS_FILE))?;
    Ok((lm, meta))
}

pub fn read_meta(dir: &Path) -> Result<CheckpointMeta> {
    let path = dir.join(META_FILE);
    if !path.exists() {
        return Ok(CheckpointMeta::default());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::at(&path, e.to_string()))
}

/// Hugging Face's names for the few tensors that differ from mamba_ssm's.
fn canonical_name(name: &str) -> String {
    name.replacen("backbone.embeddings.", "backbone.embedding.", 1)
}

/// Copies the tensors of `path` into the model's parameters, checking names and shapes.
pub fn load_weights(lm: &Mamba2LM, path: &Path) -> Result<()> {
    let mut file: BTreeMap<String, Tensor> = read_tensors(path)?.into_iter().map(|(n, t)| (canonical_name(&n), t)).collect();
    if lm.cfg.tie_embeddings {
        file.remove("lm_head.weight"); // tied: the embedding is the head
    }
    let _guard = tch::no_grad_guard();
    for (name, param) in lm.params().iter() {
        let src = file.remove(name).ok_or_else(|| Error::at(path, format!("missing tensor '{name}'")))?;
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
        return Err(Error::at(path, format!("{} unexpected tensor(s) for this config, e.g. {}", file.len(), extra.join(", "))));
    }
    Ok(())
}
