//! Torch-free library shared by `infer` and `train`: the IDX format, image
//! inputs and figures, the classification report, the ONNX schema, ONNX
//! Runtime sessions, and the `infer` commands. Nothing here links libtorch.

pub mod atomic;
pub mod commands;
pub mod device;
pub mod error;
pub mod figure;
pub mod folder;
pub mod idx;
pub mod input;
pub mod interrupt;
pub mod npy;
pub mod onnx;
pub mod preprocess;
pub mod report;
pub mod session;
