//! Bakes the ONNX Runtime library directory into the binaries' rpath so they
//! run without LD_LIBRARY_PATH.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=ORT_LIB_PATH");
    if let Ok(dir) = std::env::var("ORT_LIB_PATH") {
        // Canonical, so the library's own $ORIGIN-relative lookups resolve.
        let dir = Path::new(&dir).canonicalize().unwrap_or_else(|_| dir.into());
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
}
