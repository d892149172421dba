//! Model configuration in mamba_ssm's own shape (`MambaConfig` with an `ssm_cfg` for the
//! Mamba2 mixer), so `config.json` of an official checkpoint loads unchanged and ours loads in
//! mamba_ssm. Derived sizes are methods. `ModelSpec` is the flat, preset-based form that job
//! configs and sweeps use (`model.d_state: 64`).
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}
fn is_false(b: &bool) -> bool {
    !*b
}

/// The Mamba2 mixer's arguments (`ssm_cfg` in mamba_ssm). Unset keys take the reference defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsmConfig {
    #[serde(default = "SsmConfig::default_layer")]
    pub layer: String,
    #[serde(default = "SsmConfig::default_d_state")]
    pub d_state: i64,
    #[serde(default = "SsmConfig::default_d_conv")]
    pub d_conv: i64,
    #[serde(default = "SsmConfig::default_expand")]
    pub expand: i64,
    #[serde(default = "SsmConfig::default_headdim")]
    pub headdim: i64,
    #[serde(default = "SsmConfig::default_ngroups")]
    pub ngroups: i64,
    #[serde(default = "SsmConfig::default_chunk_size")]
    pub chunk_size: i64,
    /// Only `null` (the whole d_inner is SSM) is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d_ssm: Option<i64>,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub rmsnorm: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub norm_before_gate: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub bias: bool,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub conv_bias: bool,
    #[serde(default, rename = "D_has_hdim", skip_serializing_if = "is_false")]
    pub d_has_hdim: bool,
    #[serde(default = "SsmConfig::default_a_init_range", rename = "A_init_range")]
    pub a_init_range: (f64, f64),
    #[serde(default = "SsmConfig::default_dt_min")]
    pub dt_min: f64,
    #[serde(default = "SsmConfig::default_dt_max")]
    pub dt_max: f64,
    #[serde(default = "SsmConfig::default_dt_init_floor")]
    pub dt_init_floor: f64,
    /// Accepted for compatibility with mamba_ssm configs; ignored (the memory-efficient path is
    /// an implementation detail there).
    #[serde(default, skip_serializing)]
    pub use_mem_eff_path: Option<bool>,
}

impl SsmConfig {
    fn default_layer() -> String {
        "Mamba2".into()
    }
    fn default_d_state() -> i64 {
        128
    }
    fn default_d_conv() -> i64 {
        4
    }
    fn default_expand() -> i64 {
        2
    }
    fn default_headdim() -> i64 {
        64
    }
    fn default_ngroups() -> i64 {
        1
    }
    fn default_chunk_size() -> i64 {
        256
    }
    fn default_a_init_range() -> (f64, f64) {
        (1.0, 16.0)
    }
    fn default_dt_min() -> f64 {
        0.001
    }
    fn default_dt_max() -> f64 {
        0.1
    }
    fn default_dt_init_floor() -> f64 {
        1e-4
    }
}

impl Default for SsmConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults deserialize")
    }
}

/// mamba_ssm's `MambaConfig` (Mamba-2 models only: no attention layers, no MLP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MambaConfig {
    pub d_model: i64,
    #[serde(default)]
    pub d_intermediate: i64,
    pub n_layer: i64,
    pub vocab_size: i64,
    #[serde(default)]
    pub ssm_cfg: SsmConfig,
    #[serde(default)]
    pub attn_layer_idx: Vec<i64>,
    #[serde(default)]
    pub attn_cfg: serde_json::Map<String, serde_json::Value>,
    #[serde(default = "yes")]
    pub rms_norm: bool,
    #[serde(default = "yes")]
    pub residual_in_fp32: bool,
    #[serde(default = "yes")]
    pub fused_add_norm: bool,
    #[serde(default = "MambaConfig::default_pad")]
    pub pad_vocab_size_multiple: i64,
    #[serde(default = "yes")]
    pub tie_embeddings: bool,
    /// RMSNorm epsilon of the block norms and norm_f (mamba_ssm's `norm_epsilon`, 1e-5); the
    /// gated norm inside the mixer uses the same value, as in the reference.
    #[serde(default = "MambaConfig::default_eps", skip_serializing_if = "MambaConfig::is_default_eps")]
    pub norm_epsilon: f64,
}

impl MambaConfig {
    fn default_pad() -> i64 {
        16
    }
    fn default_eps() -> f64 {
        1e-5
    }
    fn is_default_eps(e: &f64) -> bool {
        *e == 1e-5
    }

    /// A config with reference defaults for everything but the sizes.
    pub fn new(d_model: i64, n_layer: i64, vocab_size: i64, ssm_cfg: SsmConfig) -> Self {
        MambaConfig {
            d_model,
            d_intermediate: 0,
            n_layer,
            vocab_size,
            ssm_cfg,
            attn_layer_idx: vec![],
            attn_cfg: Default::default(),
            rms_norm: true,
            residual_in_fp32: true,
            fused_add_norm: true,
            pad_vocab_size_multiple: 16,
            tie_embeddings: true,
            norm_epsilon: 1e-5,
        }
    }

    /// The named presets: the official Mamba-2 sizes (GPT-NeoX vocabulary), the two small
    /// benchmark shapes of `shared/bench` and the study's own shape (byte vocabulary): `study`
    /// is d_model 512 x 8 layers with d_state 256 (a state of 2.1M), the shape of the H200
    /// collapse pilots and of issue 20's throughput cases.
    pub fn preset(name: &str) -> Result<Self> {
        let big = |d, l| MambaConfig::new(d, l, 50277, SsmConfig::default());
        Ok(match name {
            "130m" => big(768, 24),
            "370m" => big(1024, 48),
            "780m" => big(1536, 48),
            "1.3b" => big(2048, 48),
            "2.7b" => big(2560, 64),
            "small" => MambaConfig::new(256, 4, 256, SsmConfig { d_state: 64, ..Default::default() }),
            "tiny" => MambaConfig::new(128, 2, 256, SsmConfig { d_state: 16, headdim: 32, chunk_size: 128, ..Default::default() }),
            "study" => MambaConfig::new(512, 8, 256, SsmConfig { d_state: 256, ..Default::default() }),
            other => return Err(Error::Config(format!("unknown preset '{other}': expected one of {}", PRESETS.join(", ")))),
        })
    }

    pub fn d_inner(&self) -> i64 {
        self.ssm_cfg.expand * self.d_model
    }
    pub fn nheads(&self) -> i64 {
        self.d_inner() / self.ssm_cfg.headdim
    }
    pub fn headdim(&self) -> i64 {
        self.ssm_cfg.headdim
    }
    pub fn d_state(&self) -> i64 {
        self.ssm_cfg.d_state
    }
    pub fn ngroups(&self) -> i64 {
        self.ssm_cfg.ngroups
    }
    pub fn d_conv(&self) -> i64 {
        self.ssm_cfg.d_conv
    }
    pub fn chunk_size(&self) -> i64 {
        self.ssm_cfg.chunk_size
    }
    /// Channels through the causal conv: x, B and C.
    pub fn conv_dim(&self) -> i64 {
        self.d_inner() + 2 * self.ngroups() * self.d_state()
    }
    /// Output width of in_proj: z | xBC | dt.
    pub fn d_in_proj(&self) -> i64 {
        2 * self.d_inner() + 2 * self.ngroups() * self.d_state() + self.nheads()
    }
    /// Vocabulary rounded up to `pad_vocab_size_multiple` (50277 -> 50288).
    pub fn padded_vocab(&self) -> i64 {
        let m = self.pad_vocab_size_multiple.max(1);
        (self.vocab_size + m - 1) / m * m
    }
    /// Total recurrent state: sum over layers of H * P * N (conv states not counted).
    pub fn state_size(&self) -> i64 {
        self.n_layer * self.nheads() * self.headdim() * self.d_state()
    }
    /// Parameter count (the tied lm_head counted once).
    pub fn num_params(&self) -> i64 {
        let (d, di, h) = (self.d_model, self.d_inner(), self.nheads());
        let per_layer = d // norm
            + self.d_in_proj() * d
            + self.conv_dim() * self.d_conv() + self.conv_dim()
            + 3 * h
            + di // gated norm
            + d * di;
        let head = if self.tie_embeddings { 0 } else { self.padded_vocab() * d };
        self.padded_vocab() * d + self.n_layer * per_layer + d + head
    }
    /// `num_params` with checked arithmetic: None when a product overflows i64.
    pub fn checked_num_params(&self) -> Option<i64> {
        let c = &self.ssm_cfg;
        let mul = |a: i64, b: i64| a.checked_mul(b);
        let sum = |xs: &[i64]| xs.iter().try_fold(0i64, |a, x| a.checked_add(*x));
        let d = self.d_model;
        let di = mul(c.expand, d)?;
        let h = di.checked_div(c.headdim)?;
        let gn = mul(2, mul(c.ngroups, c.d_state)?)?;
        let conv_dim = di.checked_add(gn)?;
        let in_proj = sum(&[mul(2, di)?, gn, h])?;
        let per_layer = sum(&[d, mul(in_proj, d)?, mul(conv_dim, c.d_conv)?, conv_dim, mul(3, h)?, di, mul(d, di)?])?;
        let m = self.pad_vocab_size_multiple.max(1);
        let emb = mul(mul(self.vocab_size.checked_add(m - 1)? / m, m)?, d)?;
        let head = if self.tie_embeddings { 0 } else { emb };
        sum(&[emb, mul(self.n_layer, per_layer)?, d, head])
    }
    /// Forward FLOPs per token (multiply-add = 2), lm_head included; training is ~3x this.
    pub fn flops_per_token(&self) -> f64 {
        let (d, di, n, g, q) =
            (self.d_model as f64, self.d_inner() as f64, self.d_state() as f64, self.ngroups() as f64, self.chunk_size() as f64);
        let proj = 2.0 * d * self.d_in_proj() as f64 + 2.0 * di * d;
        let ssd = 2.0 * q * n * g + 2.0 * q * di + 4.0 * n * di;
        self.n_layer as f64 * (proj + ssd) + 2.0 * d * self.padded_vocab() as f64
    }

    /// The reference's asserts, and what this implementation supports.
    pub fn validate(&self) -> Result<()> {
        let s = &self.ssm_cfg;
        let mut errs = Vec::new();
        let positive = [
            ("d_model", self.d_model),
            ("n_layer", self.n_layer),
            ("vocab_size", self.vocab_size),
            ("ssm_cfg.d_state", s.d_state),
            ("ssm_cfg.d_conv", s.d_conv),
            ("ssm_cfg.expand", s.expand),
            ("ssm_cfg.headdim", s.headdim),
            ("ssm_cfg.ngroups", s.ngroups),
            ("ssm_cfg.chunk_size", s.chunk_size),
            ("pad_vocab_size_multiple", self.pad_vocab_size_multiple),
        ];
        for (k, v) in positive {
            if v <= 0 {
                errs.push(format!("{k} must be positive, got {v}"));
            } else if let Some((_, max)) = crate::limits::MODEL_BOUNDS.iter().find(|(b, _)| *b == k) {
                if let Err(e) = crate::limits::check_bound(k, v, *max) {
                    errs.push(e);
                }
            }
        }
        if errs.is_empty() {
            // Within the bounds nothing below overflows; the totals are bounded too.
            let params = self.checked_num_params();
            if params.is_none_or(|p| p > crate::limits::MAX_PARAMS) {
                errs.push(format!(
                    "the model has {} parameters, more than the limit {}",
                    params.map_or("too many".into(), |p| p.to_string()),
                    crate::limits::MAX_PARAMS
                ));
            }
        }
        if errs.is_empty() {
            if self.d_inner() % s.headdim != 0 {
                errs.push(format!("d_inner = expand * d_model = {} is not a multiple of headdim {}", self.d_inner(), s.headdim));
            } else if self.nheads() % s.ngroups != 0 {
                errs.push(format!("nheads = {} is not a multiple of ngroups {}", self.nheads(), s.ngroups));
            }
            if self.d_inner() % s.ngroups != 0 {
                errs.push(format!("d_inner {} is not a multiple of ngroups {}", self.d_inner(), s.ngroups));
            }
        }
        if s.layer != "Mamba2" {
            errs.push(format!("ssm_cfg.layer must be Mamba2, got {}", s.layer));
        }
        if self.d_intermediate != 0 {
            errs.push("d_intermediate must be 0 (Mamba-2 blocks without MLP)".into());
        }
        if !self.attn_layer_idx.is_empty() {
            errs.push("attn_layer_idx must be empty (no attention layers)".into());
        }
        if !self.rms_norm {
            errs.push("rms_norm must be true".into());
        }
        if s.d_ssm.is_some_and(|d| d != self.d_inner()) {
            errs.push("ssm_cfg.d_ssm must be null (the whole d_inner is SSM)".into());
        }
        if !s.rmsnorm || s.norm_before_gate || s.bias || !s.conv_bias || s.d_has_hdim {
            errs.push(
                "unsupported mixer variant: need rmsnorm=true, norm_before_gate=false, bias=false, conv_bias=true, D_has_hdim=false".into(),
            );
        }
        let (a_lo, a_hi) = s.a_init_range;
        if !(s.dt_min > 0.0 && s.dt_max >= s.dt_min && s.dt_max.is_finite() && a_lo > 0.0 && a_hi >= a_lo && a_hi.is_finite()) {
            errs.push("dt_min/dt_max and A_init_range must be positive, finite, increasing ranges".into());
        }
        if !(s.dt_init_floor >= 0.0 && s.dt_init_floor.is_finite()) {
            errs.push("dt_init_floor must be a finite number >= 0".into());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(errs.join("; ")))
        }
    }

    pub fn from_json_file(path: &std::path::Path) -> Result<Self> {
        let text = crate::limits::read_text_bounded(path, crate::limits::MAX_CONFIG_BYTES)?;
        let cfg: MambaConfig = serde_json::from_str(&text).map_err(|e| Error::at(path, e.to_string()))?;
        cfg.validate().map_err(|e| Error::at(path, e.to_string()))?;
        Ok(cfg)
    }
}

pub const PRESETS: &[&str] = &["130m", "370m", "780m", "1.3b", "2.7b", "small", "tiny", "study"];

/// An optional key that, when written, must hold a value: `d_state: null` is an error, never
/// the default in disguise.
fn not_null<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> std::result::Result<Option<T>, D::Error> {
    match Option::<T>::deserialize(d)? {
        Some(v) => Ok(Some(v)),
        None => Err(serde::de::Error::custom("null is not a value: give one or leave the key out")),
    }
}

/// The model section of a job config: a preset (or the reference defaults) with flat overrides,
/// so sweeps can vary `model.d_state` directly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// One of PRESETS; without it every size below must be given.
    #[serde(default, deserialize_with = "not_null", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub preset: Option<String>,
    #[serde(default, deserialize_with = "not_null", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "i64")]
    pub d_model: Option<i64>,
    #[serde(default, deserialize_with = "not_null", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "i64")]
    pub n_layer: Option<i64>,
    #[serde(default, deserialize_with = "not_null", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "i64")]
    pub d_state: Option<i64>,
    #[serde(default, deserialize_with = "not_null", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "i64")]
    pub headdim: Option<i64>,
    #[serde(default, deserialize_with = "not_null", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "i64")]
    pub expand: Option<i64>,
    #[serde(default, deserialize_with = "not_null", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "i64")]
    pub ngroups: Option<i64>,
    #[serde(default, deserialize_with = "not_null", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "i64")]
    pub d_conv: Option<i64>,
    #[serde(default, deserialize_with = "not_null", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "i64")]
    pub chunk_size: Option<i64>,
    /// Defaults to the tokenizer's vocabulary.
    #[serde(default, deserialize_with = "not_null", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "i64")]
    pub vocab_size: Option<i64>,
    /// Initial A = -U(lo, hi) per head (mamba_ssm's `A_init_range`, default [1, 16]). With dt,
    /// it sets how fast each head forgets at initialisation: per-token decay exp(-dt * A).
    #[serde(default, rename = "A_init_range", deserialize_with = "not_null", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "[f64; 2]")]
    pub a_init_range: Option<(f64, f64)>,
    /// Initial dt of each head, log-uniform in [dt_min, dt_max] (defaults 0.001 and 0.1), then
    /// floored at dt_init_floor (default 1e-4).
    #[serde(default, deserialize_with = "not_null", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64")]
    pub dt_min: Option<f64>,
    /// The upper end of the initial dt range (default 0.1).
    #[serde(default, deserialize_with = "not_null", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64")]
    pub dt_max: Option<f64>,
    /// The smallest initial dt (default 1e-4): set it below dt_min for a range that starts lower.
    #[serde(default, deserialize_with = "not_null", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64")]
    pub dt_init_floor: Option<f64>,
}

impl ModelSpec {
    /// Resolves to a validated MambaConfig; `tokenizer_vocab` fills an unset vocabulary.
    pub fn resolve(&self, tokenizer_vocab: Option<i64>) -> Result<MambaConfig> {
        let mut cfg = match &self.preset {
            Some(p) => MambaConfig::preset(p)?,
            None => {
                let need = |v: Option<i64>, k: &str| {
                    v.ok_or_else(|| Error::Config(format!("model.{k} is required when no model.preset is given")))
                };
                MambaConfig::new(
                    need(self.d_model, "d_model")?,
                    need(self.n_layer, "n_layer")?,
                    self.vocab_size.or(tokenizer_vocab).unwrap_or(256),
                    SsmConfig::default(),
                )
            }
        };
        let s = &mut cfg.ssm_cfg;
        macro_rules! set {
            ($dst:expr, $src:expr) => {
                if let Some(v) = $src {
                    $dst = v;
                }
            };
        }
        set!(cfg.d_model, self.d_model);
        set!(cfg.n_layer, self.n_layer);
        set!(s.d_state, self.d_state);
        set!(s.headdim, self.headdim);
        set!(s.expand, self.expand);
        set!(s.ngroups, self.ngroups);
        set!(s.d_conv, self.d_conv);
        set!(s.chunk_size, self.chunk_size);
        set!(s.a_init_range, self.a_init_range);
        set!(s.dt_min, self.dt_min);
        set!(s.dt_max, self.dt_max);
        set!(s.dt_init_floor, self.dt_init_floor);
        if let Some(v) = self.vocab_size.or(tokenizer_vocab) {
            cfg.vocab_size = v;
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_sizes_match_the_paper() {
        let m130 = MambaConfig::preset("130m").unwrap();
        assert_eq!(m130.state_size(), 24 * 24 * 64 * 128); // 4.7M
        assert_eq!(m130.padded_vocab(), 50288);
        let m370 = MambaConfig::preset("370m").unwrap();
        assert_eq!(m370.state_size(), 48 * 32 * 64 * 128); // 12.6M
        let m36 = ModelSpec { d_model: Some(512), n_layer: Some(6), ..Default::default() }.resolve(Some(50277)).unwrap();
        assert_eq!(m36.nheads(), 16);
        assert_eq!(m36.state_size(), 786_432); // 0.79M
    }

    #[test]
    fn init_ranges_are_set_from_the_spec() {
        let spec: ModelSpec = serde_json::from_str(
            r#"{"d_model": 64, "n_layer": 2, "A_init_range": [0.01, 0.16], "dt_min": 1e-4, "dt_max": 0.01, "dt_init_floor": 1e-5}"#,
        )
        .unwrap();
        let s = spec.resolve(Some(257)).unwrap().ssm_cfg;
        assert_eq!((s.a_init_range, s.dt_min, s.dt_max, s.dt_init_floor), ((0.01, 0.16), 1e-4, 1e-2, 1e-5));
        // Unset, they keep mamba_ssm's defaults and stay out of the serialised spec (job ids).
        let plain = ModelSpec { d_model: Some(64), n_layer: Some(2), ..Default::default() };
        assert_eq!(plain.resolve(None).unwrap().ssm_cfg, SsmConfig::default());
        assert_eq!(serde_json::to_string(&plain).unwrap(), r#"{"d_model":64,"n_layer":2}"#);
        let bad = [
            ModelSpec { a_init_range: Some((0.0, 1.0)), ..plain.clone() },
            ModelSpec { a_init_range: Some((2.0, 1.0)), ..plain.clone() },
            ModelSpec { dt_min: Some(0.5), ..plain.clone() },
            ModelSpec { dt_max: Some(f64::INFINITY), ..plain.clone() },
            ModelSpec { dt_init_floor: Some(-1.0), ..plain.clone() },
        ];
        for spec in bad {
            assert!(spec.resolve(None).is_err(), "{spec:?} accepted");
        }
        let null = serde_json::from_str::<ModelSpec>(r#"{"A_init_range": null}"#).unwrap_err();
        assert!(null.to_string().contains("null is not a value"), "{null}");
    }

    #[test]
    fn official_config_json_loads() {
        let text = r#"{"d_model": 768, "d_intermediate": 0, "n_layer": 24, "vocab_size": 50277,
            "ssm_cfg": {"layer": "Mamba2"}, "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": true,
            "residual_in_fp32": true, "fused_add_norm": true, "pad_vocab_size_multiple": 16,
            "tie_embeddings": true}"#;
        let cfg: MambaConfig = serde_json::from_str(text).unwrap();
        assert_eq!(cfg, MambaConfig::preset("130m").unwrap());
        cfg.validate().unwrap();
    }

    #[test]
    fn validate_rejects_bad_sizes() {
        let mut c = MambaConfig::preset("tiny").unwrap();
        c.ssm_cfg.headdim = 48;
        assert!(c.validate().unwrap_err().to_string().contains("headdim"));
        let mut c = MambaConfig::preset("tiny").unwrap();
        c.ssm_cfg.ngroups = 3;
        assert!(c.validate().unwrap_err().to_string().contains("ngroups"));
        let mut c = MambaConfig::preset("tiny").unwrap();
        c.d_model = 0;
        assert!(c.validate().unwrap_err().to_string().contains("d_model must be positive"));
    }

    #[test]
    fn sizes_that_overflow_are_refused_not_wrapped() {
        // model.d_state: [9223372036854775807] once gave a state size of -256.
        for (k, v) in
            [("d_state", i64::MAX), ("d_model", 1_000_000_000), ("n_layer", 100_000_000), ("headdim", i64::MAX), ("chunk_size", 1 << 40)]
        {
            let mut spec = ModelSpec { d_model: Some(64), n_layer: Some(2), headdim: Some(32), ..Default::default() };
            match k {
                "d_state" => spec.d_state = Some(v),
                "d_model" => spec.d_model = Some(v),
                "n_layer" => spec.n_layer = Some(v),
                "headdim" => spec.headdim = Some(v),
                _ => spec.chunk_size = Some(v),
            }
            let e = spec.resolve(Some(256)).unwrap_err();
            assert!(matches!(e, Error::Config(_)), "{k}: {e}");
            assert!(e.to_string().contains("larger than the limit"), "{k}: {e}");
        }
        // Each size within its bound, the product above the parameter limit.
        let huge =
            ModelSpec { d_model: Some(1 << 16), n_layer: Some(1 << 10), expand: Some(1 << 6), headdim: Some(64), ..Default::default() };
        let e = huge.resolve(Some(1 << 24)).unwrap_err().to_string();
        assert!(e.contains("parameters, more than the limit"), "{e}");
        let c = MambaConfig::preset("2.7b").unwrap();
        assert_eq!(c.checked_num_params(), Some(c.num_params()));
    }

    #[test]
    fn a_null_size_is_an_error_not_the_default() {
        let e = serde_json::from_str::<ModelSpec>(r#"{"d_model": 64, "n_layer": 2, "d_state": null}"#).unwrap_err().to_string();
        assert!(e.contains("null is not a value"), "{e}");
        let ok: ModelSpec = serde_json::from_str(r#"{"d_model": 64, "n_layer": 2}"#).unwrap();
        assert_eq!(ok.d_state, None);
    }

    #[test]
    fn param_count_of_130m() {
        let c = MambaConfig::preset("130m").unwrap();
        // ~129M with the tied embedding (the "130m" of the model card).
        let p = c.num_params();
        assert!((125_000_000..135_000_000).contains(&p), "{p}");
    }
}
