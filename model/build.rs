// Build script of stuffed-model: compiles the small C++ shim (caching-allocator statistics,
// memory info, current stream) and the fused SSD's autograd node and kernel launcher
// (csrc/ssd.cpp) against the same libtorch that torch-sys found, and links libtorch_cuda explicitly so CUDA is never silently dropped by --as-needed.
use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-changed=csrc/ssd.cpp");
    println!("cargo:rerun-if-changed=csrc/profile.cpp");
    println!("cargo:rerun-if-changed=build.rs");
    let lib = PathBuf::from(
        env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys did not report its libtorch lib dir"),
    );
    let torch = lib.parent().expect("libtorch lib dir has a parent").to_path_buf();
    let include = torch.join("include");
    let has_cuda = lib.join("libtorch_cuda.so").exists();

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .file("csrc/shim.cpp")
        .file("csrc/ssd.cpp")
        .file("csrc/profile.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT");
    build.compile("stuffed_shim");

    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=dl");
    if has_cuda {
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
    }
    // Tests of this crate are binaries too: same link rules as the `stuffed` binary.
    link_args(&lib, has_cuda);
}

fn link_args(lib: &std::path::Path, has_cuda: bool) {
    if has_cuda {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}
