//! The two `config.json` layouts a Mamba-2 checkpoint comes in: mamba_ssm's (`d_model`,
//! `ssm_cfg`; the official state-spaces checkpoints and ours) and transformers' `Mamba2Config`
//! (`hidden_size`, `state_size`, `n_groups`, ...), both read into our `MambaConfig`.
//! transformers' defaults fill its missing keys (they differ from mamba_ssm's: `n_groups` 8,
//! untied embeddings). Keys that would change the model to a variant we do not implement are
//! errors naming the key; keys that only matter to training or generation are ignored.
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::config::{MambaConfig, SsmConfig};
use crate::{Error, Result};

/// Which layout a `config.json` is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigLayout {
    /// mamba_ssm's `MambaConfig` (`d_model`, `n_layer`, `ssm_cfg`).
    MambaSsm,
    /// transformers' `Mamba2Config` (`hidden_size`, `num_hidden_layers`, `model_type: mamba2`).
    Transformers,
}

/// transformers' `Mamba2Config`, the keys that shape the model (its defaults where missing).
#[derive(Debug, Deserialize)]
struct Mamba2Config {
    #[serde(default = "d::vocab")]
    vocab_size: i64,
    #[serde(default = "d::hidden")]
    hidden_size: i64,
    #[serde(default = "d::state")]
    state_size: i64,
    #[serde(default = "d::layers")]
    num_hidden_layers: i64,
    #[serde(default = "d::eps")]
    layer_norm_epsilon: f64,
    #[serde(default = "d::expand")]
    expand: i64,
    #[serde(default = "d::conv")]
    conv_kernel: i64,
    #[serde(default = "d::groups")]
    n_groups: i64,
    #[serde(default)]
    use_bias: bool,
    #[serde(default = "d::yes")]
    use_conv_bias: bool,
    #[serde(default = "d::silu")]
    hidden_act: String,
    #[serde(default = "d::yes")]
    residual_in_fp32: bool,
    #[serde(default = "d::dt_min")]
    time_step_min: f64,
    #[serde(default = "d::dt_max")]
    time_step_max: f64,
    #[serde(default = "d::dt_floor")]
    time_step_floor: f64,
    #[serde(default)]
    time_step_limit: Option<Value>,
    #[serde(default = "d::chunk")]
    chunk_size: i64,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default = "d::heads")]
    num_heads: i64,
    #[serde(default = "d::head_dim")]
    head_dim: i64,
    #[serde(default)]
    model_type: Option<String>,
}

/// transformers' defaults (transformers 5, `Mamba2Config`).
mod d {
    pub fn vocab() -> i64 {
        32768
    }
    pub fn hidden() -> i64 {
        4096
    }
    pub fn state() -> i64 {
        128
    }
    pub fn layers() -> i64 {
        64
    }
    pub fn eps() -> f64 {
        1e-5
    }
    pub fn expand() -> i64 {
        2
    }
    pub fn conv() -> i64 {
        4
    }
    pub fn groups() -> i64 {
        8
    }
    pub fn yes() -> bool {
        true
    }
    pub fn silu() -> String {
        "silu".into()
    }
    pub fn dt_min() -> f64 {
        0.001
    }
    pub fn dt_max() -> f64 {
        0.1
    }
    pub fn dt_floor() -> f64 {
        1e-4
    }
    pub fn chunk() -> i64 {
        256
    }
    pub fn heads() -> i64 {
        128
    }
    pub fn head_dim() -> i64 {
        64
    }
}

/// Python's json writes infinity as a bare `Infinity`, which is not JSON: such tokens
/// (outside strings) become the string "Infinity" before parsing.
fn quote_bare_infinity(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_str, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_str {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
        } else if c == '"' {
            in_str = true;
            out.push(c);
        } else if let Some(tail) = rest.strip_prefix("-Infinity") {
            out.push_str("\"-Infinity\"");
            rest = tail;
            continue;
        } else if let Some(tail) = rest.strip_prefix("Infinity").or_else(|| rest.strip_prefix("NaN")) {
            out.push_str(if rest.starts_with('N') { "\"NaN\"" } else { "\"Infinity\"" });
            rest = tail;
            continue;
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A float written as a number, "Infinity", or transformers' `{"__float__": "Infinity"}`.
fn float_value(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok(),
        Value::Object(m) => m.get("__float__").and_then(float_value),
        _ => None,
    }
}

/// Reads `config.json` in either layout (told apart by `ssm_cfg`/`d_model` against
/// `hidden_size`/`model_type`), validated.
pub fn read_config(path: &Path) -> Result<(MambaConfig, ConfigLayout)> {
    let text = crate::limits::read_text_bounded(path, crate::limits::MAX_CONFIG_BYTES)?;
    let value: Value = serde_json::from_str(&quote_bare_infinity(&text)).map_err(|e| Error::at(path, e.to_string()))?;
    let obj = value.as_object().ok_or_else(|| Error::at(path, "expected a JSON object"))?;
    if obj.contains_key("d_model") || obj.contains_key("ssm_cfg") {
        return Ok((MambaConfig::from_json_file(path)?, ConfigLayout::MambaSsm));
    }
    if !(obj.contains_key("hidden_size") || obj.get("model_type").is_some_and(|t| t == "mamba2")) {
        return Err(Error::at(
            path,
            "neither mamba_ssm's layout (d_model, n_layer, ssm_cfg) nor transformers' Mamba2Config (model_type: mamba2, hidden_size, ...)",
        ));
    }
    let hf: Mamba2Config = serde_json::from_value(value).map_err(|e| Error::at(path, e.to_string()))?;
    let cfg = from_transformers(&hf).map_err(|e| Error::at(path, e))?;
    cfg.validate().map_err(|e| Error::at(path, e.to_string()))?;
    Ok((cfg, ConfigLayout::Transformers))
}

fn from_transformers(hf: &Mamba2Config) -> std::result::Result<MambaConfig, String> {
    let mut errs = Vec::new();
    if let Some(t) = hf.model_type.as_deref().filter(|t| *t != "mamba2") {
        errs.push(format!("model_type is '{t}', expected mamba2"));
    }
    if hf.hidden_act != "silu" {
        errs.push(format!("hidden_act is '{}', only silu is supported", hf.hidden_act));
    }
    if hf.use_bias {
        errs.push("use_bias is true: only projections without bias are supported".into());
    }
    if !hf.use_conv_bias {
        errs.push("use_conv_bias is false: only a conv1d with bias is supported".into());
    }
    if let Some(limit) = &hf.time_step_limit {
        let pair: Option<Vec<f64>> = limit.as_array().and_then(|a| a.iter().map(float_value).collect());
        match pair.as_deref() {
            Some([lo, hi]) if *lo <= 0.0 && hi.is_infinite() && *hi > 0.0 => {}
            _ => errs.push(format!("time_step_limit is {limit}: only (0.0, inf), no clamp of dt, is supported")),
        }
    }
    if hf.num_heads.checked_mul(hf.head_dim) != hf.expand.checked_mul(hf.hidden_size) {
        errs.push(format!(
            "num_heads x head_dim = {} x {} differs from expand x hidden_size = {} x {}",
            hf.num_heads, hf.head_dim, hf.expand, hf.hidden_size
        ));
    }
    if !errs.is_empty() {
        return Err(errs.join("; "));
    }
    let ssm = SsmConfig {
        d_state: hf.state_size,
        d_conv: hf.conv_kernel,
        expand: hf.expand,
        headdim: hf.head_dim,
        ngroups: hf.n_groups,
        chunk_size: hf.chunk_size,
        dt_min: hf.time_step_min,
        dt_max: hf.time_step_max,
        dt_init_floor: hf.time_step_floor,
        ..SsmConfig::default()
    };
    let mut cfg = MambaConfig::new(hf.hidden_size, hf.num_hidden_layers, hf.vocab_size, ssm);
    // transformers' vocab_size is the embedding's row count: no further padding.
    cfg.pad_vocab_size_multiple = if hf.vocab_size % 16 == 0 { 16 } else { 1 };
    cfg.tie_embeddings = hf.tie_word_embeddings;
    cfg.residual_in_fp32 = hf.residual_in_fp32;
    cfg.norm_epsilon = hf.layer_norm_epsilon;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_infinity_is_quoted_outside_strings_only() {
        let t = r#"{"a": [0.0, Infinity], "b": "Infinity", "c": -Infinity, "d": {"__float__": "Infinity"}}"#;
        let v: Value = serde_json::from_str(&quote_bare_infinity(t)).unwrap();
        assert_eq!(float_value(&v["a"][1]), Some(f64::INFINITY));
        assert_eq!(v["b"], "Infinity");
        assert_eq!(float_value(&v["c"]), Some(f64::NEG_INFINITY));
        assert_eq!(float_value(&v["d"]), Some(f64::INFINITY));
    }

    #[test]
    fn transformers_layout_maps_to_mamba_config() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"model_type": "mamba2", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 272, "state_size": 16,
               "head_dim": 16, "num_heads": 8, "n_groups": 2, "chunk_size": 16, "tie_word_embeddings": true,
               "time_step_limit": [0.0, {"__float__": "Infinity"}], "architectures": ["Mamba2ForCausalLM"]}"#,
        )
        .unwrap();
        let (cfg, layout) = read_config(&p).unwrap();
        assert_eq!(layout, ConfigLayout::Transformers);
        assert_eq!((cfg.d_model, cfg.n_layer, cfg.padded_vocab(), cfg.nheads(), cfg.ngroups()), (64, 2, 272, 8, 2));
        assert!(cfg.tie_embeddings);
        std::fs::write(&p, r#"{"model_type": "mamba2", "hidden_size": 64, "num_heads": 3, "time_step_limit": [0.0, 0.5]}"#).unwrap();
        let e = read_config(&p).unwrap_err().to_string();
        assert!(e.contains("config.json") && e.contains("time_step_limit") && e.contains("num_heads x head_dim"), "{e}");
    }
}
