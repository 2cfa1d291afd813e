//! ONNX without a runtime: the schema — the protobuf messages this
//! toolchain reads and writes, decoded and encoded with prost — a graph's
//! one-screen summary, and the quantizer that rewrites a float graph into
//! int8 QDQ form. `train` builds its graphs on it, `infer` reads models'
//! inputs, outputs and metadata with it; it links no ONNX Runtime.

#[cfg(feature = "fixtures")]
pub mod fixture;
pub mod quantize;
pub mod schema;

pub use schema::*;
