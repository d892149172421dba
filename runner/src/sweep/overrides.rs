//! Command-line overrides, Hydra style: `--set train.lr=1e-3 --set 'model.d_state=[64,128]'`.
//! Each is a job-config key and a YAML value; they are recorded in the sweep's own `set:` block
//! (appended to the sweep text, which is what the database stores), so the spec is checked
//! exactly like a file and a resume sees the same jobs. Problems found in that block are
//! reported against the `--set` argument that wrote it.
use std::path::Path;
use std::str::FromStr;

use serde_json::{Map, Value};
use stuffed_model::train::JobConfig;
use stuffed_model::yaml;

use super::error::{at, SweepError};
use super::keys::{locate_origin, KeyPath, Origin};
use super::SweepSpec;

/// Keys of the sweep file itself that are not job-config keys: `--set` does not take them.
const SWEEP_ONLY: [&str; 11] =
    ["name", "description", "base", "grid", "zip", "derived", "seeds", "resources", "retries", "backend", "search"];

/// One `--set KEY=VALUE`: a job-config key path and its value parsed as YAML.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The argument as given, for messages.
    pub arg: String,
    pub key: String,
    pub value: Value,
}

impl FromStr for Override {
    type Err = String;

    /// Parses `KEY=VALUE`; VALUE is YAML (`1e-3`, `[64, 128]`, `{kind: loss}`, `cpu`).
    fn from_str(arg: &str) -> Result<Override, String> {
        let Some((key, text)) = arg.split_once('=') else {
            return Err(format!("`{arg}`: expected KEY=VALUE, like train.lr=1e-3 or 'model.d_state=[64,128]'"));
        };
        let key = key.trim();
        KeyPath::parse(key).map_err(|e| format!("`{arg}`: {e}"))?;
        if let Some(first) = key.split(['.', '[']).next().filter(|k| SWEEP_ONLY.contains(k)) {
            return Err(format!(
                "`{arg}`: `{first}` is a key of the sweep file, not of its jobs; --set takes job-config keys like train.lr or model.d_state"
            ));
        }
        if text.trim().is_empty() {
            return Err(format!("`{arg}`: no value after `=` (write a YAML value, like {key}=1 or '{key}=[1, 2]')"));
        }
        let value: Value = yaml::value_from_str(text).map_err(|e| format!("`{arg}`: the value is not YAML: {e}"))?;
        if yaml::non_finite_key(text).is_some() {
            return Err(format!("`{arg}`: not a finite number (.nan and .inf are not values here)"));
        }
        Ok(Override { arg: arg.to_string(), key: key.to_string(), value })
    }
}

/// The line (1-based, in the sweep text) of each override's entry in the `set:` block, with
/// its argument.
pub type OverrideLines = Vec<(usize, String)>;

/// The sweep `text` (read from `path`) with `overrides` recorded in its `set:` block: appended
/// below the file as written, so every other line keeps its number; rewritten whole when the
/// file already has a `set:` block or is not written in block style. A key given twice keeps
/// the last value.
pub fn apply(text: &str, path: &Path, overrides: &[Override]) -> Result<(String, OverrideLines), SweepError> {
    let doc: Value = yaml::from_str(text, path)?;
    let Value::Object(mut doc) = doc else {
        return Err(at(path, None, None, "a sweep file must be a mapping of keys"));
    };
    let mut set = Map::new();
    for o in overrides {
        set.insert(o.key.clone(), o.value.clone());
    }
    let args = overrides.iter().map(|o| o.arg.as_str()).collect::<Vec<_>>().join(" --set ");
    let appended = (!doc.contains_key("set")).then(|| {
        let mut out = text.to_string();
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("# recorded from the command line: --set {}\nset:\n", args.replace('\n', " ")));
        for (k, v) in &set {
            out.push_str(&format!("  {}: {}\n", Value::String(k.clone()), v));
        }
        out
    });
    let mut expected = doc.clone();
    expected.insert("set".into(), Value::Object(set.clone()));
    let text = match appended.filter(|t| yaml::value_from_str::<Value>(t).ok().as_ref() == Some(&Value::Object(expected.clone()))) {
        Some(t) => t,
        None => {
            let merged = doc.entry("set").or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(m) = merged else {
                let loc = yaml::locate(text, "set");
                return Err(at(path, loc, Some("set"), "`set` must be a mapping of job-config keys to values"));
            };
            m.extend(set.clone());
            let body = yaml::to_string(&doc).map_err(|e| at(path, None, None, format!("cannot record --set: {e}")))?;
            format!("# {} with --set {}\n{body}", path.display(), args.replace('\n', " "))
        }
    };
    let lines = overrides.iter().filter_map(|o| locate_origin(&text, Origin::Set, &o.key).map(|(line, _)| (line, o.arg.clone()))).collect();
    Ok((text, lines))
}

/// Where errors of the one-job sweep of `job_with_overrides` are told (only `--set` lines are in it).
const COMMAND_LINE: &str = "<command line>";

/// The job config of `file` with `overrides` applied (`stuffed train --config FILE --set ...`):
/// built as the one-job sweep `base: FILE` with those overrides would build it, so keys, values
/// and messages (did-you-mean, the `--set` argument named) are exactly those of `sweep run
/// --set`. The config keeps its own name. A list value would make several jobs: refused.
pub fn job_with_overrides(file: &Path, overrides: &[Override]) -> Result<JobConfig, SweepError> {
    let own = JobConfig::load(file)?;
    let base = std::path::absolute(file).map_err(|e| at(file, None, None, format!("cannot resolve the path: {e}")))?;
    let text = format!("name: train\nbase: {}\n", Value::String(base.display().to_string()));
    let sweep = SweepSpec::parse_with(&text, Path::new(COMMAND_LINE), overrides)?;
    let n = sweep.plan.count();
    if n != 1 {
        let lists: Vec<&str> = overrides.iter().filter(|o| o.value.is_array()).map(|o| o.arg.as_str()).collect();
        return Err(SweepError::Override {
            arg: lists.join(" --set "),
            key: None,
            msg: format!(
                "a list value makes one job per value ({n} jobs here), which is `stuffed sweep run`; `stuffed train` trains one config (write a list-valued key's value as [[a, b]])"
            ),
        });
    }
    let mut jobs = super::expand(&sweep, 1)?;
    let mut job = jobs.remove(0).config;
    job.name = own.name;
    Ok(job)
}

/// `e` told against the `--set` argument whose entry it is located at, when it is one.
pub fn explain(e: SweepError, path: &Path, lines: &OverrideLines) -> SweepError {
    let SweepError::Yaml(y) = &e else { return e };
    if y.file != path {
        return e;
    }
    match y.line.and_then(|l| lines.iter().find(|(line, _)| *line == l)) {
        Some((_, arg)) => SweepError::Override { arg: arg.clone(), key: y.key.clone(), msg: y.msg.clone() },
        None => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ov(s: &str) -> Override {
        s.parse().unwrap()
    }

    #[test]
    fn values_are_yaml_and_keys_are_job_keys() {
        assert_eq!(ov("train.lr=1e-3").value, serde_json::json!(1e-3));
        assert_eq!(ov("model.d_state=[64, 128]").value, serde_json::json!([64, 128]));
        assert_eq!(ov("train.device=cpu").value, serde_json::json!("cpu"));
        assert_eq!(ov("evals[0].lengths=[[256, 512]]").key, "evals[0].lengths");
        for (bad, want) in [
            ("train.lr", "expected KEY=VALUE"),
            ("retries=3", "key of the sweep file"),
            ("train.lr=", "no value"),
            ("a..b=1", "not a key path"),
            ("train.lr=.nan", "finite"),
            ("x=[1,", "not YAML"),
        ] {
            let e = bad.parse::<Override>().unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn overrides_are_appended_keeping_the_file_lines() {
        let text = "name: s\nbase: job.yaml\ngrid:\n  model.d_state: [4, 8]\n";
        let (out, lines) = apply(text, Path::new("s.yaml"), &[ov("train.lr=0.01"), ov("model.d_state=[16]")]).unwrap();
        assert!(out.starts_with(text), "{out}");
        assert!(out.ends_with("set:\n  \"train.lr\": 0.01\n  \"model.d_state\": [16]\n"), "{out}");
        assert_eq!(lines, vec![(7, "train.lr=0.01".to_string()), (8, "model.d_state=[16]".to_string())]);
        // A file that has a `set:` block already is merged and rewritten.
        let (out, _) = apply(&out, Path::new("s.yaml"), &[ov("train.lr=0.1")]).unwrap();
        let doc: Value = yaml::value_from_str(&out).unwrap();
        assert_eq!(doc["set"], serde_json::json!({"train.lr": 0.1, "model.d_state": [16]}));
    }
}
