//! Two jobs before `infer` compiles:
//! - Bakes the ONNX Runtime library directory into the binaries' rpath so
//!   they run without LD_LIBRARY_PATH: the venv's directory for in-tree
//!   builds, or `INFER_RPATH` verbatim (`make dist` passes `$ORIGIN/../lib`,
//!   so the bundle finds the library it carries and nothing of the build
//!   machine).
//! - Generates the Open Inference Protocol's gRPC service and Triton's model
//!   configuration from `proto/` (tonic + prost), with the protoc that
//!   `protoc-bin-vendored` ships: building needs no system protoc. The
//!   descriptor set it also writes lets `prost-reflect` read and write
//!   config.pbtxt (protobuf's text format).
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=ORT_LIB_PATH");
    println!("cargo:rerun-if-env-changed=INFER_RPATH");
    // Named, since the lines above turn off cargo's rerun on any change.
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");
    if let Ok(rpath) = std::env::var("INFER_RPATH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{rpath}");
    } else if let Ok(dir) = std::env::var("ORT_LIB_PATH") {
        // Canonical, so the library's own $ORIGIN-relative lookups resolve.
        let dir = Path::new(&dir).canonicalize().unwrap_or_else(|_| dir.into());
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }

    let protoc = protoc_bin_vendored::protoc_bin_path().expect("protoc-bin-vendored ships a protoc for this platform");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc).file_descriptor_set_path(out.join("inference_descriptor.bin"));
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_with_config(config, &["proto/grpc_service.proto", "proto/model_config.proto"], &["proto"])
        .expect("proto/*.proto compile");
}
