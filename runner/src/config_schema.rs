//! JSON Schemas of the job and sweep files, generated from the Rust types that read them
//! (`JobConfig`, `SweepSpec`), for editors (docs/schema/*.schema.json, `stuffed schema`). The
//! schemas check shape and key names; values are checked further when a file loads (ranges,
//! templates, cross-key rules), so a file the schema accepts may still be refused, with a
//! located message.
use serde_json::{json, Value};
use stuffed_model::train::JobConfig;

use crate::sweep::SweepSpec;

/// The files a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// A job config (`stuffed train --config`, a sweep's `base:` file).
    Job,
    /// A sweep file (`stuffed sweep run`).
    Sweep,
}

impl Kind {
    /// Where the committed copy lives, relative to the repository root.
    pub fn doc_path(self) -> &'static str {
        match self {
            Kind::Job => "docs/schema/job.schema.json",
            Kind::Sweep => "docs/schema/sweep.schema.json",
        }
    }

    /// The schema as JSON.
    pub fn schema(self) -> Value {
        match self {
            Kind::Job => job(),
            Kind::Sweep => sweep(),
        }
    }
}

/// The job config schema. A job file is also a sweep's `base:`, whose evaluations may hold
/// `{...}` templates filled per job (sweeps/campaign/base-collapse.yaml: `bucket: "{train.seq_len}
/// / 4"`), so evaluation fields take template strings here as in [`sweep`]; `stuffed train`
/// refuses an unfilled template when it loads the file, with a located message.
pub fn job() -> Value {
    let mut v = schemars::schema_for!(JobConfig).to_value();
    titled(&mut v, "stuffed job config");
    templated_evals(&mut v);
    v
}

/// The sweep file schema. Evaluations in a sweep (its `evals`, or its base's) may hold `{...}`
/// templates where numbers go, filled per job, so their fields also take strings here.
pub fn sweep() -> Value {
    let mut v = schemars::schema_for!(SweepSpec).to_value();
    titled(&mut v, "stuffed sweep file");
    templated_evals(&mut v);
    v
}

/// Lets the evaluation definitions' fields of schema `v` be template strings.
fn templated_evals(v: &mut Value) {
    if let Some(defs) = v.get_mut("$defs").and_then(Value::as_object_mut) {
        for name in ["LossSpec", "PasskeySpec", "StatesSpec", "EvalSpec", "PasskeyLengths"] {
            if let Some(def) = defs.get_mut(name) {
                templated(def);
            }
        }
    }
}

fn titled(v: &mut Value, title: &str) {
    if let Some(o) = v.as_object_mut() {
        o.insert("title".into(), json!(title));
    }
}

/// Lets every property under `v` (but `kind`, the evaluation's tag) be a template string.
fn templated(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if let Some(Value::Object(props)) = o.get_mut("properties") {
                for (name, p) in props.iter_mut() {
                    if name != "kind" {
                        let mut inner = p.take();
                        let description = inner.as_object_mut().and_then(|o| o.remove("description"));
                        *p = json!({"anyOf": [inner, {"type": "string", "pattern": "\\{"}]});
                        if let (Some(d), Some(o)) = (description, p.as_object_mut()) {
                            o.insert("description".into(), d);
                        }
                    }
                }
            }
            for (name, child) in o.iter_mut() {
                if name != "properties" {
                    templated(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(templated),
        _ => {}
    }
}

/// The committed schema text of `kind`: pretty JSON with a final newline.
pub fn render(kind: Kind) -> String {
    format!("{}\n", serde_json::to_string_pretty(&kind.schema()).unwrap_or_default())
}
