//! What each job of a sweep asks for (GPUs, memory, a timeout) and where jobs run (the local
//! machine or Slurm). Values are checked when the sweep loads, so the accessors cannot fail.
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// GPUs per job; 0 runs on the CPU.
    #[serde(default = "one")]
    pub gpus: u32,
    /// `auto`, a number of GB, or a string like `12GB` / `512MB`.
    #[serde(default)]
    pub memory: MemorySpec,
    /// Wall-clock limit per attempt: `90m`, `2h`, `3600s`, `1h30m` or a number of seconds.
    #[serde(default, deserialize_with = "timeout", skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "duration_schema")]
    pub timeout: Option<String>,
}

impl Default for Resources {
    fn default() -> Self {
        Resources { gpus: 1, memory: MemorySpec::Auto, timeout: None }
    }
}

impl Resources {
    /// Memory per job in GB (1 GB = 1024 MB); None for `auto`.
    pub fn memory_gb(&self) -> Option<f64> {
        match self.memory {
            MemorySpec::Auto => None,
            MemorySpec::Gb(gb) => Some(gb),
        }
    }

    /// The timeout in seconds, if one is set.
    pub fn timeout_secs(&self) -> Option<u64> {
        self.timeout.as_deref().and_then(|t| parse_duration(t).ok())
    }
}

fn duration_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 1}]})
}

impl schemars::JsonSchema for MemorySpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MemorySpec".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`auto`, a number of GB, or a size like `12GB` / `512MB`.",
            "anyOf": [{"type": "string"}, {"type": "number", "exclusiveMinimum": 0}]
        })
    }
}

impl schemars::JsonSchema for Backend {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Backend".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut slurm = generator.root_schema_for::<SlurmBackend>().to_value();
        if let Some(o) = slurm.as_object_mut() {
            o.remove("$schema");
            o.remove("title");
            if let Some(p) = o.get_mut("properties").and_then(|p| p.as_object_mut()) {
                p.insert("kind".into(), serde_json::json!({"const": "slurm"}));
            }
            o.insert("required".into(), serde_json::json!(["kind"]));
        }
        schemars::json_schema!({
            "description": "Where the jobs run: `local`, `slurm`, or a mapping with `kind: local` or `kind: slurm` and sbatch settings.",
            "anyOf": [
                {"enum": ["local", "slurm"]},
                {"type": "object", "additionalProperties": false, "required": ["kind"], "properties": {"kind": {"const": "local"}}},
                slurm
            ]
        })
    }
}

fn timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = match Value::deserialize(d)? {
        Value::String(s) => s,
        Value::Number(n) => n.to_string(),
        other => return Err(serde::de::Error::custom(format!("expected a duration like \"90m\", got {other}"))),
    };
    parse_duration(&text).map_err(serde::de::Error::custom)?;
    Ok(Some(text))
}

/// Seconds in `90m`, `2h`, `3600s`, `1d`, `1h30m` or a plain `3600`.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || format!("`{text}` is not a duration (expected e.g. \"90m\", \"2h\", \"3600s\" or a number of seconds)");
    let t = text.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return if secs > 0 { Ok(secs) } else { Err(format!("the duration must be positive, got `{text}`")) };
    }
    let (mut total, mut rest) = (0u64, t);
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        let unit = rest[digits..].chars().next().ok_or_else(bad)?;
        let scale = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(bad()),
        };
        total = n.checked_mul(scale).and_then(|s| total.checked_add(s)).ok_or_else(bad)?;
        rest = rest[digits + 1..].trim_start();
    }
    if total == 0 {
        return Err(format!("the duration must be positive, got `{text}`"));
    }
    Ok(total)
}

/// Memory per job.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub enum MemorySpec {
    /// Let the backend decide.
    #[default]
    Auto,
    Gb(f64),
}

impl TryFrom<Value> for MemorySpec {
    type Error = String;
    fn try_from(v: Value) -> Result<Self, String> {
        let gb = match &v {
            Value::String(s) if s.trim() == "auto" => return Ok(MemorySpec::Auto),
            Value::String(s) => parse_memory_gb(s)?,
            Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
            other => return Err(format!("expected `auto`, a number of GB or a size like \"12GB\", got {other}")),
        };
        if gb > 0.0 && gb.is_finite() {
            Ok(MemorySpec::Gb(gb))
        } else {
            Err(format!("memory must be a positive size, got {v}"))
        }
    }
}

impl From<MemorySpec> for Value {
    fn from(m: MemorySpec) -> Value {
        match m {
            MemorySpec::Auto => Value::from("auto"),
            MemorySpec::Gb(gb) => Value::from(gb),
        }
    }
}

/// GB in `12GB`, `12G`, `12GiB`, `512MB`, `1.5TB` or a plain `12`.
pub fn parse_memory_gb(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "g" | "gb" | "gib" => 1.0,
        "m" | "mb" | "mib" => 1.0 / 1024.0,
        "t" | "tb" | "tib" => 1024.0,
        _ => f64::NAN,
    };
    match num.parse::<f64>() {
        Ok(n) if scale.is_finite() => Ok(n * scale),
        _ => Err(format!("`{text}` is not a memory size (expected `auto`, a number of GB, or e.g. \"12GB\", \"512MB\")")),
    }
}

/// Where the jobs run: `backend: local`, or a mapping with `kind: local` or `kind: slurm`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", try_from = "Value")]
pub enum Backend {
    /// Worker processes on this machine.
    #[default]
    Local,
    Slurm(SlurmBackend),
}

/// sbatch settings; everything but `gres` is left to the cluster's defaults when unset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlurmBackend {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    /// sbatch `--time`, e.g. `04:00:00`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_per_task: Option<u32>,
    /// sbatch `--mem`, e.g. `32G`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    #[serde(default = "default_gres")]
    pub gres: String,
    /// Jobs of this sweep queued or running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    /// Extra `#SBATCH` lines, e.g. `--constraint=a100`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_sbatch: Vec<String>,
}

fn default_gres() -> String {
    "gpu:1".into()
}

impl Default for SlurmBackend {
    fn default() -> Self {
        SlurmBackend {
            partition: None,
            account: None,
            qos: None,
            time: None,
            cpus_per_task: None,
            mem: None,
            gres: default_gres(),
            max_concurrent: None,
            extra_sbatch: vec![],
        }
    }
}

/// The mapping form of a backend.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum BackendTable {
    Local(NoFields),
    Slurm(SlurmBackend),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

impl TryFrom<Value> for Backend {
    type Error = String;
    fn try_from(v: Value) -> Result<Self, String> {
        match v {
            Value::String(s) => match s.as_str() {
                "local" => Ok(Backend::Local),
                "slurm" => Ok(Backend::Slurm(SlurmBackend::default())),
                _ => Err(format!("unknown variant `{s}`, expected `local` or `slurm`")),
            },
            Value::Object(_) => match serde_json::from_value(v).map_err(|e| e.to_string())? {
                BackendTable::Local(NoFields {}) => Ok(Backend::Local),
                BackendTable::Slurm(s) => {
                    crate::safety::check_slurm_backend(&s)?;
                    Ok(Backend::Slurm(s))
                }
            },
            other => Err(format!("expected `local` or a mapping with `kind: local` or `kind: slurm`, got {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90m"), Ok(5400));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("3600s"), Ok(3600));
        assert_eq!(parse_duration("3600"), Ok(3600));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        for bad in ["", "0", "2x", "h", "1.5h", "-3"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory_gb("12GB"), Ok(12.0));
        assert_eq!(parse_memory_gb("512MB"), Ok(0.5));
        assert_eq!(parse_memory_gb("1.5 TB"), Ok(1536.0));
        assert_eq!(parse_memory_gb("8"), Ok(8.0));
        assert!(parse_memory_gb("12PB").is_err());
        assert!(MemorySpec::try_from(Value::from(0)).is_err());
        assert_eq!(MemorySpec::try_from(Value::from("auto")), Ok(MemorySpec::Auto));
    }
}
