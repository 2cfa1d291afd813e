//! RMSprop and Adam with Keras' semantics, written on tensors so their state
//! is ours to checkpoint: `--resume` restores it exactly, which libtorch's
//! built-in optimizers do not allow through tch.
//!
//! All parameters live in one flat buffer (each parameter's data is a view
//! of it), so an update is a handful of kernels over one contiguous tensor
//! instead of a dozen small ones per parameter — on these small models the
//! per-op dispatch cost, not the arithmetic, dominated the update.
//!
//! Convolution weights are stored channels-last inside the buffer (their
//! views have NHWC strides), which is what makes libtorch run the
//! channels-last convolution kernels; checkpoints still see NCHW values.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::VariantArray, strum::EnumMessage)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum OptimizerKind {
    /// Keras defaults: rho 0.9, eps 1e-7.
    Rmsprop,
    /// beta1 0.9, beta2 0.999, eps 1e-7.
    Adam,
}

const RHO: f64 = 0.9;
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-7;

/// The view of a parameter's slice of the flat buffer: 4-D (convolution)
/// weights are laid out [O, kh, kw, I] and viewed as [O, I, kh, kw] with
/// channels-last strides; everything else is contiguous.
fn storage_view(part: &Tensor, shape: &[i64]) -> Tensor {
    match *shape {
        [o, i, kh, kw] => part.view([o, kh, kw, i]).permute([0, 3, 1, 2]),
        _ => part.view(shape),
    }
}

/// A tensor shaped like a parameter, flattened in its storage order.
fn storage_order(t: &Tensor) -> Tensor {
    match t.dim() {
        4 => t.permute([0, 2, 3, 1]).reshape([-1]),
        _ => t.reshape([-1]),
    }
}

/// One parameter: its name, tensor, and where it sits in the flat buffer.
#[derive(Debug)]
struct Slot {
    name: String,
    param: Tensor,
    offset: i64,
    numel: i64,
    shape: Vec<i64>,
}

#[derive(Debug)]
pub struct Optimizer {
    kind: OptimizerKind,
    slots: Vec<Slot>,
    /// Every parameter's values, contiguous.
    flat: Tensor,
    /// RMSprop: [mean square]; Adam: [first moment, second moment]; flat.
    state: Vec<Tensor>,
    /// Steps taken (Adam's bias correction needs it).
    pub steps: i64,
}

impl Optimizer {
    /// Over the given named parameters, in a fixed (sorted) order. Their
    /// data is moved into the optimizer's flat buffer (values unchanged).
    pub fn new(kind: OptimizerKind, mut params: Vec<(String, Tensor)>) -> Optimizer {
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let total: i64 = params.iter().map(|(_, p)| p.numel() as i64).sum();
        let device = params.first().map(|(_, p)| p.device()).unwrap_or(tch::Device::Cpu);
        let flat = Tensor::zeros([total], (Kind::Float, device));
        let mut offset = 0;
        let slots = params
            .into_iter()
            .map(|(name, mut param)| {
                let numel = param.numel() as i64;
                let shape = param.size();
                let view = storage_view(&flat.narrow(0, offset, numel), &shape);
                tch::no_grad(|| {
                    let mut v = view.shallow_clone();
                    v.copy_(&param);
                });
                param.set_data(&view);
                let s = Slot { name, param, offset, numel, shape };
                offset += numel;
                s
            })
            .collect();
        let n = match kind {
            OptimizerKind::Rmsprop => 1,
            OptimizerKind::Adam => 2,
        };
        let state = (0..n).map(|_| flat.zeros_like()).collect();
        Optimizer { kind, slots, flat, state, steps: 0 }
    }

    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            s.param.zero_grad();
        }
    }

    /// Every gradient in one flat tensor (zeros for a parameter without one).
    fn flat_grad(&self) -> Tensor {
        let parts: Vec<Tensor> = self
            .slots
            .iter()
            .map(|s| {
                let g = s.param.grad();
                if g.defined() {
                    storage_order(&g)
                } else {
                    Tensor::zeros([s.numel], (Kind::Float, self.flat.device()))
                }
            })
            .collect();
        Tensor::cat(&parts, 0)
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        if self.slots.is_empty() {
            return;
        }
        let g = tch::no_grad(|| self.flat_grad());
        self.update(lr, g);
    }

    /// One update from gradients of a loss multiplied by `scale`
    /// (`--precision 16-mixed`): divided back first, and skipped (`false`)
    /// when any is inf or NaN, as GradScaler does. Reads one flag from the
    /// device per step.
    pub fn step_scaled(&mut self, lr: f64, scale: f64) -> Result<bool, tch::TchError> {
        if self.slots.is_empty() {
            return Ok(true);
        }
        let g = tch::no_grad(|| self.flat_grad() * (1.0 / scale));
        let finite = tch::no_grad(|| g.f_isfinite()?.f_all()?.f_int64_value(&[]))? == 1;
        if finite {
            self.update(lr, g);
        }
        Ok(finite)
    }

    /// Applies the rule to the flat gradient `g`.
    fn update(&mut self, lr: f64, g: Tensor) {
        self.steps += 1;
        let t = self.steps as i32;
        tch::no_grad(|| {
            let mut p = self.flat.shallow_clone();
            match self.kind {
                OptimizerKind::Rmsprop => {
                    // sq ← ρ·sq + (1−ρ)·g²;  p ← p − lr·g / (√sq + ε)
                    let sq = &mut self.state[0];
                    *sq *= RHO;
                    let _ = sq.addcmul_(&(&g * (1.0 - RHO)), &g);
                    let mut denom = sq.sqrt();
                    denom += EPS;
                    let _ = p.addcdiv_(&(g * -lr), &denom);
                }
                OptimizerKind::Adam => {
                    // m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
                    // p ← p − lr·√(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε)
                    let (m, v) = self.state.split_at_mut(1);
                    let (m, v) = (&mut m[0], &mut v[0]);
                    let _ = m.lerp_(&g, 1.0 - BETA1);
                    *v *= BETA2;
                    let _ = v.addcmul_(&(&g * (1.0 - BETA2)), &g);
                    let lr_t = lr * (1.0 - BETA2.powi(t)).sqrt() / (1.0 - BETA1.powi(t));
                    let mut denom = v.sqrt();
                    denom += EPS;
                    let _ = p.addcdiv_(&(&*m * -lr_t), &denom);
                }
            }
        });
    }

    /// The state tensors by checkpoint key (`optimizer.<param>.<i>`), as
    /// views shaped like their parameters.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.slots
            .iter()
            .flat_map(|s| {
                self.state.iter().enumerate().map(move |(i, t)| {
                    (format!("optimizer.{}.{i}", s.name), storage_view(&t.narrow(0, s.offset, s.numel), &s.shape))
                })
            })
            .collect()
    }

    /// Restores state saved by [`Optimizer::state`]; `get` looks a key up.
    pub fn load_state(&mut self, steps: i64, mut get: impl FnMut(&str) -> Option<Tensor>) -> Result<(), String> {
        for s in &self.slots {
            for (i, t) in self.state.iter().enumerate() {
                let key = format!("optimizer.{}.{i}", s.name);
                let src = get(&key).ok_or_else(|| format!("checkpoint lacks {key}"))?;
                if src.size() != s.shape {
                    return Err(format!("checkpoint {key} has shape {:?}, expected {:?}", src.size(), s.shape));
                }
                let mut dst = storage_view(&t.narrow(0, s.offset, s.numel), &s.shape);
                tch::no_grad(|| dst.copy_(&src));
            }
        }
        self.steps = steps;
        Ok(())
    }
}
