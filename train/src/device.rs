//! The `--device` choice, resolved to a libtorch device.

use infer::device::Device as Choice;
use tch::Device;

use crate::error::TrainError;

/// `auto` picks CUDA when libtorch sees a GPU; `cuda` fails without one.
pub fn resolve(choice: Choice) -> Result<Device, TrainError> {
    match choice {
        Choice::Cpu => Ok(Device::Cpu),
        Choice::Auto => Ok(Device::cuda_if_available()),
        Choice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        Choice::Cuda => {
            Err(TrainError::Invalid("--device cuda: libtorch sees no CUDA device (use --device cpu or auto)".into()))
        }
    }
}
