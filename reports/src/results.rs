// Typed views of the evaluation results of docs/results-schema.md (loss, passkey, states).
// Unknown fields are ignored: results carry timing and device fields the report does not use.
// Numbers may be null (serde_json writes NaN and ±inf as null, e.g. for an exploding state):
// they read as NaN and are left out of the figures.
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::Error;

/// One position bucket of a loss evaluation: mean loss (nats) over `start..end`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Bucket {
    pub start: f64,
    pub end: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
}

/// The collapse verdict of a loss evaluation (paper v4 §4.2).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Collapse {
    #[serde(default)]
    pub train_len: Option<f64>,
    /// `None` when no bucket ends within the training length.
    #[serde(default)]
    pub collapsed: Option<bool>,
    #[serde(default)]
    pub first_position: Option<f64>,
    #[serde(default)]
    pub worst_ratio: Option<f64>,
    /// `collapsed`, `not_collapsed` or `inconclusive` (absent in older results).
    #[serde(default)]
    pub verdict: Option<String>,
    /// Why inconclusive (`too_few_prompts`, `interval_contains_threshold`, `degenerate`, ...).
    #[serde(default)]
    pub inconclusive: Option<String>,
    /// 95% bootstrap interval of the ratio.
    #[serde(default)]
    pub ratio_ci: Option<[f64; 2]>,
    /// Max loss after T_train minus the in-T maximum, nats.
    #[serde(default)]
    pub rise: Option<f64>,
    #[serde(default)]
    pub uniform_loss: Option<f64>,
    #[serde(default)]
    pub prompts: Option<i64>,
}

/// A `loss` result.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct LossResult {
    #[serde(default)]
    pub buckets: Vec<Bucket>,
    #[serde(default)]
    pub collapse: Option<Collapse>,
    #[serde(default)]
    pub mean_loss: Option<f64>,
    /// Mean loss per prompt and bucket (absent in older results).
    #[serde(default)]
    pub prompt_buckets: Option<Vec<Vec<f64>>>,
}

/// One cell of a passkey heat map.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PasskeyCell {
    pub len: i64,
    pub depth: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub accuracy: f64,
    #[serde(default)]
    pub n: Option<i64>,
}

/// A `passkey` result.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PasskeyResult {
    #[serde(default)]
    pub cells: Vec<PasskeyCell>,
    #[serde(default)]
    pub t_recall: Option<i64>,
    /// Depth-averaged T_recall (absent in older results: recomputed from the cells).
    #[serde(default)]
    pub t_recall_mean: Option<i64>,
    /// Strict T_recall (every depth > 0.95).
    #[serde(default)]
    pub t_recall_strict: Option<i64>,
}

/// Per-head series of a `states` result, one value per entry of `positions`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct HeadStates {
    pub head: i64,
    #[serde(default, deserialize_with = "nan_vec")]
    pub state_var: Vec<f64>,
    #[serde(default, deserialize_with = "nan_vec")]
    pub log_retention: Vec<f64>,
    #[serde(default, deserialize_with = "nan_vec")]
    pub state_rms: Vec<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct LayerStates {
    pub layer: i64,
    #[serde(default)]
    pub heads: Vec<HeadStates>,
}

/// Histogram of one head's state channels at a few positions. `bins` are the bin edges
/// (`counts[i].len() + 1` values) or, when there are as many bins as counts, the left edges.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct StateHistogram {
    #[serde(default)]
    pub layer: i64,
    #[serde(default)]
    pub head: i64,
    #[serde(default)]
    pub positions: Vec<i64>,
    #[serde(default, deserialize_with = "nan_vec")]
    pub bins: Vec<f64>,
    #[serde(default, deserialize_with = "nan_vecs")]
    pub counts: Vec<Vec<f64>>,
}

/// A `states` result.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct StatesResult {
    #[serde(default)]
    pub positions: Vec<f64>,
    #[serde(default)]
    pub layers: Vec<LayerStates>,
    #[serde(default)]
    pub histogram: Option<StateHistogram>,
}

fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn nan_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    let v = Vec::<Option<f64>>::deserialize(d)?;
    Ok(v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
}

fn nan_vecs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<f64>>, D::Error> {
    let v = Vec::<Vec<Option<f64>>>::deserialize(d)?;
    Ok(v.into_iter()
        .map(|r| r.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
        .collect())
}

fn parse<T: for<'de> Deserialize<'de>>(kind: &str, v: &Value) -> Result<T, Error> {
    T::deserialize(v).map_err(|e| Error::Data(format!("malformed {kind} result: {e}")))
}

impl LossResult {
    pub fn from_value(v: &Value) -> Result<Self, Error> {
        parse("loss", v)
    }

    /// (bucket midpoint, loss) pairs with finite values, in bucket order.
    pub fn midpoints(&self) -> Vec<(f64, f64)> {
        self.buckets
            .iter()
            .filter(|b| b.loss.is_finite() && b.start.is_finite() && b.end.is_finite())
            .map(|b| (0.5 * (b.start + b.end), b.loss))
            .collect()
    }

    /// [`LossResult::midpoints`] with the width (`end - start`) of each of those buckets.
    pub fn midpoints_and_widths(&self) -> (Vec<(f64, f64)>, Vec<f64>) {
        self.buckets
            .iter()
            .filter(|b| b.loss.is_finite() && b.start.is_finite() && b.end.is_finite())
            .map(|b| ((0.5 * (b.start + b.end), b.loss), b.end - b.start))
            .unzip()
    }

    /// The end of the last bucket with a finite loss (how far the evaluation reached).
    pub fn max_position(&self) -> Option<f64> {
        self.buckets
            .iter()
            .filter(|b| b.loss.is_finite() && b.end.is_finite())
            .map(|b| b.end)
            .reduce(f64::max)
    }

    pub fn collapsed(&self) -> Option<bool> {
        self.collapse.as_ref().and_then(|c| c.collapsed)
    }
}

impl PasskeyResult {
    pub fn from_value(v: &Value) -> Result<Self, Error> {
        parse("passkey", v)
    }

    /// Lengths evaluated, ascending.
    pub fn lengths(&self) -> Vec<i64> {
        let mut l: Vec<i64> = self.cells.iter().map(|c| c.len).collect();
        l.sort_unstable();
        l.dedup();
        l
    }

    /// Accuracy at `len` averaged over its depths.
    pub fn mean_accuracy(&self, len: i64) -> Option<f64> {
        let a: Vec<f64> = self.cells.iter().filter(|c| c.len == len && c.accuracy.is_finite()).map(|c| c.accuracy).collect();
        (!a.is_empty()).then(|| a.iter().sum::<f64>() / a.len() as f64)
    }

    /// The authors' T_recall: the largest length whose depth-averaged accuracy is > 0.95 (the
    /// stored value, else recomputed from the cells).
    pub fn recall_mean(&self) -> Option<i64> {
        if self.t_recall_mean.is_some() {
            return self.t_recall_mean;
        }
        self.lengths().into_iter().filter(|&l| self.mean_accuracy(l).is_some_and(|a| a > 0.95)).max()
    }

    /// The strict T_recall: the largest length with accuracy > 0.95 at every depth.
    pub fn recall_strict(&self) -> Option<i64> {
        if self.t_recall_strict.is_some() {
            return self.t_recall_strict;
        }
        self.lengths().into_iter().filter(|&l| self.cells.iter().filter(|c| c.len == l).all(|c| c.accuracy > 0.95)).max()
    }
}

impl StatesResult {
    pub fn from_value(v: &Value) -> Result<Self, Error> {
        let s: StatesResult = parse("states", v)?;
        let n = s.positions.len();
        for l in &s.layers {
            for h in &l.heads {
                for (name, series) in [
                    ("state_var", &h.state_var),
                    ("log_retention", &h.log_retention),
                ] {
                    if !series.is_empty() && series.len() != n {
                        return Err(Error::Data(format!(
                            "states result: layer {} head {} has {} {name} values for {n} positions",
                            l.layer,
                            h.head,
                            series.len()
                        )));
                    }
                }
            }
        }
        Ok(s)
    }

    /// The layer whose heads reach the largest state variance (where collapse shows first);
    /// ties go to the lowest layer index.
    pub fn loudest_layer(&self) -> Option<i64> {
        let mut best: Option<(f64, i64)> = None;
        for l in &self.layers {
            let m = l
                .heads
                .iter()
                .flat_map(|h| h.state_var.iter().copied())
                .filter(|v| v.is_finite())
                .fold(f64::NEG_INFINITY, f64::max);
            let better = match best {
                None => true,
                Some((bm, bl)) => m > bm || (m == bm && l.layer < bl),
            };
            if better {
                best = Some((m, l.layer));
            }
        }
        best.map(|(_, l)| l)
    }

    pub fn layer(&self, layer: i64) -> Option<&LayerStates> {
        self.layers.iter().find(|l| l.layer == layer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nulls_read_as_nan() {
        let r = LossResult::from_value(&json!({"buckets": [
            {"start": 0, "end": 256, "loss": 3.0}, {"start": 256, "end": 512, "loss": null}]}))
        .expect("parses");
        assert!(r.buckets[1].loss.is_nan());
        assert_eq!(r.midpoints(), vec![(128.0, 3.0)]);
        assert_eq!(r.midpoints_and_widths(), (vec![(128.0, 3.0)], vec![256.0]));
        assert_eq!(r.max_position(), Some(256.0));
        assert_eq!(r.collapsed(), None);
        let s = StatesResult::from_value(&json!({"positions": [128, 256], "layers": [{"layer": 0,
            "heads": [{"head": 0, "state_var": [1.0, null], "log_retention": [-1.0, -2.0]}]}]}))
        .expect("parses");
        assert!(s.layers[0].heads[0].state_var[1].is_nan());
        assert_eq!(s.loudest_layer(), Some(0));
    }

    #[test]
    fn ragged_states_are_rejected() {
        let e = StatesResult::from_value(&json!({"positions": [128, 256], "layers": [{"layer": 0,
            "heads": [{"head": 0, "state_var": [1.0]}]}]}))
        .unwrap_err();
        assert!(
            e.to_string().contains("1 state_var values for 2 positions"),
            "{e}"
        );
    }
}
