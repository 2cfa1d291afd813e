//! The inference tool: ONNX Runtime sessions (`--device`, the CUDA
//! provider when present), image sources streamed to them, the `infer`
//! commands and their reports (the classification report, `.npy` files).
//! Pictures, IDX files, figures and atomic writes come from `ae_core`; the
//! ONNX schema from `ae_onnx`. Nothing here links libtorch, and nothing
//! here serves: the server is the `serve` crate, built on this one.

pub mod commands;
pub mod contract;
pub mod device;
pub mod error;
pub mod input;
pub mod npy;
pub mod report;
pub mod session;
pub mod triton;
