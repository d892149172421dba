//! Dotted key paths into a job config held as JSON (`model.d_state`, `evals[0].len`,
//! `data.mixture[1].weight`): parsing, reading and setting values, and finding where a sweep
//! key (a grid, zip or derived entry) is written in the sweep file.
use std::fmt;

use serde_json::{Map, Value};
use stuffed_model::yaml;

/// One step of a key path: an object key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A parsed key path; displays as written (`evals[0].len`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath {
    segments: Vec<Segment>,
}

impl KeyPath {
    /// Parses `a.b[1].c`: names separated by dots, each optionally followed by `[N]` indices.
    pub fn parse(text: &str) -> Result<KeyPath, String> {
        let bad = || format!("`{text}` is not a key path (expected names separated by dots, like `model.d_state` or `evals[0].len`)");
        let mut segments = Vec::new();
        for part in text.split('.') {
            let (name, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
            if name.is_empty() || name.contains([']', '{', '}', ' ', '\t']) {
                return Err(bad());
            }
            segments.push(Segment::Key(name.to_string()));
            while !rest.is_empty() {
                let close = rest.find(']').ok_or_else(bad)?;
                let index = rest[1..close].parse::<usize>().map_err(|_| bad())?;
                segments.push(Segment::Index(index));
                rest = &rest[close + 1..];
                if !rest.is_empty() && !rest.starts_with('[') {
                    return Err(bad());
                }
            }
        }
        Ok(KeyPath { segments })
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The last name in the path (`len` for `evals[0].len`).
    pub fn last_name(&self) -> &str {
        self.segments
            .iter()
            .rev()
            .find_map(|s| match s {
                Segment::Key(k) => Some(k.as_str()),
                Segment::Index(_) => None,
            })
            .unwrap_or("")
    }

    /// Whether `self` is `other` or lies inside it (`model.d_state` is within `model`).
    pub fn is_within(&self, other: &KeyPath) -> bool {
        self.segments.starts_with(&other.segments)
    }

    /// The value at this path, if every step exists.
    pub fn get<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        self.segments.iter().try_fold(root, |node, seg| match seg {
            Segment::Key(k) => node.as_object()?.get(k),
            Segment::Index(i) => node.as_array()?.get(*i),
        })
    }

    /// Sets the value at this path, creating missing (or null) intermediate objects; list
    /// indices must already exist.
    pub fn set(&self, root: &mut Value, value: Value) -> Result<(), String> {
        let mut node = root;
        let mut value = Some(value);
        for (i, seg) in self.segments.iter().enumerate() {
            let last = i + 1 == self.segments.len();
            let here = || KeyPath { segments: self.segments[..i].to_vec() };
            if node.is_null() && matches!(seg, Segment::Key(_)) {
                *node = Value::Object(Map::new());
            }
            node = match (seg, { node }) {
                (Segment::Key(k), Value::Object(map)) => map.entry(k.clone()).or_insert(Value::Null),
                (Segment::Index(j), Value::Array(items)) => {
                    let n = items.len();
                    items.get_mut(*j).ok_or_else(|| format!("`{}` has {n} item{}, so there is no `{self}`", here(), plural(n)))?
                }
                (Segment::Index(_), Value::Null) => return Err(format!("`{}` is not set, so there is no `{self}`", here())),
                (Segment::Key(_), other) => return Err(format!("`{}` is {}, not a mapping", here(), describe(other))),
                (Segment::Index(_), other) => return Err(format!("`{}` is {}, not a list", here(), describe(other))),
            };
            if last {
                *node = value.take().unwrap_or(Value::Null);
            }
        }
        Ok(())
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(j) => write!(f, "[{j}]")?,
            }
        }
        Ok(())
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A value's kind for messages ("a number", "not set").
pub(crate) fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "not set",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Which section of the sweep file a varied or derived key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Grid,
    /// The zip group with this index.
    Zip(usize),
    Derived,
    Seeds,
    /// The `search:` block's key.
    Search,
    /// The `set:` block (job-config keys set on the command line with `--set KEY=VALUE`).
    Set,
}

/// Line and column (1-based) of `key` in `origin`'s section of the sweep text, falling back to
/// the section itself; None when the section is not written in block style.
pub(crate) fn locate_origin(text: &str, origin: Origin, key: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let section = |name: &str| yaml::locate(text, name).map(|(l, c)| (l - 1, c - 1));
    match origin {
        Origin::Seeds => yaml::locate(text, "seeds"),
        Origin::Search => yaml::locate(text, "search.key").or_else(|| yaml::locate(text, "search")),
        Origin::Grid | Origin::Derived | Origin::Set => {
            let name = match origin {
                Origin::Grid => "grid",
                Origin::Derived => "derived",
                _ => "set",
            };
            let (line, indent) = section(name)?;
            entry_in_block(&lines, line + 1, indent, key).or(Some((line + 1, indent + 1)))
        }
        Origin::Zip(group) => {
            let (line, indent) = section("zip")?;
            zip_entry(&lines, line, indent, group, key).or(Some((line + 1, indent + 1)))
        }
    }
}

/// Indentation and content of a line; None for blank and comment lines.
fn split_indent(line: &str) -> Option<(usize, &str)> {
    let body = line.trim_start_matches(' ');
    (!body.trim().is_empty() && !body.starts_with('#')).then(|| (line.len() - body.len(), body))
}

/// Whether `body` starts the mapping entry `key:` (plain or quoted).
fn starts_entry(body: &str, key: &str) -> bool {
    ["", "\"", "'"].iter().any(|q| {
        body.strip_prefix(q)
            .and_then(|b| b.strip_prefix(key))
            .and_then(|b| b.strip_prefix(q))
            .is_some_and(|b| b.trim_start().starts_with(':'))
    })
}

/// `key:` among the lines from `from` indented deeper than `parent`.
fn entry_in_block(lines: &[&str], from: usize, parent: usize, key: &str) -> Option<(usize, usize)> {
    for (i, line) in lines.iter().enumerate().skip(from) {
        let Some((indent, body)) = split_indent(line) else {
            continue;
        };
        if indent <= parent {
            break;
        }
        if starts_entry(body, key) {
            return Some((i + 1, indent + 1));
        }
    }
    None
}

/// `key:` in the `group`-th item of the block list under `zip:` (at line `header`).
fn zip_entry(lines: &[&str], header: usize, parent: usize, group: usize, key: &str) -> Option<(usize, usize)> {
    let mut item_indent = None;
    let mut count = 0;
    for (i, line) in lines.iter().enumerate().skip(header + 1) {
        let Some((indent, body)) = split_indent(line) else {
            continue;
        };
        let is_item = body == "-" || body.starts_with("- ");
        if indent < parent || (indent == parent && !is_item) {
            break;
        }
        if !is_item || *item_indent.get_or_insert(indent) != indent {
            continue;
        }
        if count == group {
            let first = body[1..].trim_start();
            if starts_entry(first, key) {
                return Some((i + 1, indent + body.len() - first.len() + 1));
            }
            return entry_in_block(lines, i + 1, indent, key);
        }
        count += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_displays_paths() {
        let p = KeyPath::parse("data.mixture[1].weight").expect("valid");
        assert_eq!(p.segments().len(), 4);
        assert_eq!(p.to_string(), "data.mixture[1].weight");
        assert_eq!(p.last_name(), "weight");
        for bad in ["", "a..b", ".a", "a[", "a[x]", "a[1]b", "[0]"] {
            assert!(KeyPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sets_creating_objects_but_not_list_items() {
        let mut v = json!({"train": {"seq_len": 1}, "evals": [{"len": 1}]});
        KeyPath::parse("model.d_state").unwrap().set(&mut v, json!(16)).unwrap();
        KeyPath::parse("evals[0].len").unwrap().set(&mut v, json!(8)).unwrap();
        assert_eq!(v["model"]["d_state"], 16);
        assert_eq!(v["evals"][0]["len"], 8);
        let err = KeyPath::parse("evals[2].len").unwrap().set(&mut v, json!(1)).unwrap_err();
        assert!(err.contains("has 1 item"), "{err}");
        let err = KeyPath::parse("train.seq_len.x").unwrap().set(&mut v, json!(1)).unwrap_err();
        assert!(err.contains("`train.seq_len` is a number"), "{err}");
    }

    #[test]
    fn locates_entries_in_sections() {
        let text = "name: x\ngrid:\n  model.d_state: [16, 32]\n  \"train.seq_len\":\n    - 1\nzip:\n- a.b: [1]\n  c.d: [2]\n- e.f: [3]\nderived:\n  train.steps: \"{a} / 2\"\n";
        assert_eq!(locate_origin(text, Origin::Grid, "model.d_state"), Some((3, 3)));
        assert_eq!(locate_origin(text, Origin::Grid, "train.seq_len"), Some((4, 3)));
        assert_eq!(locate_origin(text, Origin::Zip(0), "c.d"), Some((8, 3)));
        assert_eq!(locate_origin(text, Origin::Zip(1), "e.f"), Some((9, 3)));
        assert_eq!(locate_origin(text, Origin::Derived, "train.steps"), Some((11, 3)));
        assert_eq!(locate_origin(text, Origin::Grid, "nope"), Some((2, 1)));
    }
}
