//! YAML configs with errors a user can act on: `FILE:LINE:COL: key a.b.c: what was expected`,
//! with a did-you-mean suggestion for unknown keys. Syntax and type errors come from the
//! parser's own location; semantic errors found after parsing are located by the key path.
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted key path (`train.seq_len`, `evals[1].len`), when known.
    pub key: Option<String>,
    pub msg: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        if let Some(k) = &self.key {
            write!(f, ": key `{k}`")?;
        }
        write!(f, ": {}", self.msg)
    }
}

impl std::error::Error for YamlError {}

/// The parser's bounds on hostile input (docs/security.md): a config has hundreds of nodes,
/// not hundreds of thousands, and no reason to expand an alias more than a few times, so a
/// "billion laughs" document or one nested thousands deep is refused in milliseconds. The
/// file size is bounded before parsing (`limits::MAX_CONFIG_BYTES`).
pub const MAX_NODES: usize = 100_000;
/// Deepest nesting of mappings and sequences.
pub const MAX_DEPTH: usize = 64;
/// Aliases (`*name`) in one document.
pub const MAX_ALIASES: usize = 1_000;
/// Events replayed through aliases in one document (an alias replays its anchor's events).
pub const MAX_REPLAYED_EVENTS: usize = 100_000;

/// Parser options: YAML 1.2 booleans only (`yes`/`no`/`on`/`off` stay strings), duplicate keys
/// are errors, and the bounds above.
pub fn options() -> serde_saphyr::Options {
    let mut alias_limits = serde_saphyr::options::AliasLimits::default();
    alias_limits.max_total_replayed_events = MAX_REPLAYED_EVENTS;
    alias_limits.max_replay_stack_depth = MAX_DEPTH;
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: MAX_NODES,
            max_depth: MAX_DEPTH,
            max_aliases: MAX_ALIASES,
            max_events: 4 * MAX_NODES,
            max_documents: 1,
        },
        alias_limits: alias_limits,
        strict_booleans: true,
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::PassThrough,
        with_snippet: false,
    }
}

/// Parses one YAML value (a `--set` value, a line of a config) into T; the message has no
/// location.
pub fn value_from_str<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| message(&e, text))
}

/// Writes `value` as block YAML.
pub fn to_string<T: serde::Serialize>(value: &T) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(value)
}

/// Parses `text` (read from `file`) into T.
pub fn from_str<T: DeserializeOwned>(text: &str, file: &Path) -> Result<T, YamlError> {
    if text.trim().is_empty() {
        return Err(YamlError { file: file.into(), line: None, column: None, key: None, msg: "the file is empty".into() });
    }
    if let Some(key) = non_finite_key(text) {
        let msg = "not a finite number (.nan and .inf are not values here)";
        return Err(key_error(text, file, &key, msg));
    }
    let mut path = None;
    let parsed = serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = Some(e.path().to_string());
            e.into_inner()
        })
    });
    parsed.map_err(|inner| {
        let path = path.unwrap_or_default();
        let key = (path != "." && path != "?" && !path.is_empty()).then_some(path);
        let msg = message(&inner, text);
        // A file that is not a config at all (`base: /etc/shadow`): say so without echoing
        // its content, which the parser's message would quote.
        let msg = match (&key, not_a_mapping(&inner, text)) {
            (None, Some(found)) => {
                format!("not a config: expected a YAML mapping of keys, found a {found} (is this the right file?)")
            }
            _ => msg,
        };
        // An unknown "key" that no config could have (`root:$6$...` of /etc/shadow) is file
        // content: not shown.
        let (key, msg) = match msg.split("unknown field `").nth(1).and_then(|r| r.split('`').next()) {
            Some(field) if !looks_like_key(field) => {
                (None, "not a config: it has a key no config has (not shown; is this the right file?)".to_string())
            }
            _ => (key, msg),
        };
        let (line, column) = match inner.location() {
            Some(l) if l.line() > 0 => (Some(l.line() as usize), Some(l.column() as usize)),
            _ => key.as_deref().and_then(|k| locate(text, k)).map_or((None, None), |(l, c)| (Some(l), Some(c))),
        };
        let msg = match did_you_mean(&msg) {
            Some(s) => format!("{msg} (did you mean `{s}`?)"),
            None => msg,
        };
        YamlError { file: file.into(), line, column, key, msg }
    })
}

/// The parser's message for `e` without its location: serde's own wording for type, value
/// and field errors (`unknown field `x`, expected one of `a`, `b``), the parser's plain
/// wording for the rest.
fn message(e: &serde_saphyr::Error, text: &str) -> String {
    use serde_saphyr::{render_options, Error as E, SnippetMode, UserMessageFormatter};
    fn one_of(expected: &[&str]) -> String {
        let quoted: Vec<String> = expected.iter().map(|x| format!("`{x}`")).collect();
        match quoted.as_slice() {
            [] => "there are none".into(),
            [a] => format!("expected {a}"),
            [a, b] => format!("expected {a} or {b}"),
            all => format!("expected one of {}", all.join(", ")),
        }
    }
    match e.without_snippet() {
        E::Message { msg, .. } => msg.clone(),
        E::SerdeInvalidType { unexpected, expected, .. } => format!("invalid type: {unexpected}, expected {expected}"),
        E::SerdeInvalidValue { unexpected, expected, .. } => format!("invalid value: {unexpected}, expected {expected}"),
        E::SerdeInvalidLength { len, expected, .. } => format!("invalid length {len}, expected {expected}"),
        E::SerdeUnknownField { field, expected, .. } => format!("unknown field `{field}`, {}", one_of(expected)),
        E::SerdeUnknownVariant { variant, expected, .. } => format!("unknown variant `{variant}`, {}", one_of(expected)),
        E::SerdeMissingField { field, .. } => format!("missing field `{field}`"),
        E::InvalidScalar { ty, location } => {
            let (from, len) = (location.span().byte_offset(), location.span().byte_len());
            let written = from.zip(len).and_then(|(f, l)| text.get(f as usize..(f + l) as usize)).filter(|w| w.len() <= 64);
            match written {
                Some(w) => format!("invalid value: `{w}`, expected {ty}"),
                None => format!("invalid value, expected {ty}"),
            }
        }
        other => {
            let plain = other.render_with_options(render_options! { formatter: &UserMessageFormatter, snippets: SnippetMode::Off });
            strip_location(&plain)
        }
    }
}

/// What a document that should be a mapping is instead (`sequence`, `string`, ...), when the
/// parser says it is not a mapping.
fn not_a_mapping(e: &serde_saphyr::Error, text: &str) -> Option<String> {
    use serde_saphyr::Error as E;
    match e.without_snippet() {
        E::SerdeInvalidType { unexpected, .. } => Some(unexpected.split([' ', ',']).next().unwrap_or("value").to_string()),
        E::Unexpected { expected, .. } if expected.contains("mapping") => {
            let first = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("---"));
            Some(match first.and_then(|l| l.chars().next()) {
                Some('-' | '[') => "sequence".into(),
                _ => "scalar".into(),
            })
        }
        _ => None,
    }
}

/// Whether `k` could be a config key (so an error may show it): short, letters, digits and
/// `_ . - [ ]`. Anything else is file content (`root:$6$...` of /etc/shadow read as YAML).
pub fn looks_like_key(k: &str) -> bool {
    k.len() <= 64 && k.chars().all(|c| c.is_ascii_alphanumeric() || "_.-[]".contains(c))
}

/// The key path of the first `.nan`/`.inf` in `text`, if any (`""` for a lone value): a JSON
/// value cannot hold them (they would turn into null and be reported as "invalid type: null").
pub fn non_finite_key(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    if !lower.contains("nan") && !lower.contains("inf") {
        return None;
    }
    serde_saphyr::from_str_with_options::<NonFinite>(text, options()).ok()?.0
}

/// The key path of the first non-finite number of a YAML document, found while reading it.
struct NonFinite(Option<String>);

impl<'de> serde::Deserialize<'de> for NonFinite {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Walk(String::new()))
    }
}

/// A visitor that walks any value below key path `.0`.
struct Walk(String);

impl<'de> serde::de::DeserializeSeed<'de> for Walk {
    type Value = NonFinite;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<NonFinite, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Walk {
    type Value = NonFinite;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_f64<E>(self, v: f64) -> Result<NonFinite, E> {
        Ok(NonFinite((!v.is_finite()).then_some(self.0)))
    }
    fn visit_bool<E>(self, _: bool) -> Result<NonFinite, E> {
        Ok(NonFinite(None))
    }
    fn visit_i64<E>(self, _: i64) -> Result<NonFinite, E> {
        Ok(NonFinite(None))
    }
    fn visit_u64<E>(self, _: u64) -> Result<NonFinite, E> {
        Ok(NonFinite(None))
    }
    fn visit_i128<E>(self, _: i128) -> Result<NonFinite, E> {
        Ok(NonFinite(None))
    }
    fn visit_u128<E>(self, _: u128) -> Result<NonFinite, E> {
        Ok(NonFinite(None))
    }
    fn visit_str<E>(self, _: &str) -> Result<NonFinite, E> {
        Ok(NonFinite(None))
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<NonFinite, E> {
        Ok(NonFinite(None))
    }
    fn visit_unit<E>(self) -> Result<NonFinite, E> {
        Ok(NonFinite(None))
    }
    fn visit_none<E>(self) -> Result<NonFinite, E> {
        Ok(NonFinite(None))
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<NonFinite, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<NonFinite, A::Error> {
        let mut found = None;
        let mut i = 0;
        while let Some(NonFinite(f)) = seq.next_element_seed(Walk(format!("{}[{i}]", self.0)))? {
            found = found.or(f);
            i += 1;
        }
        Ok(NonFinite(found))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<NonFinite, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<serde_json::Value>()? {
            let name = match key {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            let path = if self.0.is_empty() { name } else { format!("{}.{name}", self.0) };
            let NonFinite(f) = map.next_value_seed(Walk(path))?;
            found = found.or(f);
        }
        Ok(NonFinite(found))
    }
}

/// Reads and parses a YAML file.
pub fn from_file<T: DeserializeOwned>(file: &Path) -> Result<(T, String), YamlError> {
    let text = crate::limits::read_text_bounded(file, crate::limits::MAX_CONFIG_BYTES).map_err(|e| YamlError {
        file: file.into(),
        line: None,
        column: None,
        key: None,
        msg: format!("cannot read: {}", without_path(&e.to_string(), file)),
    })?;
    Ok((from_str(&text, file)?, text))
}

/// An error about `key` found after parsing, located in `text` at the key, or at its nearest
/// written parent (`evals[0].lengths` for `evals[0].lengths[1]` in a flow list).
pub fn key_error(text: &str, file: &Path, key: &str, msg: impl Into<String>) -> YamlError {
    let mut path = key;
    let mut found = locate(text, path);
    while found.is_none() {
        match path.rfind(['.', '[']) {
            Some(i) if i > 0 => {
                path = &path[..i];
                found = locate(text, path);
            }
            _ => break,
        }
    }
    let (line, column) = found.map_or((None, None), |(l, c)| (Some(l), Some(c)));
    YamlError { file: file.into(), line, column, key: Some(key.into()), msg: msg.into() }
}

/// An error message of `file` without its leading `file: `.
fn without_path(msg: &str, file: &Path) -> String {
    msg.strip_prefix(&format!("{}: ", file.display())).unwrap_or(msg).to_string()
}

fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => msg[..i].to_string(),
        _ => msg.to_string(),
    }
}

/// For serde's "unknown field `x`, expected one of `a`, `b`": the closest expected name.
pub fn did_you_mean(msg: &str) -> Option<String> {
    let rest = msg.split("unknown field `").nth(1).or_else(|| msg.split("unknown variant `").nth(1))?;
    let (unknown, expected) = rest.split_once('`')?;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|cand| (edit_distance(unknown, cand), cand))
        .filter(|(d, cand)| *d <= (cand.len().max(unknown.len()) / 2).max(2))
        .min()
        .map(|(_, c)| c.to_string())
}

pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Line and column (1-based) of a dotted key path (`train.seq_len`, `evals[1].len`) in block
/// YAML, found by indentation; None when the key is not written there (e.g. a default).
pub fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let segments = parse_path(path);
    let lines: Vec<&str> = text.lines().collect();
    let (mut from, mut to, mut parent_indent) = (0usize, lines.len(), -1i64);
    let mut found = None;
    for seg in segments {
        let mut hit = None;
        match seg {
            Seg::Key(k) => {
                let mut child_indent = None;
                for (i, line) in lines.iter().enumerate().take(to).skip(from) {
                    let body = line.trim_start_matches([' ', '-']);
                    let indent = (line.len() - body.len()) as i64;
                    if body.is_empty() || body.starts_with('#') {
                        continue;
                    }
                    if indent <= parent_indent && i > from {
                        break;
                    }
                    if child_indent.is_none() && indent > parent_indent {
                        child_indent = Some(indent);
                    }
                    if Some(indent) == child_indent && (body.starts_with(&format!("{k}:")) || body.starts_with(&format!("\"{k}\":"))) {
                        hit = Some((i, indent));
                        break;
                    }
                }
            }
            Seg::Index(n) => {
                let mut count = 0;
                for (i, line) in lines.iter().enumerate().take(to).skip(from) {
                    let t = line.trim_start();
                    if t.starts_with("- ") || t == "-" {
                        let indent = (line.len() - t.len()) as i64;
                        if count == n {
                            hit = Some((i, indent + 1));
                            break;
                        }
                        count += 1;
                    }
                }
            }
        }
        let (i, indent) = hit?;
        found = Some((i + 1, indent as usize + 1));
        // The value of this key spans the following lines indented deeper.
        let end = lines
            .iter()
            .enumerate()
            .skip(i + 1)
            .find(|(_, l)| {
                let t = l.trim_start();
                !t.is_empty() && !t.starts_with('#') && ((l.len() - t.len()) as i64) <= indent - i64::from(matches!(seg, Seg::Index(_)))
            })
            .map_or(lines.len(), |(j, _)| j);
        from = i;
        to = end;
        parent_indent = indent;
    }
    found
}

#[derive(Debug, Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn parse_path(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, idx) = match part.find('[') {
            Some(i) => (&part[..i], Some(&part[i..])),
            None => (part, None),
        };
        if !name.is_empty() {
            out.push(Seg::Key(name));
        }
        if let Some(idx) = idx {
            for n in idx.split(['[', ']']).filter(|s| !s.is_empty()) {
                if let Ok(n) = n.parse() {
                    out.push(Seg::Index(n));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name: x\nmodel:\n  preset: tiny\ntrain:\n  seq_len: 0\n  lr: 1e-3\nevals:\n  - kind: loss\n    len: 10\n  - kind: passkey\n    n: 4\n";

    #[test]
    fn nan_and_inf_are_named_not_turned_into_null() {
        let e = from_str::<serde_json::Value>("train:\n  lr: .nan\n", Path::new("j.yaml")).unwrap_err();
        assert_eq!((e.key.as_deref(), e.line), (Some("train.lr"), Some(2)), "{e}");
        assert!(e.msg.contains("not a finite number"), "{e}");
        let e = from_str::<serde_json::Value>("grid:\n  train.lr: [0.1, -.inf]\n", Path::new("s.yaml")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("grid.train.lr[1]"), "{e}");
        assert!(from_str::<serde_json::Value>("name: inference\nx: 1.5\n", Path::new("ok.yaml")).is_ok());
    }

    #[test]
    fn files_that_are_not_configs_are_not_echoed() {
        let d = std::env::temp_dir().join(format!("stuffed-yaml-secret-{}", std::process::id()));
        std::fs::write(&d, "root:$6$secrethash:19000:0:99999:7:::\n").unwrap();
        let e = from_file::<crate::train::JobConfig>(&d).unwrap_err().to_string();
        assert!(!e.contains("secrethash") && e.contains("not a config"), "{e}");
        std::fs::remove_file(&d).unwrap();
        let e = from_file::<serde_json::Value>(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn hostile_yaml_is_refused_quickly() {
        let t = std::time::Instant::now();
        let mut laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n".to_string();
        for (i, c) in "bcdefghij".chars().enumerate() {
            let prev = (b'a' + i as u8) as char;
            laughs.push_str(&format!("{c}: &{c} [{}]\n", vec![format!("*{prev}"); 9].join(", ")));
        }
        let e = from_str::<serde_json::Value>(&laughs, Path::new("l.yaml")).unwrap_err();
        assert!(e.msg.contains("too large or too complex"), "{e}");
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(from_str::<serde_json::Value>(&deep, Path::new("d.yaml")).is_err());
        let block: String = (0..200).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert!(from_str::<serde_json::Value>(&block, Path::new("b.yaml")).is_err());
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}", t.elapsed());
        // YAML 1.2: `yes` is a string, not a boolean.
        assert_eq!(value_from_str::<serde_json::Value>("a: yes").unwrap(), serde_json::json!({"a": "yes"}));
    }

    #[test]
    fn parse_errors_keep_serdes_wording_at_the_parsers_location() {
        let e = from_str::<crate::train::JobConfig>("model:\n  preset: tiny\ntrain:\n  seq_lne: 4\n", Path::new("j.yaml")).unwrap_err();
        assert_eq!((e.line, e.column, e.key.as_deref()), (Some(4), Some(3), Some("train.seq_lne")), "{e}");
        assert!(e.msg.contains("unknown field `seq_lne`, expected one of `") && e.msg.contains("(did you mean `seq_len`?)"), "{e}");
        let e = from_str::<crate::train::JobConfig>("- 1\n- 2\n", Path::new("j.yaml")).unwrap_err();
        assert!(e.msg.contains("not a config: expected a YAML mapping"), "{e}");
    }

    #[test]
    fn locates_nested_keys_and_list_items() {
        assert_eq!(locate(DOC, "train.seq_len"), Some((5, 3)));
        assert_eq!(locate(DOC, "model.preset"), Some((3, 3)));
        assert_eq!(locate(DOC, "evals[1].n"), Some((11, 5)));
        assert_eq!(locate(DOC, "evals[0].len"), Some((9, 5)));
        assert_eq!(locate(DOC, "train.batch_size"), None);
    }

    #[test]
    fn suggests_the_closest_field() {
        let m = "unknown field `seq_lne`, expected one of `seq_len`, `lr`, `steps`";
        assert_eq!(did_you_mean(m).as_deref(), Some("seq_len"));
        assert_eq!(did_you_mean("unknown field `zzzzzzzz`, expected `a` or `b`"), None);
    }
}
