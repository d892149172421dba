//! The local Hugging Face hub cache, read offline: `hf:ORG/NAME[@REVISION]` names the snapshot
//! directory `CACHE/models--ORG--NAME/snapshots/<sha>` (REVISION is a ref such as `main`, read
//! from `refs/REVISION`, or a commit sha; default `main`). CACHE is `$HF_HUB_CACHE`, else
//! `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
//! Nothing is downloaded. Names, refs and their contents are untrusted: they are checked to be
//! plain names (no `/` where none belongs, no `..`), and files are read with bounded sizes.
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The largest ref file read (a commit sha and a newline).
const MAX_REF_BYTES: u64 = 1024;
/// The longest organization or repository name the hub allows is 96 characters.
const MAX_NAME_LEN: usize = 96;

/// A repository of the hub and an optional revision: `ORG/NAME[@REVISION]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRef {
    pub org: String,
    pub name: String,
    pub revision: Option<String>,
}

impl std::fmt::Display for HubRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.org, self.name)?;
        match &self.revision {
            Some(r) => write!(f, "@{r}"),
            None => Ok(()),
        }
    }
}

fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s != "."
        && s != ".."
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn is_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.chars().all(|c| c.is_ascii_hexdigit())
}

impl HubRef {
    /// Parses `ORG/NAME[@REVISION]` (what follows `hf:`); None when `s` does not have that
    /// shape (so the caller can read it as a path instead).
    pub fn parse(s: &str) -> Option<HubRef> {
        let (repo, revision) = match s.split_once('@') {
            Some((r, rev)) => (r, Some(rev)),
            None => (s, None),
        };
        let (org, name) = repo.split_once('/')?;
        if !plain_name(org) || !plain_name(name) {
            return None;
        }
        if let Some(rev) = revision {
            // A ref may contain '/' (refs/pr/1): each component a plain name.
            if rev.len() > 256 || !rev.split('/').all(plain_name) {
                return None;
            }
        }
        Some(HubRef { org: org.into(), name: name.into(), revision: revision.map(String::from) })
    }

    /// The cache's directory name of the repository.
    pub fn folder(&self) -> String {
        format!("models--{}--{}", self.org, self.name)
    }

    /// The snapshot directory of this revision in the first cache that has it.
    pub fn resolve(&self) -> Result<PathBuf> {
        let caches = cache_dirs();
        let mut searched = Vec::new();
        for cache in &caches {
            let repo = cache.join(self.folder());
            searched.push(repo.display().to_string());
            if let Some(snap) = self.snapshot_in(&repo)? {
                return Ok(snap);
            }
        }
        let rev = self.revision.as_deref().unwrap_or("main");
        Err(Error::NotFound(format!(
            "hf:{self}: revision '{rev}' is not in the local Hugging Face cache (nothing is downloaded); searched {}. \
             Fetch it with `huggingface-cli download {}/{}`, or set HF_HUB_CACHE or HF_HOME to the cache that holds it",
            searched.join(", "),
            self.org,
            self.name
        )))
    }

    fn snapshot_in(&self, repo: &Path) -> Result<Option<PathBuf>> {
        if !repo.is_dir() {
            return Ok(None);
        }
        let rev = self.revision.as_deref().unwrap_or("main");
        let snapshots = repo.join("snapshots");
        if is_sha(rev) && snapshots.join(rev).is_dir() {
            return Ok(Some(snapshots.join(rev)));
        }
        let ref_file = repo.join("refs").join(rev);
        if !ref_file.is_file() {
            return Ok(None);
        }
        let sha = crate::limits::read_text_bounded(&ref_file, MAX_REF_BYTES)?;
        let sha = sha.trim();
        if !is_sha(sha) {
            return Err(Error::at(&ref_file, format!("not a commit sha: '{}'", sha.chars().take(80).collect::<String>())));
        }
        let snap = snapshots.join(sha);
        if !snap.is_dir() {
            return Err(Error::at(&ref_file, format!("names commit {sha}, but {} is missing (an incomplete download?)", snap.display())));
        }
        Ok(Some(snap))
    }
}

/// The hub caches searched, in order (each only when its variable is set, the default last).
pub fn cache_dirs() -> Vec<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let mut dirs = Vec::new();
    if let Some(p) = var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")) {
        dirs.push(p);
    }
    if let Some(p) = var("HF_HOME") {
        dirs.push(p.join("hub"));
    }
    if let Some(p) = var("XDG_CACHE_HOME") {
        dirs.push(p.join("huggingface").join("hub"));
    }
    if let Some(home) = var("HOME") {
        dirs.push(home.join(".cache").join("huggingface").join("hub"));
    }
    dirs.dedup();
    dirs
}

/// A path given after `hf:`: an existing local path as it is, else a hub repository resolved
/// to its snapshot directory. The error names both readings when neither works.
pub fn resolve_spec(s: &str) -> Result<PathBuf> {
    let local = Path::new(s);
    if local.exists() {
        return Ok(local.to_path_buf());
    }
    match HubRef::parse(s) {
        Some(r) => r.resolve(),
        None => Err(Error::at(local, "not found, and not a hub repository name (hf:ORG/NAME[@REVISION])")),
    }
}

/// The file `name` inside a snapshot, refused unless `name` is a plain file name (shard names
/// come from an untrusted index).
pub fn file_in(dir: &Path, name: &str, what: &Path) -> Result<PathBuf> {
    if !plain_name(name) || name.len() > 255 {
        return Err(Error::at(what, format!("'{name}' is not a plain file name in the checkpoint directory")));
    }
    Ok(dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_repo_and_revision() {
        let r = HubRef::parse("state-spaces/mamba2-130m@main").unwrap();
        assert_eq!((r.org.as_str(), r.name.as_str(), r.revision.as_deref()), ("state-spaces", "mamba2-130m", Some("main")));
        assert_eq!(r.folder(), "models--state-spaces--mamba2-130m");
        assert_eq!(HubRef::parse("EleutherAI/gpt-neox-20b").unwrap().revision, None);
        for bad in ["a", "a/b/c", "../b", "a/..", "a/b@../x", "a/b@", "/abs/path", "a b/c"] {
            assert_eq!(HubRef::parse(bad), None, "{bad}");
        }
        assert!(HubRef::parse("a/b@refs/pr/1").is_some());
    }
}
