//! A dump split into parts of bounded size (`results export --format dump --part-size`), for
//! repositories that refuse large files: consecutive byte ranges of the one dump file, each with
//! its size and sha256 in an index `FILE.parts.json`. `results import FILE.parts.json` checks
//! every part (present, plain file, right size and sha256, named as the index says, beside it)
//! and reads them as the one file. The index comes from another machine like the dump: its names
//! never reach a path unchecked, and its sizes are bounded before anything is read.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::safety::short;

/// The suffix of a parts index: `forget.dump.json.gz.parts.json`.
pub const PARTS_SUFFIX: &str = ".parts.json";
const PARTS_FORMAT: &str = "stuffed-dump-parts";
/// The largest index read (a few hundred bytes a part).
const MAX_INDEX_BYTES: u64 = 1 << 20;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Part {
    name: String,
    bytes: u64,
    sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartsIndex {
    format: String,
    /// The dump file the parts make, in order.
    file: String,
    bytes: u64,
    sha256: String,
    parts: Vec<Part>,
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn part_name(file: &str, i: usize) -> String {
    format!("{file}.part-{i:03}")
}

/// Whether `path` names a parts index.
pub fn is_index(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(PARTS_SUFFIX))
}

/// Splits the dump file at `path` into parts of at most `part_size` bytes beside it, writes
/// their index and removes the file; returns the index, or `None` (file left whole) when it
/// already fits.
pub fn split(path: &Path, part_size: u64) -> anyhow::Result<Option<PathBuf>> {
    if part_size == 0 {
        bail!("--part-size must be at least one byte");
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 <= part_size {
        return Ok(None);
    }
    let file = path.file_name().and_then(|n| n.to_str()).with_context(|| format!("{}: not a file name", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut parts = Vec::new();
    for (i, chunk) in bytes.chunks(part_size as usize).enumerate() {
        let name = part_name(file, i);
        std::fs::write(dir.join(&name), chunk).with_context(|| format!("writing {}", dir.join(&name).display()))?;
        parts.push(Part { name, bytes: chunk.len() as u64, sha256: sha256(chunk) });
    }
    let index = PartsIndex { format: PARTS_FORMAT.into(), file: file.into(), bytes: bytes.len() as u64, sha256: sha256(&bytes), parts };
    let at = dir.join(format!("{file}{PARTS_SUFFIX}"));
    std::fs::write(&at, serde_json::to_string_pretty(&index)? + "\n").with_context(|| format!("writing {}", at.display()))?;
    std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    Ok(Some(at))
}

/// Reads the parts that the index at `path` lists, checked, as the one dump file they make:
/// its bytes and its name (which says whether it is gzipped). Refuses a dump over `limit` bytes.
pub fn join(path: &Path, limit: u64) -> anyhow::Result<(Vec<u8>, String)> {
    let at = |what: String| format!("{}: {what}", path.display());
    let meta = std::fs::metadata(path).with_context(|| at("cannot read it".into()))?;
    if !meta.is_file() || meta.len() > MAX_INDEX_BYTES {
        bail!(at(format!("not a parts index (a regular file of at most {MAX_INDEX_BYTES} bytes)")));
    }
    let text = std::fs::read_to_string(path).with_context(|| at("cannot read it".into()))?;
    let index: PartsIndex = serde_json::from_str(&text).map_err(|e| anyhow::anyhow!(at(format!("not a parts index: {e}"))))?;
    if index.format != PARTS_FORMAT {
        bail!(at(format!("not a parts index (format '{}', expected '{PARTS_FORMAT}')", short(&index.format))));
    }
    let plain = !index.file.is_empty() && index.file.len() <= 255 && !index.file.starts_with('.') && !index.file.contains(['/', '\\']);
    if !plain {
        bail!(at(format!("the dump's name '{}' is not a plain file name", short(&index.file))));
    }
    if index.bytes > limit || index.parts.iter().map(|p| p.bytes).sum::<u64>() != index.bytes {
        bail!(at(format!("{} bytes in its parts, limit {limit}, or parts that do not add up to it", index.bytes)));
    }
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut bytes = Vec::with_capacity(index.bytes as usize);
    for (i, p) in index.parts.iter().enumerate() {
        if p.name != part_name(&index.file, i) {
            bail!(at(format!("part {i} is named '{}', expected '{}'", short(&p.name), part_name(&index.file, i))));
        }
        let file = dir.join(&p.name);
        let ok = std::fs::metadata(&file).is_ok_and(|m| m.is_file() && m.len() == p.bytes);
        let chunk = if ok { std::fs::read(&file).ok() } else { None };
        match chunk {
            Some(c) if sha256(&c) == p.sha256 => bytes.extend_from_slice(&c),
            _ => bail!("{}: part {} is missing or corrupt (size or sha256 differs from the index)", file.display(), p.name),
        }
    }
    if sha256(&bytes) != index.sha256 {
        bail!(at("the joined parts' sha256 differs from the index".into()));
    }
    Ok((bytes, index.file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_join_give_back_the_file_and_refuse_bad_parts() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("d.dump.json.gz");
        let data: Vec<u8> = (0..2500u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&file, &data).unwrap();
        assert_eq!(split(&file, 4096).unwrap(), None, "a file that fits stays whole");
        let index = split(&file, 1000).unwrap().unwrap();
        assert!(!file.exists() && is_index(&index));
        assert_eq!(join(&index, 1 << 20).unwrap(), (data.clone(), "d.dump.json.gz".to_string()));
        assert!(join(&index, 2000).unwrap_err().to_string().contains("limit 2000"));
        // A corrupt part is named.
        let part = dir.path().join("d.dump.json.gz.part-001");
        std::fs::write(&part, vec![0u8; 1000]).unwrap();
        assert!(join(&index, 1 << 20).unwrap_err().to_string().contains("part d.dump.json.gz.part-001 is missing or corrupt"));
        // Names from the index never leave its directory.
        let text = std::fs::read_to_string(&index).unwrap();
        std::fs::write(&index, text.replace("\"file\": \"d.dump.json.gz\"", "\"file\": \"../x\"")).unwrap();
        assert!(join(&index, 1 << 20).unwrap_err().to_string().contains("not a plain file name"));
        std::fs::write(&index, text.replace("d.dump.json.gz.part-000", "../../etc/passwd")).unwrap();
        assert!(join(&index, 1 << 20).unwrap_err().to_string().contains("part 0 is named"));
    }
}
