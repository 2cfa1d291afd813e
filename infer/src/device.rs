//! Where a model runs: the `--device` choice both binaries take.

use serde::Serialize;
use strum::{Display, EnumMessage, EnumString, IntoStaticStr, VariantArray};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[derive(Display, EnumString, IntoStaticStr, VariantArray, EnumMessage)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Device {
    /// CUDA when ONNX Runtime can use it, otherwise CPU.
    #[default]
    Auto,
    Cpu,
    /// CUDA or fail: no silent fallback.
    Cuda,
}
