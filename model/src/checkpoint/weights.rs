//! The files a checkpoint's weights come in: one `model.safetensors`, safetensors shards listed
//! by `model.safetensors.index.json` (transformers' `weight_map`), or a `pytorch_model.bin`
//! written by `torch.save(state_dict)` (the official state-spaces checkpoints). The torch pickle
//! is read by libtorch's own restricted unpickler through the C++ shim (csrc/pickle.cpp): it
//! rebuilds tensors, dicts and scalars and never runs Python code.
use std::collections::BTreeMap;
use std::ffi::{c_char, c_void, CStr, CString};
use std::path::{Path, PathBuf};

use tch::Tensor;

use crate::{Error, Result};

pub const SHARD_INDEX_FILE: &str = "model.safetensors.index.json";
pub const TORCH_PICKLE_FILE: &str = "pytorch_model.bin";

/// Where a checkpoint's tensors are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightFiles {
    /// One safetensors file.
    Safetensors(PathBuf),
    /// Safetensors shards named by an index file.
    Sharded { index: PathBuf, shards: Vec<PathBuf> },
    /// A torch pickle (`torch.save` of a state dict, zip format).
    TorchPickle(PathBuf),
}

impl WeightFiles {
    /// The weights of directory `dir`, in order of preference: `model.safetensors`, the shard
    /// index, `pytorch_model.bin`.
    pub fn find(dir: &Path) -> Result<WeightFiles> {
        let single = dir.join(super::WEIGHTS_FILE);
        if single.is_file() {
            return Ok(WeightFiles::Safetensors(single));
        }
        let index = dir.join(SHARD_INDEX_FILE);
        if index.is_file() {
            return Ok(WeightFiles::Sharded { shards: shard_files(dir, &index)?, index });
        }
        let bin = dir.join(TORCH_PICKLE_FILE);
        if bin.is_file() {
            return Ok(WeightFiles::TorchPickle(bin));
        }
        Err(Error::at(dir, format!("no weights: expected {}, {SHARD_INDEX_FILE} or {TORCH_PICKLE_FILE}", super::WEIGHTS_FILE)))
    }

    /// A short name of the form (`safetensors`, `sharded safetensors`, `pytorch_model.bin`).
    pub fn kind(&self) -> &'static str {
        match self {
            WeightFiles::Safetensors(_) => "safetensors",
            WeightFiles::Sharded { .. } => "sharded safetensors",
            WeightFiles::TorchPickle(_) => "pytorch_model.bin",
        }
    }

    /// Every tensor with the file it came from (names as written in the files).
    pub fn read(&self) -> Result<Vec<(String, Tensor, PathBuf)>> {
        let files: Vec<&PathBuf> = match self {
            WeightFiles::Safetensors(p) | WeightFiles::TorchPickle(p) => vec![p],
            WeightFiles::Sharded { shards, .. } => shards.iter().collect(),
        };
        let mut out = Vec::new();
        for f in files {
            let named = match self {
                WeightFiles::TorchPickle(_) => read_torch_pickle(f)?,
                _ => super::read_tensors(f)?,
            };
            out.extend(named.into_iter().map(|(n, t)| (n, t, f.clone())));
        }
        Ok(out)
    }
}

/// The distinct shard files of an index (`{"weight_map": {tensor: file}}`), each a plain name
/// inside `dir`.
fn shard_files(dir: &Path, index: &Path) -> Result<Vec<PathBuf>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let text = crate::limits::read_text_bounded(index, crate::limits::MAX_CONFIG_BYTES)?;
    let idx: Index = serde_json::from_str(&text).map_err(|e| Error::at(index, e.to_string()))?;
    let mut names: Vec<&String> = idx.weight_map.values().collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(Error::at(index, "weight_map is empty"));
    }
    names.into_iter().map(|n| crate::hub::file_in(dir, n, index)).collect()
}

extern "C" {
    fn stuffed_load_torch_pickle(
        path: *const c_char,
        data: *mut c_void,
        f: extern "C" fn(*mut c_void, *const c_char, *mut c_void),
    ) -> *mut c_char;
}

extern "C" fn push_tensor(data: *mut c_void, name: *const c_char, tensor: *mut c_void) {
    // SAFETY: `data` is the Vec passed below, `name` a NUL-terminated string that lives for the
    // call, and `tensor` a new `torch::Tensor*` whose ownership passes to tch.
    unsafe {
        let v = &mut *(data as *mut Vec<(String, Tensor)>);
        let name = CStr::from_ptr(name).to_string_lossy().into_owned();
        v.push((name, Tensor::from_ptr(tensor.cast())));
    }
}

/// Reads a `torch.save` state dict (zip format) with libtorch's unpickler.
pub fn read_torch_pickle(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    if !path.is_file() {
        return Err(Error::at(path, "file not found"));
    }
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Error::at(path, "path contains a NUL byte"))?;
    let mut named: Vec<(String, Tensor)> = Vec::new();
    // SAFETY: the callback only touches `named`; the returned message is malloc'd by the shim.
    let err = unsafe { stuffed_load_torch_pickle(c.as_ptr(), &mut named as *mut _ as *mut c_void, push_tensor) };
    if !err.is_null() {
        // SAFETY: a NUL-terminated string malloc'd by the shim, freed once here.
        let msg = unsafe {
            let m = CStr::from_ptr(err).to_string_lossy().into_owned();
            libc::free(err.cast());
            m
        };
        // libtorch appends a C++ backtrace: the first line says what went wrong.
        let first = msg.lines().next().unwrap_or("").trim();
        return Err(Error::at(path, format!("unreadable torch pickle (torch.save zip format expected): {first}")));
    }
    Ok(named.into_iter().collect())
}
