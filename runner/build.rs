// Build script of the `stuffed` binary: links libtorch_cuda with --no-as-needed (CUDA is
// silently off otherwise), sets an rpath to the libtorch it was built against (LD_LIBRARY_PATH
// still overrides it), and records the git commit for `stuffed --version`.
use std::env;
use std::path::PathBuf;
use std::process::Command;

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
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty()).unwrap_or(false);
    println!("cargo:rustc-env=STUFFED_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=STUFFED_GIT_DIRTY={}", if dirty { "1" } else { "0" });
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        let dir = PathBuf::from(dir);
        let dir = if dir.is_absolute() { dir } else { PathBuf::from("..").join(dir) };
        for f in ["HEAD", "index"] {
            println!("cargo:rerun-if-changed={}", dir.join(f).display());
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
