// Build script of the `stuffed` binary: links libtorch_cuda with --no-as-needed (CUDA is
// silently off otherwise), sets an rpath to the libtorch it was built against (LD_LIBRARY_PATH
// still overrides it), and records the git commit for `stuffed --version`.
//
// It reruns when the commit changes (HEAD and the branch's ref) or a source file of the binary
// changes, never on `.git/index` alone: git refreshes the index whenever a file's timestamp
// changes (a test rewriting a tracked file, a fresh clone's first `git status`), and a rerun
// rebuilds this crate (about a minute), which made `make demo` after `make test` rebuild.
use std::env;
use std::path::PathBuf;
use std::process::Command;

/// The files and directories (relative to runner/) the binary is built from: a change there
/// reruns this script, and a difference from the commit marks the build dirty.
const SOURCES: &[&str] = &[
    "../Cargo.toml",
    "../Cargo.lock",
    "../protocol/Cargo.toml",
    "../protocol/src",
    "../model/Cargo.toml",
    "../model/build.rs",
    "../model/csrc",
    "../model/src",
    "Cargo.toml",
    "build.rs",
    "migrations",
    "src",
    "../reports/Cargo.toml",
    "../reports/assets",
    "../reports/src",
];

fn main() {
    let lib = PathBuf::from(env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys did not report its libtorch lib dir"));
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    println!("cargo:rustc-env=STUFFED_LIBTORCH_LIB={}", lib.display());

    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // Dirty: the sources of the binary differ from the commit (not the docs or the tests).
    let mut status = vec!["status", "--porcelain", "--untracked-files=no", "--"];
    status.extend(SOURCES);
    let dirty = git(&status).map(|s| !s.is_empty()).unwrap_or(false);
    println!("cargo:rustc-env=STUFFED_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=STUFFED_GIT_DIRTY={}", if dirty { "1" } else { "0" });
    // The commit: HEAD, the ref it points to (a loose file in the common git dir of a worktree)
    // and packed-refs. Only existing files: cargo reruns on every build for a missing one.
    let mut watch: Vec<PathBuf> = Vec::new();
    let reference = git(&["symbolic-ref", "-q", "HEAD"]);
    for name in ["HEAD", "packed-refs"].into_iter().map(String::from).chain(reference) {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            watch.push(PathBuf::from(path));
        }
    }
    watch.extend(SOURCES.iter().map(PathBuf::from));
    for path in watch.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
