//! Build provenance: crate version, git commit (and dirty flag), libtorch version.
use serde::Serialize;

pub const GIT_COMMIT: &str = env!("STUFFED_GIT_COMMIT");
pub const GIT_DIRTY: bool = matches!(env!("STUFFED_GIT_DIRTY").as_bytes(), b"1");
pub const LIBTORCH_BUILD_DIR: &str = env!("STUFFED_LIBTORCH_LIB");

/// `0.1.0 (commit 1a2b3c4d5e6f, libtorch 2.11.0)`, with `-dirty` when built from a modified tree.
pub fn long_version() -> &'static str {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        format!(
            "{} (commit {}{}, libtorch {})",
            env!("CARGO_PKG_VERSION"),
            GIT_COMMIT,
            if GIT_DIRTY { "-dirty" } else { "" },
            stuffed_model::LIBTORCH_VERSION
        )
    })
}

/// What every attempt records about the binary that ran it.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    pub version: String,
    pub git_commit: String,
    pub git_dirty: bool,
    pub libtorch: String,
}

pub fn provenance() -> Provenance {
    Provenance {
        version: env!("CARGO_PKG_VERSION").into(),
        git_commit: GIT_COMMIT.into(),
        git_dirty: GIT_DIRTY,
        libtorch: stuffed_model::LIBTORCH_VERSION.into(),
    }
}
