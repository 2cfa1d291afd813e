//! What the server says it is: its name, version and protocol extensions
//! (server metadata), and the platform every model runs on.

/// The server's name in metadata.
pub const SERVER_NAME: &str = "infer";
/// The platform every model is served on, in Triton's words.
pub const PLATFORM: &str = "onnxruntime_onnx";
/// The protocol extensions implemented, in Triton's names.
pub const EXTENSIONS: &[&str] = &[
    "binary_tensor_data",
    "classification",
    "model_configuration",
    "model_repository",
    "model_repository(unload_dependents)",
];

pub fn server_metadata_json() -> serde_json::Value {
    serde_json::json!({ "name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION"), "extensions": EXTENSIONS })
}
