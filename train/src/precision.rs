//! Mixed-precision training (`--precision`, Lightning's names): the
//! forward pass runs under libtorch's own autocast, the one
//! `torch.autocast` drives, so convolutions and matrix products run in
//! bfloat16 (or float16 on CUDA) while the master weights, the optimizer
//! state, BatchNorm's statistics, the loss and its reduction stay float32.
//!
//! tch exposes only CUDA's autocast switch; the per-device calls live in a
//! small C++ shim (`csrc/autocast.cpp`, built by `build.rs` against the
//! libtorch torch-sys links). Explicit casts in the model's forward would
//! reach the same kernels, but autocast also picks which ops stay float32
//! (the op lists PyTorch maintains), and it caches the bfloat16 copies of
//! the weights for a forward pass and its backward.
//!
//! Where the CPU has no native bfloat16 (no AVX512-BF16, no AMX), libtorch
//! falls back to slow reference kernels: `bf16-mixed` is refused there
//! unless forced, and `auto` keeps float32.

use std::ffi::c_int;

use serde::{Deserialize, Serialize};
use strum::{Display, EnumMessage, EnumString, IntoStaticStr, VariantArray};
use tch::Device;

/// The precision a run trains in (recorded in `config.json`, so in the
/// fingerprint; absent from older runs' files: `32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[derive(Display, EnumString, IntoStaticStr, VariantArray, EnumMessage)]
pub enum Precision {
    /// float32 throughout.
    #[default]
    #[serde(rename = "32")]
    #[strum(serialize = "32")]
    Full,
    /// bfloat16 convolutions and matrix products under autocast, float32 weights, optimizer, BatchNorm and loss.
    #[serde(rename = "bf16-mixed")]
    #[strum(serialize = "bf16-mixed")]
    Bf16Mixed,
    /// float16 under autocast with dynamic loss scaling (CUDA only).
    #[serde(rename = "16-mixed")]
    #[strum(serialize = "16-mixed")]
    F16Mixed,
}

impl Precision {
    pub fn is_full(&self) -> bool {
        *self == Precision::Full
    }

    /// The dtype autocast computes in (`None`: no autocast).
    fn autocast_kind(self) -> Option<tch::Kind> {
        match self {
            Precision::Full => None,
            Precision::Bf16Mixed => Some(tch::Kind::BFloat16),
            Precision::F16Mixed => Some(tch::Kind::Half),
        }
    }

    /// The line printed under the model summary.
    pub fn describe(self) -> String {
        let how = match self {
            Precision::Full => "float32 throughout",
            Precision::Bf16Mixed => {
                "convolutions and matrix products in bfloat16 under autocast; weights, optimizer state, BatchNorm statistics and the loss in float32"
            }
            Precision::F16Mixed => {
                "convolutions and matrix products in float16 under autocast, dynamic loss scaling; weights, optimizer state, BatchNorm statistics and the loss in float32"
            }
        };
        format!("training precision: {self} ({how})")
    }

    /// Whether gradients need a dynamic loss scale (float16's range is too
    /// narrow for small gradients; bfloat16 has float32's).
    pub fn scales_loss(self) -> bool {
        self == Precision::F16Mixed
    }
}

/// What `--precision` asks for: a precision, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[derive(Display, EnumString, IntoStaticStr, VariantArray, EnumMessage)]
pub enum PrecisionChoice {
    /// bf16-mixed on a CPU with native bfloat16 (AVX512-BF16 or AMX), 32 elsewhere (CUDA included).
    #[strum(serialize = "auto")]
    Auto,
    /// float32 throughout.
    #[default]
    #[strum(serialize = "32")]
    Full,
    /// bfloat16 convolutions and matrix products, float32 weights, optimizer, BatchNorm and loss.
    #[strum(serialize = "bf16-mixed")]
    Bf16Mixed,
    /// float16 with dynamic loss scaling (CUDA only).
    #[strum(serialize = "16-mixed")]
    F16Mixed,
}

/// Why a precision cannot run here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrecisionError {
    #[error(
        "--precision bf16-mixed: this CPU ({cpu}) has no native bfloat16 (neither avx512_bf16 nor amx_bf16), \
         so libtorch would run bfloat16 through reference kernels many times slower than float32 \
         (use --precision 32 or auto, or add --force-precision to run it anyway)"
    )]
    NoNativeBf16 { cpu: String },
    #[error(
        "--precision 16-mixed: float16 with loss scaling is for CUDA devices; on the CPU use bf16-mixed \
         (where the CPU has native bfloat16) or 32"
    )]
    HalfNeedsCuda,
}

/// What the CPU offers for bfloat16, read with CPUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuBf16 {
    /// The CPU's brand string, for messages and benchmark headers.
    pub name: String,
    pub avx512_bf16: bool,
    pub amx_bf16: bool,
}

/// Set to `1` to make [`CpuBf16::detect`] report a CPU without bfloat16
/// (the refusal's tests on machines that have it).
pub const NO_BF16_ENV: &str = "TRAIN_PRETEND_NO_BF16";

impl CpuBf16 {
    /// This machine's CPU.
    pub fn detect() -> CpuBf16 {
        let mut cpu = Self::read();
        if std::env::var(NO_BF16_ENV).is_ok_and(|v| v == "1") {
            cpu.avx512_bf16 = false;
            cpu.amx_bf16 = false;
        }
        cpu
    }

    #[cfg(target_arch = "x86_64")]
    fn read() -> CpuBf16 {
        let max = shim::cpuid(0, 0)[0];
        let ext_max = shim::cpuid(0x8000_0000, 0)[0];
        let (mut avx512_bf16, mut amx_bf16) = (false, false);
        if max >= 7 {
            // Leaf 7: sub-leaf 0 EDX bit 22 AMX-BF16, sub-leaf 1 EAX bit 5 AVX512_BF16.
            amx_bf16 = shim::cpuid(7, 0)[3] & (1 << 22) != 0;
            avx512_bf16 = shim::cpuid(7, 1)[0] & (1 << 5) != 0;
        }
        let mut name = String::new();
        if ext_max >= 0x8000_0004 {
            for leaf in 0x8000_0002u32..=0x8000_0004 {
                for reg in shim::cpuid(leaf, 0) {
                    name.extend(reg.to_le_bytes().iter().filter(|&&b| b != 0).map(|&b| b as char));
                }
            }
        }
        let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
        CpuBf16 { name: if name.is_empty() { "x86_64".into() } else { name }, avx512_bf16, amx_bf16 }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn read() -> CpuBf16 {
        // aarch64's bf16 support is not probed: auto keeps float32 there.
        CpuBf16 { name: std::env::consts::ARCH.into(), avx512_bf16: false, amx_bf16: false }
    }

    /// Whether bfloat16 runs on native instructions.
    pub fn native(&self) -> bool {
        self.avx512_bf16 || self.amx_bf16
    }

    /// `avx512_bf16 amx_bf16` (the flags' names in /proc/cpuinfo), or `none`.
    pub fn flags(&self) -> String {
        let f: Vec<&str> = [(self.avx512_bf16, "avx512_bf16"), (self.amx_bf16, "amx_bf16")]
            .into_iter()
            .filter_map(|(on, n)| on.then_some(n))
            .collect();
        if f.is_empty() {
            "none".into()
        } else {
            f.join(" ")
        }
    }
}

/// The precision to train in on `device`: `auto` resolved, and a
/// precision the hardware cannot run well refused (unless `force`).
pub fn resolve(
    choice: PrecisionChoice,
    device: Device,
    cpu: &CpuBf16,
    force: bool,
) -> Result<Precision, PrecisionError> {
    let on_cpu = device == Device::Cpu;
    match choice {
        PrecisionChoice::Full => Ok(Precision::Full),
        // CUDA: whether a GPU computes bfloat16 natively (compute
        // capability 8.0 and up) is not visible through tch, so auto keeps
        // float32 there; bf16-mixed and 16-mixed are for the user to ask.
        PrecisionChoice::Auto if on_cpu && cpu.native() => Ok(Precision::Bf16Mixed),
        PrecisionChoice::Auto => Ok(Precision::Full),
        PrecisionChoice::Bf16Mixed if on_cpu && !cpu.native() && !force => {
            Err(PrecisionError::NoNativeBf16 { cpu: cpu.name.clone() })
        }
        PrecisionChoice::Bf16Mixed => Ok(Precision::Bf16Mixed),
        PrecisionChoice::F16Mixed if on_cpu => Err(PrecisionError::HalfNeedsCuda),
        PrecisionChoice::F16Mixed => Ok(Precision::F16Mixed),
    }
}

/// The shim's C functions (`csrc/autocast.cpp`) and CPUID: the only
/// unsafe code in the crate, each call behind a safe function.
#[allow(unsafe_code, unused_unsafe)]
mod shim {
    use std::ffi::{c_char, c_int, CStr};

    /// Autocast's state before [`enter`], restored by [`exit`].
    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct Prior {
        enabled: c_int,
        dtype: c_int,
    }

    unsafe extern "C" {
        fn ae_autocast_enter(
            device_type: c_int,
            dtype: c_int,
            prior: *mut Prior,
            err: *mut c_char,
            len: usize,
        ) -> c_int;
        fn ae_autocast_exit(device_type: c_int, prior: *const Prior, err: *mut c_char, len: usize) -> c_int;
        fn ae_autocast_enabled(device_type: c_int) -> c_int;
    }

    fn message(buf: &[c_char]) -> String {
        // SAFETY: the buffer starts zeroed and the shim writes a
        // NUL-terminated string within its length (snprintf).
        unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
    }

    /// Autocast on for `device_type` in `dtype` (c10's codes).
    pub fn enter(device_type: c_int, dtype: c_int) -> Result<Prior, String> {
        let mut prior = Prior::default();
        let mut err = [0 as c_char; 512];
        // SAFETY: `prior` and `err` outlive the call; the shim writes
        // within `err.len()` and catches every C++ exception.
        match unsafe { ae_autocast_enter(device_type, dtype, &mut prior, err.as_mut_ptr(), err.len()) } {
            0 => Ok(prior),
            _ => Err(message(&err)),
        }
    }

    /// Back to `prior`, the weight cache dropped when leaving the outermost region.
    pub fn exit(device_type: c_int, prior: &Prior) -> Result<(), String> {
        let mut err = [0 as c_char; 512];
        // SAFETY: as in `enter`.
        match unsafe { ae_autocast_exit(device_type, prior, err.as_mut_ptr(), err.len()) } {
            0 => Ok(()),
            _ => Err(message(&err)),
        }
    }

    pub fn enabled(device_type: c_int) -> bool {
        // SAFETY: a query without arguments to check.
        unsafe { ae_autocast_enabled(device_type) == 1 }
    }

    /// CPUID leaf and sub-leaf: [eax, ebx, ecx, edx].
    #[cfg(target_arch = "x86_64")]
    pub fn cpuid(leaf: u32, sub: u32) -> [u32; 4] {
        // SAFETY: CPUID exists on every x86_64 CPU (an unsupported leaf
        // returns the highest basic leaf's values; callers check the maximum).
        let r = unsafe { std::arch::x86_64::__cpuid_count(leaf, sub) };
        [r.eax, r.ebx, r.ecx, r.edx]
    }
}

/// c10::DeviceType and c10::ScalarType codes (stable across libtorch 2.x).
const CPU: c_int = 0;
const CUDA: c_int = 1;
const BFLOAT16: c_int = 15;
const HALF: c_int = 5;

fn device_type(device: Device) -> c_int {
    match device {
        Device::Cpu => CPU,
        _ => CUDA,
    }
}

/// Runs `f` under autocast for `precision` on `device` (plainly for
/// [`Precision::Full`]), as `with torch.autocast(device, dtype):` does;
/// the previous state is restored and the weight cache dropped after.
pub fn autocast<T>(precision: Precision, device: Device, f: impl FnOnce() -> T) -> Result<T, tch::TchError> {
    let Some(kind) = precision.autocast_kind() else {
        return Ok(f());
    };
    let dtype = if kind == tch::Kind::BFloat16 { BFLOAT16 } else { HALF };
    let dev = device_type(device);
    let prior = shim::enter(dev, dtype).map_err(|e| tch::TchError::Torch(format!("cannot enable autocast: {e}")))?;
    // Restores on unwinding too, so a libtorch panic caught further up
    // never leaves autocast on for the next forward pass.
    struct Exit {
        dev: c_int,
        prior: shim::Prior,
    }
    impl Drop for Exit {
        fn drop(&mut self) {
            // A failure cannot be reported from a drop; the shim's calls
            // here are setters that do not throw in libtorch 2.x.
            let _ = shim::exit(self.dev, &self.prior);
        }
    }
    let exit = Exit { dev, prior };
    let out = f();
    drop(exit);
    Ok(out)
}

/// Whether autocast is on for `device` right now (the tests' check that
/// [`autocast`] leaves it as it found it).
pub fn autocast_enabled(device: Device) -> bool {
    shim::enabled(device_type(device))
}
