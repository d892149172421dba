//! Training-free mitigations of state collapse, applied at evaluation time, parsed from their
//! text form (`rri:decay=0.9999,b=0.75`, `dt-scale:c=0.5`, `state-norm:tau=auto,every=128`,
//! `sliding-window:r=1024`, `none`).
use std::fmt;
use std::str::FromStr;

use tch::Tensor;

use crate::probe::Knobs;
use crate::state::State;
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum Mitigation {
    None,
    /// Multiply the per-step decay and B ("forget more, remember less").
    Rri {
        decay: f64,
        b: f64,
    },
    /// dt <- c * dt.
    DtScale {
        c: f64,
    },
    /// Every `every` tokens, rescale each head's state to Frobenius norm <= tau; `tau: None`
    /// = per-(layer, head) thresholds calibrated as the largest norm seen within train_len.
    StateNorm {
        tau: Option<f64>,
        every: i64,
    },
    /// Keep only the last r tokens in the state (state difference).
    SlidingWindow {
        r: i64,
    },
}

impl Mitigation {
    pub fn knobs(&self) -> Knobs {
        match *self {
            Mitigation::Rri { decay, b } => Knobs { decay_mult: decay, b_mult: b, ..Knobs::default() },
            Mitigation::DtScale { c } => Knobs { dt_scale: c, ..Knobs::default() },
            Mitigation::SlidingWindow { r } => Knobs { window: Some(r), ..Knobs::default() },
            Mitigation::None | Mitigation::StateNorm { .. } => Knobs::default(),
        }
    }

    /// The streaming chunk must not exceed the state-norm period.
    pub fn max_chunk(&self) -> Option<i64> {
        match *self {
            Mitigation::StateNorm { every, .. } => Some(every),
            _ => None,
        }
    }
}

fn parse_kv(body: &str, spec: &str) -> Result<Vec<(String, String)>> {
    body.split(',')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| Error::Eval(format!("mitigation '{spec}': expected key=value, got '{kv}'")))
        })
        .collect()
}

impl FromStr for Mitigation {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self> {
        let (name, body) = spec.split_once(':').unwrap_or((spec, ""));
        let kv = parse_kv(body, spec)?;
        let bad = |k: &str, allowed: &str| Error::Eval(format!("mitigation '{spec}': unknown parameter '{k}' (expected {allowed})"));
        let num = |v: &str, k: &str| -> Result<f64> {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or_else(|| Error::Eval(format!("mitigation '{spec}': {k} must be a positive number, got '{v}'")))
        };
        let int = |v: &str, k: &str| -> Result<i64> {
            v.parse::<i64>()
                .ok()
                .filter(|x| *x > 0)
                .ok_or_else(|| Error::Eval(format!("mitigation '{spec}': {k} must be a positive integer, got '{v}'")))
        };
        match name {
            "none" if kv.is_empty() => Ok(Mitigation::None),
            "rri" => {
                let (mut decay, mut b) = (0.9999, 0.75);
                for (k, v) in &kv {
                    match k.as_str() {
                        "decay" => decay = num(v, k)?,
                        "b" => b = num(v, k)?,
                        _ => return Err(bad(k, "decay, b")),
                    }
                }
                Ok(Mitigation::Rri { decay, b })
            }
            "dt-scale" => {
                let mut c = 0.5;
                for (k, v) in &kv {
                    match k.as_str() {
                        "c" => c = num(v, k)?,
                        _ => return Err(bad(k, "c")),
                    }
                }
                Ok(Mitigation::DtScale { c })
            }
            "state-norm" => {
                let (mut tau, mut every) = (None, 128);
                for (k, v) in &kv {
                    match k.as_str() {
                        "tau" if v == "auto" => tau = None,
                        "tau" => tau = Some(num(v, k)?),
                        "every" => every = int(v, k)?,
                        _ => return Err(bad(k, "tau, every")),
                    }
                }
                Ok(Mitigation::StateNorm { tau, every })
            }
            "sliding-window" => {
                let mut r = None;
                for (k, v) in &kv {
                    match k.as_str() {
                        "r" => r = Some(int(v, k)?),
                        _ => return Err(bad(k, "r")),
                    }
                }
                let r = r.ok_or_else(|| Error::Eval(format!("mitigation '{spec}': sliding-window needs r=N")))?;
                Ok(Mitigation::SlidingWindow { r })
            }
            _ => Err(Error::Eval(format!(
                "unknown mitigation '{spec}': expected none, rri[:decay=0.9999,b=0.75], dt-scale[:c=0.5], state-norm[:tau=auto|X,every=128] or sliding-window:r=N"
            ))),
        }
    }
}

impl fmt::Display for Mitigation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mitigation::None => write!(f, "none"),
            Mitigation::Rri { decay, b } => write!(f, "rri:decay={decay},b={b}"),
            Mitigation::DtScale { c } => write!(f, "dt-scale:c={c}"),
            Mitigation::StateNorm { tau: None, every } => write!(f, "state-norm:tau=auto,every={every}"),
            Mitigation::StateNorm { tau: Some(t), every } => write!(f, "state-norm:tau={t},every={every}"),
            Mitigation::SlidingWindow { r } => write!(f, "sliding-window:r={r}"),
        }
    }
}

/// Per-(layer, head) Frobenius norm caps on the SSM state.
pub struct StateNormer {
    fixed: Option<f64>,
    /// Calibrated caps [H] per layer (largest norm seen so far while calibrating).
    caps: Vec<Option<Tensor>>,
}

impl StateNormer {
    pub fn new(tau: Option<f64>, layers: usize) -> Self {
        StateNormer { fixed: tau, caps: (0..layers).map(|_| None).collect() }
    }

    fn head_norms(h: &Tensor) -> Tensor {
        h.square().sum_dim_intlist([2i64, 3].as_slice(), false, tch::Kind::Float).sqrt()
        // [B, H]
    }

    /// While `calibrating` (positions within train_len), records the largest norms; afterwards
    /// rescales every head whose norm exceeds its cap.
    pub fn apply(&mut self, state: &mut State, calibrating: bool) {
        let _g = tch::no_grad_guard();
        for (i, layer) in state.layers.iter_mut().enumerate() {
            let norms = Self::head_norms(&layer.ssm); // [B, H]
            if self.fixed.is_none() && calibrating {
                let m = norms.amax([0i64].as_slice(), false);
                self.caps[i] = Some(match &self.caps[i] {
                    Some(c) => c.maximum(&m),
                    None => m,
                });
                continue;
            }
            let cap = match (self.fixed, &self.caps[i]) {
                (Some(t), _) => Tensor::full_like(&norms, t),
                (None, Some(c)) => c.unsqueeze(0).expand_as(&norms),
                (None, None) => continue,
            };
            let scale = (cap / norms.clamp_min(1e-12)).clamp_max(1.0); // [B, H]
            layer.ssm = &layer.ssm * scale.unsqueeze(-1).unsqueeze(-1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_round_trip() {
        for s in [
            "none",
            "rri:decay=0.9999,b=0.75",
            "dt-scale:c=0.5",
            "state-norm:tau=auto,every=128",
            "state-norm:tau=3.5,every=64",
            "sliding-window:r=1024",
        ] {
            assert_eq!(s.parse::<Mitigation>().unwrap().to_string(), s);
        }
        assert_eq!("rri".parse::<Mitigation>().unwrap(), Mitigation::Rri { decay: 0.9999, b: 0.75 });
    }

    #[test]
    fn bad_mitigations_say_what_is_expected() {
        assert!("sliding-window".parse::<Mitigation>().unwrap_err().to_string().contains("r=N"));
        assert!("rri:decay=-1".parse::<Mitigation>().unwrap_err().to_string().contains("positive"));
        assert!("rri:x=1".parse::<Mitigation>().unwrap_err().to_string().contains("unknown parameter 'x'"));
        assert!("magic".parse::<Mitigation>().unwrap_err().to_string().contains("expected none"));
    }
}
