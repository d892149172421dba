//! The checked shape of a sweep before any job is built: its varied keys (grid, zip groups,
//! seeds) as axes of a mixed-radix counter, its derived keys, and the job count. Every static
//! problem (a malformed key, a value that is not a list, an empty list, zip lists of unequal
//! length, a key set twice) is found here, located in the sweep file.
use std::path::Path;

use serde_json::{Map, Value};
use stuffed_model::yaml;

use super::error::{at, SweepError};
use super::keys::{locate_origin, KeyPath, Origin};

/// A key the sweep sets, and where it is written.
#[derive(Debug, Clone)]
pub(crate) struct SweepKey {
    pub key: KeyPath,
    /// As written.
    pub text: String,
    pub origin: Origin,
}

/// Keys advanced together: a grid key alone, a zip group, or the seeds.
#[derive(Debug, Clone)]
struct Axis {
    /// Indices into `Plan::varied`.
    keys: Vec<usize>,
    /// `values[i][k]`: the value of the axis's k-th key at position i.
    values: Vec<Vec<Value>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Grid keys, then zip keys, then `train.seed`, in written order.
    pub varied: Vec<SweepKey>,
    /// Derived keys and their templates, in written order.
    pub derived: Vec<(SweepKey, String)>,
    axes: Vec<Axis>,
}

/// The sweep file an error is located in.
pub struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

/// The keys of a sweep file that vary across its jobs.
pub struct VariedKeys<'a> {
    pub grid: &'a Map<String, Value>,
    pub zip: &'a [Map<String, Value>],
    pub seeds: &'a [u64],
    pub derived: &'a Map<String, Value>,
    /// Keys set on the command line: each replaces the grid's or derived entry of its key.
    pub set: &'a Map<String, Value>,
    /// The searched key and its values: the last axis, so a cell's probes are adjacent.
    pub search: Option<(&'a str, &'a [Value])>,
}

impl Plan {
    /// The plan of a sweep's `grid`, `zip`, `seeds` and `derived` keys, checked; errors are
    /// located in the sweep file `sweep`.
    pub fn new(sweep: &Source, keys: &VariedKeys) -> Result<Plan, SweepError> {
        let mut plan = Plan { varied: vec![], derived: vec![], axes: vec![] };
        let spec = keys;
        for (k, v) in spec.grid.iter().filter(|(k, _)| !spec.set.contains_key(*k)) {
            let key = sweep_key(sweep, k, Origin::Grid)?;
            let list = as_list(sweep, &key, v)?;
            if list.is_empty() {
                return Err(key_err(sweep, &key, format!("grid key `{k}` has no values")));
            }
            plan.push_axis(vec![key], list.iter().map(|v| vec![v.clone()]).collect());
        }
        // A list set on the command line is a grid key; any other value is one value for
        // every job (an axis of one, so the label shows it).
        for (k, v) in spec.set {
            let key = sweep_key(sweep, k, Origin::Set)?;
            let list = match v {
                Value::Array(list) => list.clone(),
                one => vec![one.clone()],
            };
            if list.is_empty() {
                return Err(key_err(sweep, &key, format!("`{k}` is set to an empty list: give at least one value")));
            }
            plan.push_axis(vec![key], list.into_iter().map(|v| vec![v]).collect());
        }
        for (g, group) in spec.zip.iter().enumerate() {
            plan.push_zip(sweep, g, group)?;
        }
        if !spec.seeds.is_empty() {
            let key = sweep_key(sweep, "train.seed", Origin::Seeds)?;
            plan.push_axis(vec![key], spec.seeds.iter().map(|&s| vec![Value::from(s)]).collect());
        }
        if let Some((k, values)) = spec.search {
            let key = sweep_key(sweep, k, Origin::Search)?;
            plan.push_axis(vec![key], values.iter().map(|v| vec![v.clone()]).collect());
        }
        for (k, v) in spec.derived.iter().filter(|(k, _)| !spec.set.contains_key(*k)) {
            let key = sweep_key(sweep, k, Origin::Derived)?;
            let template = match v {
                Value::String(s) => s.clone(),
                Value::Object(m) if m.len() == 1 && m.values().all(Value::is_null) => {
                    let inner = m.keys().next().map_or("", String::as_str);
                    let msg = format!("derived `{k}`: quote the expression, \"{{{inner}}}\" (YAML reads an unquoted {{...}} as a mapping)");
                    return Err(key_err(sweep, &key, msg));
                }
                other => {
                    let msg = format!("derived `{k}` must be an expression string like \"{{train.seq_len}} * 16\", got {other}");
                    return Err(key_err(sweep, &key, msg));
                }
            };
            plan.derived.push((key, template));
        }
        plan.check_overlaps(sweep)?;
        Ok(plan)
    }

    fn push_axis(&mut self, keys: Vec<SweepKey>, values: Vec<Vec<Value>>) {
        let first = self.varied.len();
        self.axes.push(Axis { keys: (first..first + keys.len()).collect(), values });
        self.varied.extend(keys);
    }

    fn push_zip(&mut self, sweep: &Source, g: usize, group: &Map<String, Value>) -> Result<(), SweepError> {
        let mut keys = Vec::new();
        let mut lists: Vec<&Vec<Value>> = Vec::new();
        for (k, v) in group {
            let key = sweep_key(sweep, k, Origin::Zip(g))?;
            let list = as_list(sweep, &key, v)?;
            if let (Some(first), Some(first_list)) = (keys.first(), lists.first()) {
                if list.len() != first_list.len() {
                    let first: &SweepKey = first;
                    let msg = format!(
                        "the lists of zip group {g} differ in length: `{}` has {}, `{k}` has {}",
                        first.text,
                        count(first_list.len()),
                        count(list.len())
                    );
                    return Err(key_err(sweep, &key, msg));
                }
            }
            keys.push(key);
            lists.push(list);
        }
        let Some(len) = lists.first().map(|l| l.len()) else {
            let loc = locate_origin(sweep.text, Origin::Zip(g), "");
            return Err(at(sweep.path, loc, None, format!("zip group {g} has no keys")));
        };
        if len == 0 {
            return Err(key_err(sweep, &keys[0], format!("the lists of zip group {g} have no values")));
        }
        let values = (0..len).map(|i| lists.iter().map(|l| l[i].clone()).collect()).collect();
        self.push_axis(keys, values);
        Ok(())
    }

    /// A key may be set once, and not inside another key the sweep sets.
    fn check_overlaps(&self, sweep: &Source) -> Result<(), SweepError> {
        let all: Vec<&SweepKey> = self.varied.iter().chain(self.derived.iter().map(|(k, _)| k)).collect();
        for (i, later) in all.iter().enumerate() {
            for earlier in &all[..i] {
                let msg = if later.key == earlier.key {
                    format!("`{}` is set twice: in {} and in {}", later.text, section(earlier.origin), section(later.origin))
                } else if later.key.is_within(&earlier.key) || earlier.key.is_within(&later.key) {
                    format!(
                        "`{}` ({}) and `{}` ({}) overlap: set one or the other",
                        earlier.text,
                        section(earlier.origin),
                        later.text,
                        section(later.origin)
                    )
                } else {
                    continue;
                };
                return Err(key_err(sweep, later, msg));
            }
        }
        Ok(())
    }

    /// Number of jobs (saturating).
    pub fn count(&self) -> u128 {
        self.axes.iter().fold(1u128, |n, a| n.saturating_mul(a.values.len() as u128))
    }

    /// The varied keys' values of job `index` (the first axis varies slowest), in the order
    /// of `varied`.
    pub fn combination(&self, mut index: usize) -> Vec<Value> {
        let mut out = vec![Value::Null; self.varied.len()];
        for axis in self.axes.iter().rev() {
            let n = axis.values.len();
            let row = &axis.values[index % n];
            index /= n;
            for (&k, v) in axis.keys.iter().zip(row) {
                out[k] = v.clone();
            }
        }
        out
    }
}

/// Where each section is, for messages.
pub(crate) fn section(origin: Origin) -> String {
    match origin {
        Origin::Grid => "grid".into(),
        Origin::Zip(g) => format!("zip group {g}"),
        Origin::Derived => "derived".into(),
        Origin::Seeds => "seeds".into(),
        Origin::Set => "set (--set)".into(),
        Origin::Search => "search".into(),
    }
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 value".into()
    } else {
        format!("{n} values")
    }
}

/// An error located at a sweep key (the message names the key).
pub(crate) fn key_err(sweep: &Source, key: &SweepKey, msg: String) -> SweepError {
    at(sweep.path, locate_origin(sweep.text, key.origin, &key.text), None, msg)
}

fn sweep_key(sweep: &Source, text: &str, origin: Origin) -> Result<SweepKey, SweepError> {
    match KeyPath::parse(text) {
        Ok(key) => Ok(SweepKey { key, text: text.to_string(), origin }),
        Err(msg) => {
            let loc = locate_origin(sweep.text, origin, text).or_else(|| yaml::locate(sweep.text, "grid"));
            Err(at(sweep.path, loc, None, msg))
        }
    }
}

fn as_list<'a>(sweep: &Source, key: &SweepKey, v: &'a Value) -> Result<&'a Vec<Value>, SweepError> {
    match v {
        Value::Array(list) => Ok(list),
        other => {
            let msg = format!("{} key `{}` must be a list of values, like [{other}]", section(key.origin), key.text);
            Err(key_err(sweep, key, msg))
        }
    }
}
