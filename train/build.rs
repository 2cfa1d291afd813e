//! Bakes the libtorch and ONNX Runtime library directories into the binaries'
//! rpath so they run without LD_LIBRARY_PATH, and keeps libtorch_cuda linked
//! even though no symbol of it is referenced (otherwise `--as-needed` drops
//! it and CUDA is never seen; tch-rs issue 984).
use std::path::{Path, PathBuf};

fn canonical(dir: &str) -> PathBuf {
    Path::new(dir).canonicalize().unwrap_or_else(|_| dir.into())
}

fn main() {
    println!("cargo:rerun-if-env-changed=ORT_LIB_PATH");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
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
}
