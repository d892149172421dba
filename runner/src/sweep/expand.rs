//! Expansion: every combination of the grid, the zip groups and the seeds applied to the base
//! job config, then the derived keys and eval templates evaluated, then the result typed as a
//! `JobConfig`, validated, labelled and hashed into a stable job id. Errors point at the sweep
//! key that set the offending value, or else at the base config, and name the job.
use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use stuffed_model::train::JobConfig;
use stuffed_model::yaml;
use stuffed_protocol::job::label_value;

use super::error::{at, SweepError};
use super::expr;
use super::keys::{locate_origin, KeyPath, Segment};
use super::plan::{Plan, SweepKey};
use super::spec::LoadedSweep;

/// One point of a sweep, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpandedJob {
    /// First 16 hex digits of the SHA-256 of the config's canonical JSON (see `job_id`).
    pub id: String,
    /// `name` is `SWEEP/LABEL` (the sweep's name when nothing varies).
    pub config: JobConfig,
    /// The grid, zip and seed keys and their values for this job, in written order.
    pub varied: Vec<(String, Value)>,
    /// `d_state=16 seq_len=256`: each varied key's last name (the full key where two share
    /// one) and value.
    pub label: String,
    /// Position in the expansion (the first grid key varies slowest).
    pub index: usize,
}

/// All jobs of the sweep, or the first problem. Fails before building any job when there
/// would be more than `max_jobs`.
pub fn expand(sweep: &LoadedSweep, max_jobs: usize) -> Result<Vec<ExpandedJob>, SweepError> {
    expand_all(sweep, max_jobs).map_err(|e| sweep.explain(e))
}

fn expand_all(sweep: &LoadedSweep, max_jobs: usize) -> Result<Vec<ExpandedJob>, SweepError> {
    let plan = &sweep.plan;
    let jobs = plan.count();
    if jobs > max_jobs as u128 {
        return Err(SweepError::TooManyJobs { file: sweep.path.clone(), jobs, max: max_jobs });
    }
    let names = label_names(plan);
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut out = Vec::with_capacity(jobs as usize);
    for index in 0..jobs as usize {
        let values = plan.combination(index);
        let varied: Vec<(String, Value)> = plan.varied.iter().map(|k| k.text.clone()).zip(values).collect();
        let label = names.iter().zip(&varied).map(|(n, (_, v))| format!("{n}={}", label_value(v))).collect::<Vec<_>>().join(" ");
        let mut config = build(sweep, plan, &varied)?;
        config.name = Some(if label.is_empty() { sweep.spec.name.clone() } else { format!("{}/{label}", sweep.spec.name) });
        if let Some(s) = &sweep.search {
            let kinds: Vec<&str> = config.evals.iter().map(|e| e.kind()).collect();
            if let Err(msg) = s.spec.criterion.resolve(&kinds) {
                let loc = yaml::locate(&sweep.text, "search.criterion");
                return Err(at(&sweep.path, loc, Some("search.criterion"), format!("{msg} (job {label})")));
            }
        }
        let id = job_id(&config).map_err(|e| at(&sweep.path, None, None, format!("cannot hash job `{label}`: {e}")))?;
        if let Some(first) = seen.insert(id.clone(), label.clone()) {
            return Err(SweepError::DuplicateJob { file: sweep.path.clone(), id, first, second: label });
        }
        out.push(ExpandedJob { id, config, varied, label, index });
    }
    Ok(out)
}

/// The job id: the first 16 hex digits of the SHA-256 of `canonical_json(config)`.
pub fn job_id(config: &JobConfig) -> Result<String, serde_json::Error> {
    let digest = Sha256::digest(canonical_json(config)?.as_bytes());
    Ok(digest.iter().take(8).map(|b| format!("{b:02x}")).collect())
}

/// The config as compact JSON with every default filled in, `name` left out and object keys
/// sorted: equal for configs that differ only in key order, number spelling or label.
pub fn canonical_json(config: &JobConfig) -> Result<String, serde_json::Error> {
    let mut v = serde_json::to_value(config)?;
    if let Value::Object(m) = &mut v {
        m.remove("name");
    }
    serde_json::to_string(&sorted(v))
}

fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect::<Map<_, _>>())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Label names: each varied key's last name, or the full key where two share a last name.
fn label_names(plan: &Plan) -> Vec<String> {
    let last: Vec<&str> = plan.varied.iter().map(|k| k.key.last_name()).collect();
    plan.varied
        .iter()
        .zip(&last)
        .map(|(k, n)| if last.iter().filter(|m| *m == n).count() > 1 { k.text.clone() } else { n.to_string() })
        .collect()
}

/// The resolved, validated config of one combination.
fn build(sweep: &LoadedSweep, plan: &Plan, varied: &[(String, Value)]) -> Result<JobConfig, SweepError> {
    let job = Job { sweep, plan, varied };
    let mut v = sweep.base.value.clone();
    if let (Value::Object(m), Some(evals)) = (&mut v, &sweep.spec.evals) {
        m.insert("evals".into(), Value::Array(evals.clone()));
    }
    if let (Value::Object(m), Some(es)) = (&mut v, sweep.search.as_ref().and_then(|s| s.spec.early_stop())) {
        let es = serde_json::to_value(es).map_err(|e| at(&sweep.path, None, Some("search.early_stop"), e.to_string()))?;
        m.insert("early_stop".into(), es);
    }
    if let (Value::Object(m), Some(points)) = (&mut v, &sweep.spec.evals_at) {
        m.insert("evals_at".into(), Value::Array(points.clone()));
    }
    for (key, (_, value)) in plan.varied.iter().zip(varied) {
        key.key.set(&mut v, value.clone()).map_err(|msg| job.at_key(key, msg))?;
    }
    for (key, template) in &plan.derived {
        let value = expr::evaluate(template, &v).map_err(|e| job.at_key(key, format!("derived `{}` = {e}", key.text)))?;
        key.key.set(&mut v, value).map_err(|msg| job.at_key(key, msg))?;
    }
    job.fill_eval_templates(&mut v)?;
    if let Value::Object(m) = &mut v {
        m.remove("name");
    }
    let config: JobConfig = serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        job.problem(&path, &e.into_inner().to_string())
    })?;
    match config.problems().into_iter().next() {
        Some((key, msg)) => Err(job.problem(&key, &msg)),
        None => Ok(config),
    }
}

/// One combination being built, for locating its errors.
struct Job<'a> {
    sweep: &'a LoadedSweep,
    plan: &'a Plan,
    varied: &'a [(String, Value)],
}

impl Job<'_> {
    /// ` (job model.d_state=16 train.seq_len=256)`, or nothing when nothing varies.
    fn suffix(&self) -> String {
        if self.varied.is_empty() {
            return String::new();
        }
        let parts: Vec<String> = self.varied.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(" (job {})", parts.join(" "))
    }

    fn at_key(&self, key: &SweepKey, msg: String) -> SweepError {
        let loc = locate_origin(&self.sweep.text, key.origin, &key.text);
        at(&self.sweep.path, loc, Some(&key.text), format!("{msg}{}", self.suffix()))
    }

    /// Evaluates `{...}` templates in every string inside `evals`.
    fn fill_eval_templates(&self, v: &mut Value) -> Result<(), SweepError> {
        let ctx = v.clone();
        let Some(evals) = v.get_mut("evals") else {
            return Ok(());
        };
        fill(evals, &ctx, "evals".into()).map_err(|(path, e)| {
            let (file, loc) = self.where_written(&path);
            at(&file, loc, Some(&path), format!("{e}{}", self.suffix()))
        })
    }

    /// Where a job-config key not set by a grid, zip or derived key is written: the sweep's
    /// `evals` (or `evals_at`) when it has them, else the base config.
    fn where_written(&self, key: &str) -> (PathBuf, Option<(usize, usize)>) {
        let sweep = self.sweep;
        let in_sweep = if key.starts_with("evals_at") { sweep.spec.evals_at.is_some() } else { sweep.spec.evals.is_some() };
        if in_sweep && key.starts_with("evals") {
            let mut k = key.to_string();
            loop {
                if let Some(loc) = yaml::locate(&sweep.text, &k) {
                    return (sweep.path.clone(), Some(loc));
                }
                match k.rfind(['.', '[']) {
                    Some(cut) => k.truncate(cut),
                    None => return (sweep.path.clone(), None),
                }
            }
        }
        (sweep.base.file.clone(), sweep.base.locate(key))
    }

    /// An error about job-config key `key` (`.` for the whole config): located at the sweep key
    /// that set it (or a value inside it), else where the base or the sweep's evals write it.
    fn problem(&self, key: &str, msg: &str) -> SweepError {
        let unknown = msg.split("unknown field `").nth(1).and_then(|r| r.split('`').next());
        let mut path: Vec<Segment> = KeyPath::parse(key).map(|p| p.segments().to_vec()).unwrap_or_default();
        let keys: Vec<&SweepKey> = self.plan.varied.iter().chain(self.plan.derived.iter().map(|(k, _)| k)).collect();
        let Some(u) = unknown else {
            let setter = (!path.is_empty()).then(|| {
                let p = path.as_slice();
                keys.iter().find(|k| p.starts_with(k.key.segments())).or_else(|| keys.iter().find(|k| k.key.segments().starts_with(p)))
            });
            let key_text = (!path.is_empty()).then(|| prefix_text(&path));
            if let Some(Some(k)) = setter {
                let loc = locate_origin(&self.sweep.text, k.origin, &k.text);
                return at(&self.sweep.path, loc, key_text.as_deref(), format!("{msg}{}", self.suffix()));
            }
            let (file, loc) = self.where_written(key_text.as_deref().unwrap_or(""));
            return at(&file, loc, key_text.as_deref(), format!("{msg}{}", self.suffix()));
        };
        // serde_path_to_error may or may not include the unknown field itself in the path.
        let field = Segment::Key(u.to_string());
        if path.last() == Some(&field) {
            path.pop();
        }
        let depth = path.len();
        let bad = keys.iter().find(|k| {
            let s = k.key.segments();
            s.len() > depth && s.starts_with(&path) && s[depth] == field
        });
        if let Some(k) = bad {
            return self.at_key(k, unknown_key_message(k, depth, u, msg));
        }
        path.push(field);
        let full = prefix_text(&path);
        let msg = match yaml::did_you_mean(msg) {
            Some(s) => format!("{msg} (did you mean `{s}`?)"),
            None => msg.to_string(),
        };
        let (file, loc) = self.where_written(&full);
        at(&file, loc, Some(&full), format!("{msg}{}", self.suffix()))
    }
}

/// "`model.d_stat` is not a job config key: `model` has no field `d_stat` (did you mean
/// `model.d_state`?)", with the suggestion as a full key.
fn unknown_key_message(key: &SweepKey, depth: usize, unknown: &str, serde_msg: &str) -> String {
    let segs = key.key.segments();
    let owner = if depth == 0 { "a job config".to_string() } else { format!("`{}`", prefix_text(&segs[..depth])) };
    match yaml::did_you_mean(serde_msg) {
        Some(s) => {
            let mut fixed = segs.to_vec();
            fixed[depth] = Segment::Key(s);
            format!("`{}` is not a job config key: {owner} has no field `{unknown}` (did you mean `{}`?)", key.text, prefix_text(&fixed))
        }
        None => format!("`{}` is not a job config key: {owner} has no field `{unknown}` ({serde_msg})", key.text),
    }
}

fn prefix_text(segs: &[Segment]) -> String {
    let mut out = String::new();
    for seg in segs {
        match seg {
            Segment::Key(k) if out.is_empty() => out.push_str(k),
            Segment::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Replaces every template string under `v` (at key path `path`) by its value.
fn fill(v: &mut Value, ctx: &Value, path: String) -> Result<(), (String, expr::ExprError)> {
    match v {
        Value::String(s) if expr::is_template(s) => *v = expr::evaluate(s, ctx).map_err(|e| (path, e))?,
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                fill(item, ctx, format!("{path}[{i}]"))?;
            }
        }
        Value::Object(m) => {
            for (k, item) in m.iter_mut() {
                fill(item, ctx, format!("{path}.{k}"))?;
            }
        }
        _ => {}
    }
    Ok(())
}
