//! Torch-free library shared by `infer` and `train`: the IDX format, image
//! loading and grids, the classification report, the ONNX schema, and ONNX
//! Runtime sessions. Nothing here links libtorch.

pub mod atomic;
pub mod figure;
pub mod idx;
pub mod onnx;
pub mod report;
pub mod session;
