//! Bakes the ONNX Runtime library directory into the binaries' rpath so they
//! run without LD_LIBRARY_PATH: the venv's directory for in-tree builds, or
//! `INFER_RPATH` verbatim (`make dist` passes `$ORIGIN/../lib`, so the
//! bundle finds the library it carries and nothing of the build machine).
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=ORT_LIB_PATH");
    println!("cargo:rerun-if-env-changed=INFER_RPATH");
    if let Ok(rpath) = std::env::var("INFER_RPATH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{rpath}");
    } else if let Ok(dir) = std::env::var("ORT_LIB_PATH") {
        // Canonical, so the library's own $ORIGIN-relative lookups resolve.
        let dir = Path::new(&dir).canonicalize().unwrap_or_else(|_| dir.into());
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
}
