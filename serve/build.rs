//! Two jobs before `serve` compiles:
//! - The binary's rpath, as `infer`'s build script chose it (it hands it
//!   on as `DEP_INFER_RPATH`; see infer/build.rs).
//! - Generates the Open Inference Protocol's gRPC service and Triton's model
//!   configuration from `proto/` (tonic + prost), with the protoc that
//!   `protoc-bin-vendored` ships: building needs no system protoc. The
//!   descriptor set it also writes lets `prost-reflect` read and write
//!   config.pbtxt (protobuf's text format).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");
    if let Ok(rpath) = std::env::var("DEP_INFER_RPATH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{rpath}");
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
