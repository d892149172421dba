//! The sweep file: `SweepSpec` as written (name, base job config, grid, zip groups, derived
//! values, seeds, evals, resources, retries, backend), loaded with its path and text so later
//! errors can point at a line, and with its base job config read and resolved.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use stuffed_model::yaml::{self, YamlError};

use super::error::{at, SweepError};
use super::overrides::{self, Override};
use super::plan::{Plan, Source, VariedKeys};
use super::resources::{Backend, Resources};
use super::search::{SearchSpec, Settings};

fn two() -> u32 {
    2
}

/// A sweep as written in its YAML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// Letters, digits, `-`, `_` and `.`; prefixes every job's name.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The job config every point starts from.
    pub base: Base,
    /// Dotted job-config keys to lists of values; every combination is a job. Keys keep the
    /// order they are written in.
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, Vec<Value>>")]
    pub grid: Map<String, Value>,
    /// Groups of equally long lists advanced together; groups combine with the grid as a
    /// cartesian product.
    #[serde(default)]
    #[schemars(with = "Vec<std::collections::BTreeMap<String, Vec<Value>>>")]
    pub zip: Vec<Map<String, Value>>,
    /// Keys computed from others, in order (`train.steps: "{train.total_tokens} / 1024"`).
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, String>")]
    pub derived: Map<String, Value>,
    /// Every job is repeated per seed (setting `train.seed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<u64>,
    /// Replaces the base config's evals; strings with `{...}` are templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Vec<stuffed_model::train::config::EvalSpec>>")]
    pub evals: Option<Vec<Value>>,
    /// Replaces the base config's `evals_at` (evaluations during training) for every job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Vec<stuffed_model::train::config::EvalPoint>>")]
    pub evals_at: Option<Vec<Value>>,
    #[serde(default)]
    pub resources: Resources,
    /// Attempts after the first failure of a job.
    #[serde(default = "two")]
    pub retries: u32,
    #[serde(default)]
    pub backend: Backend,
    /// Adaptive threshold search over one ordered key, per cell of the other varied keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchSpec>,
    /// Job-config keys set on the command line (`sweep run --set KEY=VALUE`, recorded here):
    /// a list is a grid key, any other value the one value of every job; either replaces the
    /// grid's or derived entry of its key.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub set: Map<String, Value>,
}

/// The base job config: a path to a job config YAML file, or the config inline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged, expecting = "expected a path to a job config file or an inline job config mapping")]
pub enum Base {
    Path(PathBuf),
    Inline(#[schemars(with = "stuffed_model::train::JobConfig")] Map<String, Value>),
}

/// A sweep file read and checked, with its base job config resolved.
#[derive(Debug, Clone)]
pub struct LoadedSweep {
    pub spec: SweepSpec,
    /// The sweep file.
    pub path: PathBuf,
    /// Its text, for locating errors.
    pub text: String,
    pub base: BaseConfig,
    /// The checked shape of its jobs, built once here.
    pub(crate) plan: Plan,
    /// The search's values and engine settings, when the sweep has a `search:` block.
    pub search: Option<LoadedSearch>,
    /// Where `--set` arguments are recorded in `text`, so their problems name them.
    pub(crate) overrides: overrides::OverrideLines,
}

/// A sweep's `search:` block, checked.
#[derive(Debug, Clone)]
pub struct LoadedSearch {
    pub spec: SearchSpec,
    /// The searched values, ascending.
    pub values: Vec<Value>,
    pub settings: Settings,
}

/// The base job config as JSON, and where it is written.
#[derive(Debug, Clone)]
pub struct BaseConfig {
    pub value: Value,
    /// The file it was read from (the sweep file itself when inline).
    pub file: PathBuf,
    /// That file's text.
    pub text: String,
    /// True when written inline under the sweep's `base:` key.
    pub inline: bool,
}

impl BaseConfig {
    /// Line and column of `key` (a job-config path) where the base writes it, or of its nearest
    /// written parent.
    pub fn locate(&self, key: &str) -> Option<(usize, usize)> {
        let mut key = key.to_string();
        while !key.is_empty() && key != "." {
            let full = if self.inline { format!("base.{key}") } else { key.clone() };
            if let Some(loc) = yaml::locate(&self.text, &full) {
                return Some(loc);
            }
            key.truncate(key.rfind(['.', '[']).unwrap_or(0));
        }
        if self.inline {
            yaml::locate(&self.text, "base")
        } else {
            None
        }
    }
}

impl SweepSpec {
    /// Reads, parses and checks a sweep file, and reads its base job config.
    pub fn load(path: &Path) -> Result<LoadedSweep, SweepError> {
        SweepSpec::load_with(path, &[])
    }

    /// Reads a sweep file and records `overrides` (`--set KEY=VALUE`) in its `set:` block
    /// before it is parsed and checked like any sweep file; the returned text (what the
    /// database stores) holds them.
    pub fn load_with(path: &Path, overrides: &[Override]) -> Result<LoadedSweep, SweepError> {
        let text = stuffed_model::limits::read_text_bounded(path, stuffed_model::limits::MAX_CONFIG_BYTES).map_err(|e| {
            let e = e.to_string();
            let msg = e.strip_prefix(&format!("{}: ", path.display())).unwrap_or(&e).to_string();
            at(path, None, None, format!("cannot read: {msg}"))
        })?;
        SweepSpec::parse_with(&text, path, overrides)
    }

    /// Parses sweep YAML `text` (read from `path`) with `overrides` recorded in its `set:`
    /// block, as `load_with` does for a file.
    pub fn parse_with(text: &str, path: &Path, overrides: &[Override]) -> Result<LoadedSweep, SweepError> {
        if overrides.is_empty() {
            return SweepSpec::parse(text, path);
        }
        let (text, lines) = overrides::apply(text, path, overrides)?;
        let mut loaded = SweepSpec::parse(&text, path).map_err(|e| overrides::explain(e, path, &lines))?;
        loaded.overrides = lines;
        Ok(loaded)
    }

    /// Parses and checks sweep YAML read from `path` (relative base paths resolve against its
    /// directory).
    pub fn parse(text: &str, path: &Path) -> Result<LoadedSweep, SweepError> {
        let spec: SweepSpec = yaml::from_str(text, path).map_err(|e| tidy(e, text))?;
        let loc = |key: &str| yaml::locate(text, key);
        if let Err(msg) = crate::safety::check_sweep_name(&spec.name) {
            return Err(at(path, loc("name"), Some("name"), msg));
        }
        let base = resolve_base(&spec.base, path, text)?;
        let search = match &spec.search {
            None => None,
            Some(s) => {
                let err = |(field, msg): (&str, String)| {
                    let key = format!("search.{field}");
                    let loc = loc(&key).or_else(|| loc("search"));
                    at(path, loc, Some(&key), msg)
                };
                let values = s.values().map_err(err)?;
                let settings = s.settings(values.len()).map_err(err)?;
                Some(LoadedSearch { spec: s.clone(), values, settings })
            }
        };
        let searched = search.as_ref().map(|s| (s.spec.key.as_str(), s.values.as_slice()));
        let keys =
            VariedKeys { grid: &spec.grid, zip: &spec.zip, seeds: &spec.seeds, derived: &spec.derived, set: &spec.set, search: searched };
        let plan = Plan::new(&Source { path, text }, &keys)?;
        Ok(LoadedSweep { spec, path: path.to_path_buf(), text: text.to_string(), base, plan, search, overrides: vec![] })
    }
}

impl LoadedSweep {
    /// The sweep's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// `e` told against the `--set` argument it comes from, when it does.
    pub fn explain(&self, e: SweepError) -> SweepError {
        overrides::explain(e, &self.path, &self.overrides)
    }
}

/// Parser errors inside a value checked by a conversion (backend, memory, base) come back at
/// 1:1 and with the enclosing mapping's path before the message: point at the key instead
/// (at the unknown field itself when it is written in block style).
fn tidy(mut e: YamlError, text: &str) -> YamlError {
    let Some(key) = e.key.clone() else { return e };
    if let Some((prefix, rest)) = e.msg.split_once(": ") {
        if !prefix.contains(' ') && key.starts_with(prefix) {
            e.msg = rest.to_string();
        }
    }
    let unknown = e.msg.split("unknown field `").nth(1).and_then(|r| r.split('`').next());
    let inner = unknown.map(|u| format!("{key}.{u}"));
    if let Some(loc) = inner.as_deref().and_then(|k| yaml::locate(text, k)) {
        (e.line, e.column, e.key) = (Some(loc.0), Some(loc.1), inner);
    } else if (e.line, e.column) == (Some(1), Some(1)) {
        if let Some((line, column)) = yaml::locate(text, &key) {
            (e.line, e.column) = (Some(line), Some(column));
        }
    }
    e
}

fn resolve_base(base: &Base, sweep_path: &Path, sweep_text: &str) -> Result<BaseConfig, SweepError> {
    let rel = match base {
        Base::Inline(map) => {
            return Ok(BaseConfig {
                value: Value::Object(map.clone()),
                file: sweep_path.to_path_buf(),
                text: sweep_text.to_string(),
                inline: true,
            })
        }
        Base::Path(p) => p,
    };
    let beside = sweep_path.parent().map(|dir| dir.join(rel));
    let file = match beside {
        _ if rel.is_absolute() => rel.clone(),
        Some(b) if b.is_file() => b,
        _ if rel.is_file() => rel.clone(),
        _ => {
            let dir = sweep_path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let msg = format!("base job config `{}` not found (looked in {} and the current directory)", rel.display(), dir.display());
            return Err(at(sweep_path, yaml::locate(sweep_text, "base"), Some("base"), msg));
        }
    };
    let (value, text): (Value, String) = yaml::from_file(&file)?;
    if !value.is_object() {
        return Err(at(&file, None, None, "a job config must be a mapping"));
    }
    // Never echo a file that is not a config (`base: /etc/shadow`) through its "keys".
    if value.as_object().is_some_and(|m| m.keys().any(|k| !yaml::looks_like_key(k))) {
        return Err(at(&file, None, None, "not a job config: it has a key no config has (not shown; is this the right file?)"));
    }
    Ok(BaseConfig { value, file, text, inline: false })
}
