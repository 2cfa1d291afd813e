//! RMSprop and Adam with Keras' semantics, written on tensors so their state
//! is ours to checkpoint: `--resume` restores it exactly, which libtorch's
//! built-in optimizers do not allow through tch.

use serde::{Deserialize, Serialize};
use tch::Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
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

/// One parameter and its optimizer state.
#[derive(Debug)]
struct Slot {
    name: String,
    param: Tensor,
    /// RMSprop: [mean square]; Adam: [first moment, second moment].
    state: Vec<Tensor>,
}

#[derive(Debug)]
pub struct Optimizer {
    kind: OptimizerKind,
    slots: Vec<Slot>,
    /// Steps taken (Adam's bias correction needs it).
    pub steps: i64,
}

impl Optimizer {
    /// Over the given named parameters, in a fixed (sorted) order.
    pub fn new(kind: OptimizerKind, mut params: Vec<(String, Tensor)>) -> Optimizer {
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = params
            .into_iter()
            .map(|(name, param)| {
                let n = match kind {
                    OptimizerKind::Rmsprop => 1,
                    OptimizerKind::Adam => 2,
                };
                let state = (0..n).map(|_| param.zeros_like()).collect();
                Slot { name, param, state }
            })
            .collect();
        Optimizer { kind, slots, steps: 0 }
    }

    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            s.param.zero_grad();
        }
    }

    /// One update with learning rate `lr`; parameters without a gradient
    /// (frozen ones) are left alone.
    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        let t = self.steps as i32;
        tch::no_grad(|| {
            for s in &mut self.slots {
                let g = s.param.grad();
                if !g.defined() {
                    continue;
                }
                match self.kind {
                    OptimizerKind::Rmsprop => {
                        let sq = &mut s.state[0];
                        *sq *= RHO;
                        let _ = sq.addcmul_(&(&g * (1.0 - RHO)), &g);
                        let update = &g / (sq.sqrt() + EPS) * lr;
                        s.param -= update;
                    }
                    OptimizerKind::Adam => {
                        let (m, v) = s.state.split_at_mut(1);
                        let (m, v) = (&mut m[0], &mut v[0]);
                        *m *= BETA1;
                        *m += &g * (1.0 - BETA1);
                        *v *= BETA2;
                        let _ = v.addcmul_(&(&g * (1.0 - BETA2)), &g);
                        let lr_t = lr * (1.0 - BETA2.powi(t)).sqrt() / (1.0 - BETA1.powi(t));
                        let update = &*m / (v.sqrt() + EPS) * lr_t;
                        s.param -= update;
                    }
                }
            }
        });
    }

    /// The state tensors by checkpoint key (`optimizer.<param>.<i>`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.slots
            .iter()
            .flat_map(|s| s.state.iter().enumerate().map(move |(i, t)| (format!("optimizer.{}.{i}", s.name), t.shallow_clone())))
            .collect()
    }

    /// Restores state saved by [`Optimizer::state`]; `get` looks a key up.
    pub fn load_state(&mut self, steps: i64, mut get: impl FnMut(&str) -> Option<Tensor>) -> Result<(), String> {
        for s in &mut self.slots {
            for (i, t) in s.state.iter_mut().enumerate() {
                let key = format!("optimizer.{}.{i}", s.name);
                let src = get(&key).ok_or_else(|| format!("checkpoint lacks {key}"))?;
                if src.size() != t.size() {
                    return Err(format!("checkpoint {key} has shape {:?}, expected {:?}", src.size(), t.size()));
                }
                tch::no_grad(|| t.copy_(&src));
            }
        }
        self.steps = steps;
        Ok(())
    }
}
