//! Bakes the libtorch and ONNX Runtime library directories into the binaries'
//! rpath so they run without LD_LIBRARY_PATH, and keeps libtorch_cuda linked
//! even though no symbol of it is referenced (otherwise `--as-needed` drops
//! it and CUDA is never seen; tch-rs issue 984).
//!
//! Compiles the autocast shim (`csrc/autocast.cpp`, see `src/precision.rs`)
//! against the libtorch that torch-sys links, with torch-sys's own flags.
use std::path::{Path, PathBuf};

fn canonical(dir: &str) -> PathBuf {
    Path::new(dir).canonicalize().unwrap_or_else(|_| dir.into())
}

fn main() {
    println!("cargo:rerun-if-env-changed=ORT_LIB_PATH");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-changed=csrc/autocast.cpp");
    if let Ok(dir) = std::env::var("ORT_LIB_PATH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", canonical(&dir).display());
    }
    if let Ok(dir) = std::env::var("LIBTORCH") {
        let lib = canonical(&dir).join("lib");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        if lib.join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
    // bench shares this script for the rpath; the shim is train's own.
    if std::env::var("CARGO_PKG_NAME").as_deref() != Ok("train") {
        return;
    }
    // torch-sys (links = "tch") publishes the library directory it linked.
    let lib = PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys publishes libtorch_lib"));
    let root = lib.parent().expect("libtorch's lib directory has a parent");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("csrc/autocast.cpp")
        .compile("ae_autocast");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
