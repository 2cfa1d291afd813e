//! Bakes the ONNX Runtime library directory into the binaries' rpath so
//! they run without LD_LIBRARY_PATH: the venv's directory for in-tree
//! builds, or `INFER_RPATH` verbatim (`make dist` passes `$ORIGIN/../lib`,
//! so the bundle finds the library it carries and nothing of the build
//! machine). The choice is handed on (`links = "infer"`: `DEP_INFER_RPATH`)
//! to the build scripts of crates whose binaries link this one, so it is
//! made here only.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=ORT_LIB_PATH");
    println!("cargo:rerun-if-env-changed=INFER_RPATH");
    println!("cargo:rerun-if-changed=build.rs");
    let rpath = match (std::env::var("INFER_RPATH"), std::env::var("ORT_LIB_PATH")) {
        (Ok(rpath), _) => rpath,
        // Canonical, so the library's own $ORIGIN-relative lookups resolve.
        (_, Ok(dir)) => Path::new(&dir).canonicalize().map_or(dir, |d| d.display().to_string()),
        _ => return,
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{rpath}");
    println!("cargo:rpath={rpath}");
}
