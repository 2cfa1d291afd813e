//! `--ema DECAY`: an exponential moving average of the weights, as timm's
//! `ModelEmaV3` keeps it — one object with a narrow face. `update` after
//! every optimizer step moves each averaged tensor towards the model's
//! (every floating variable: weights and BatchNorm's running statistics,
//! which are averaged alike and so stay consistent with the averaged
//! weights), with a warm-up that lets the first steps count fully
//! (decay = min(DECAY, (1 + step) / (10 + step))). `swap` exchanges the
//! model's variables with the averages without copying, so validation,
//! the best epoch, the checkpoint's model and the export all see the
//! averaged weights, and training goes on with its own.

use tch::{nn::VarStore, Tensor};

/// The averaged copy of a model's variables.
#[derive(Debug)]
pub struct Ema {
    pub decay: f64,
    /// (name, averaged tensor), in the store's name order.
    shadow: Vec<(String, Tensor)>,
}

/// The checkpoint's names for the training weights while the averaged ones
/// are the model's: `train_weights.<variable>`.
pub const PREFIX: &str = "train_weights.";

impl Ema {
    /// Starts the average at the model's current weights.
    pub fn new(vs: &VarStore, decay: f64) -> Ema {
        let shadow = sorted(vs).into_iter().map(|(k, t)| (k, t.detach().copy())).collect();
        Ema { decay, shadow }
    }

    /// The decay at optimizer step `step` (0-based, of the whole run).
    pub fn decay_at(&self, step: i64) -> f64 {
        self.decay.min((1.0 + step as f64) / (10.0 + step as f64))
    }

    /// One step of the average after optimizer step `step`.
    pub fn update(&mut self, vs: &VarStore, step: i64) {
        let weight = 1.0 - self.decay_at(step);
        tch::no_grad(|| {
            for ((_, avg), (_, w)) in self.shadow.iter_mut().zip(sorted(vs)) {
                let _ = avg.lerp_(&w, weight);
            }
        });
    }

    /// Exchanges the model's variables with the averages (no copy); calling
    /// it again swaps them back.
    pub fn swap(&mut self, vs: &VarStore) {
        tch::no_grad(|| {
            for ((_, avg), (_, mut w)) in self.shadow.iter_mut().zip(sorted(vs)) {
                let model = w.detach().shallow_clone();
                w.set_data(avg);
                *avg = model;
            }
        });
    }

    /// The shadow tensors as a checkpoint holds them (while swapped in,
    /// these are the training weights), named `PREFIX<variable>`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.shadow.iter().map(|(k, t)| (format!("{PREFIX}{k}"), t.shallow_clone())).collect()
    }

    /// Puts `PREFIX<variable>` tensors of a checkpoint in the shadow.
    pub fn load_state(&mut self, get: impl Fn(&str) -> Option<Tensor>) -> Result<(), String> {
        for (k, t) in self.shadow.iter_mut() {
            let src = get(&format!("{PREFIX}{k}")).ok_or_else(|| format!("checkpoint has no tensor {PREFIX}{k}"))?;
            if src.size() != t.size() {
                return Err(format!("tensor {PREFIX}{k} has shape {:?}, expected {:?}", src.size(), t.size()));
            }
            tch::no_grad(|| t.copy_(&src));
        }
        Ok(())
    }

    /// Restarts the average at the model's current weights (a new stage
    /// starting from restored weights).
    pub fn reset(&mut self, vs: &VarStore) {
        tch::no_grad(|| {
            for ((_, avg), (_, w)) in self.shadow.iter_mut().zip(sorted(vs)) {
                avg.copy_(&w);
            }
        });
    }
}

fn sorted(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}
