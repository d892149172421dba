//! Result filters (`--where model.d_state=64`, `--where train.seq_len>=512`,
//! `--where status!=completed`, `--where label~seq_len`): parsed into conditions and turned
//! into SQL with bound parameters only. Keys are job columns or dotted job-config paths
//! (read with json_extract); a value that parses as a number compares numerically.
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Ge,
    Le,
    Gt,
    Lt,
    /// Substring match.
    Contains,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    pub key: String,
    pub op: Op,
    pub value: String,
}

impl Cond {
    pub fn eq(key: &str, value: &str) -> Cond {
        Cond { key: key.into(), op: Op::Eq, value: value.into() }
    }
}

const OPS: [(&str, Op); 7] =
    [(">=", Op::Ge), ("<=", Op::Le), ("!=", Op::Ne), ("=", Op::Eq), (">", Op::Gt), ("<", Op::Lt), ("~", Op::Contains)];

impl FromStr for Cond {
    type Err = String;

    fn from_str(s: &str) -> Result<Cond, String> {
        let (at, sym, op) = OPS
            .iter()
            .filter_map(|(sym, op)| s.find(sym).map(|i| (i, *sym, *op)))
            .min_by_key(|(i, sym, _)| (*i, std::cmp::Reverse(sym.len())))
            .ok_or_else(|| format!("filter '{s}': expected KEY OP VALUE with OP one of = != >= <= > < ~"))?;
        let key = s[..at].trim();
        let value = s[at + sym.len()..].trim();
        if !valid_key(key) {
            return Err(format!("filter '{s}': invalid key '{key}' (expected a column like status or a config path like model.d_state)"));
        }
        if let Some(c) = value.chars().next().filter(|c| "=<>!~".contains(*c)) {
            let hint = if sym == "=" && c == '=' { " (did you mean `=`?)" } else { "" };
            return Err(format!("filter '{s}': `{sym}{c}` is not an operator{hint}; operators are = != >= <= > < ~"));
        }
        if !key.contains(['.', '[']) && column(key).is_none() && !CONFIG_KEYS.contains(&key) {
            let known: Vec<&str> = COLUMNS.iter().chain(CONFIG_KEYS).copied().collect();
            let near =
                known.iter().map(|k| (stuffed_model::yaml::edit_distance(key, k), *k)).min().filter(|(d, _)| *d <= 3).map(|(_, k)| k);
            return Err(format!(
                "filter '{s}': unknown column '{key}'{} (columns: {}; or a config path like model.d_state)",
                near.map_or(String::new(), |k| format!(", did you mean '{k}'?")),
                COLUMNS.join(", ")
            ));
        }
        if key.contains(['.', '[']) {
            check_config_path(key).map_err(|e| format!("filter '{s}': {e}"))?;
        }
        let value = value.trim_matches('"').trim_matches('\'');
        if matches!(op, Op::Ge | Op::Le | Op::Gt | Op::Lt) && !value.parse::<f64>().is_ok_and(f64::is_finite) {
            return Err(format!("filter '{s}': `{sym}` compares numbers, and '{value}' is not a number"));
        }
        Ok(Cond { key: key.into(), op, value: value.to_string() })
    }
}

/// Refuses a config path that no job config has (`model.d_stat`), with a did-you-mean, as the
/// sweep YAML does: the path is tried on a job config (a config with only that key, read with
/// the job config's own unknown-field check). Paths into values that the check cannot see
/// (an evaluation without its `kind`, a list of points) are let through.
fn check_config_path(key: &str) -> Result<(), String> {
    let names: Vec<&str> = key.split('.').collect();
    let mut probe = serde_json::Value::Null;
    for seg in names.iter().rev() {
        let (name, idx) = seg.split_at(seg.find('[').unwrap_or(seg.len()));
        for _ in 0..idx.matches('[').count() {
            probe = serde_json::Value::Array(vec![probe]);
        }
        probe = serde_json::json!({ name: probe });
    }
    let Err(e) = serde_json::from_value::<stuffed_model::train::JobConfig>(probe) else { return Ok(()) };
    let msg = e.to_string();
    let Some(unknown) = msg.split("unknown field `").nth(1).and_then(|r| r.split('`').next()) else { return Ok(()) };
    // The first segment of that name is the unknown one (keys are read outside in).
    let Some(at) = names.iter().position(|seg| seg.split('[').next() == Some(unknown)) else { return Ok(()) };
    let owner = if at == 0 { "a job config".to_string() } else { format!("`{}`", names[..at].join(".")) };
    let hint = match stuffed_model::yaml::did_you_mean(&msg) {
        Some(fix) => {
            let mut fixed: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            fixed[at] = format!("{fix}{}", &names[at][unknown.len()..]);
            format!("did you mean '{}'?", fixed.join("."))
        }
        None => msg.split_once(", ").map_or(msg.clone(), |(_, expected)| expected.to_string()),
    };
    Err(format!("'{key}' is not a job config key: {owner} has no field '{unknown}' ({hint})"))
}

/// `name(.name)*` where each name is `[A-Za-z0-9_]+` optionally followed by `[N]` indices.
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.split('.').all(|seg| {
            let (name, rest) = seg.split_at(seg.find('[').unwrap_or(seg.len()));
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && rest.split_inclusive(']').all(|idx| {
                    idx.strip_prefix('[')
                        .and_then(|i| i.strip_suffix(']'))
                        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
                })
        })
}

pub(super) enum Bind {
    Text(String),
    Num(f64),
}

/// The most conditions one query takes (SQLite refuses deeper expression trees).
pub const MAX_CONDS: usize = 64;

/// Columns a filter may name directly (see `column`).
const COLUMNS: &[&str] = &["id", "sweep", "label", "status", "state_size", "n_params", "train_len", "attempts", "error_class", "last_loss"];
/// Top-level job-config keys that are values themselves (the others are sections: model.x).
const CONFIG_KEYS: &[&str] = &["name", "tokenizer", "init_from"];

/// Job columns a filter may name directly.
fn column(key: &str) -> Option<&'static str> {
    Some(match key {
        "id" => "j.id",
        "sweep" => "sj.sweep",
        "label" => "sj.label",
        "status" => "j.status",
        "state_size" => "j.state_size",
        "n_params" => "j.n_params",
        "train_len" => "j.train_len",
        "attempts" => "j.attempts",
        "error_class" => "j.error_class",
        "last_loss" => "j.last_loss",
        _ => return None,
    })
}

/// `WHERE ...` (empty when no conditions) and the values to bind, in order.
pub(super) fn sql(conds: &[Cond]) -> (String, Vec<Bind>) {
    let mut parts = Vec::new();
    let mut binds = Vec::new();
    for c in conds {
        let expr = match column(&c.key) {
            Some(col) => col.to_string(),
            None => {
                binds.push(Bind::Text(format!("$.{}", c.key)));
                "json_extract(j.config, ?)".to_string()
            }
        };
        let num = c.value.parse::<f64>().ok().filter(|x| x.is_finite());
        let part = match c.op {
            Op::Contains => {
                binds.push(Bind::Text(c.value.clone()));
                format!("instr(CAST({expr} AS TEXT), ?) > 0")
            }
            op => {
                let sym = match op {
                    Op::Eq => "=",
                    Op::Ne => "!=",
                    Op::Ge => ">=",
                    Op::Le => "<=",
                    Op::Gt => ">",
                    Op::Lt => "<",
                    Op::Contains => unreachable!("handled above"),
                };
                binds.push(match num {
                    Some(x) => Bind::Num(x),
                    None => Bind::Text(c.value.clone()),
                });
                format!("{expr} {sym} ?")
            }
        };
        parts.push(part);
    }
    if parts.is_empty() {
        (String::new(), binds)
    } else {
        (format!("WHERE {}", parts.join(" AND ")), binds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_operators() {
        assert_eq!("model.d_state=64".parse::<Cond>().unwrap(), Cond { key: "model.d_state".into(), op: Op::Eq, value: "64".into() });
        assert_eq!("train.seq_len>=512".parse::<Cond>().unwrap().op, Op::Ge);
        assert_eq!("status!=completed".parse::<Cond>().unwrap().op, Op::Ne);
        assert_eq!("label~seq".parse::<Cond>().unwrap().op, Op::Contains);
        assert!("nothing".parse::<Cond>().is_err());
        assert!("a;drop table jobs=1".parse::<Cond>().is_err());
        // Found by tests/fuzz.rs: keys that are not JSON paths.
        for bad in [".=1", "a..b=1", "a.=1", "a[=1", "a[x]=1", "[0]=1"] {
            assert!(bad.parse::<Cond>().is_err(), "{bad}");
        }
        assert!("evals[0].len>=8".parse::<Cond>().is_ok());
    }

    #[test]
    fn filters_that_would_match_nothing_silently_are_errors() {
        let e = "statsu=completed".parse::<Cond>().unwrap_err();
        assert!(e.contains("unknown column 'statsu'") && e.contains("did you mean 'status'"), "{e}");
        let e = "status==completed".parse::<Cond>().unwrap_err();
        assert!(e.contains("`==` is not an operator") && e.contains("did you mean `=`"), "{e}");
        let e = "train.seq_len>=big".parse::<Cond>().unwrap_err();
        assert!(e.contains("compares numbers"), "{e}");
        let e = "model.d_stat=4".parse::<Cond>().unwrap_err();
        assert!(
            e.contains("'model.d_stat' is not a job config key: `model` has no field 'd_stat'")
                && e.contains("did you mean 'model.d_state'?"),
            "{e}"
        );
        let e = "trian.seq_len=64".parse::<Cond>().unwrap_err();
        assert!(e.contains("a job config has no field 'trian'") && e.contains("did you mean 'train.seq_len'?"), "{e}");
        let e = "model.zzzzzzzz=1".parse::<Cond>().unwrap_err();
        assert!(e.contains("has no field 'zzzzzzzz'") && e.contains("expected one of"), "{e}");
        for ok in [
            "tokenizer=gpt2",
            "model.d_state<=64",
            "status=completed",
            "label~x",
            "train.lr>1e-3",
            "train.seq_len=64",
            "data.corpus~x",
            "data.mixture[0].weight>0",
            "evals[0].len>=8",
            "evals_at[0]=1",
            "early_stop.stop_when=true",
        ] {
            assert!(ok.parse::<Cond>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn values_are_bound_never_spliced() {
        let c: Cond = "label=x' OR '1'='1".parse().unwrap();
        let (clause, binds) = sql(&[c]);
        assert_eq!(clause, "WHERE sj.label = ?");
        assert!(matches!(&binds[0], Bind::Text(s) if s.contains("OR")));
    }
}
