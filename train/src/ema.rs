//! `--ema DECAY`: an exponential moving average of the weights, as timm's
//! `ModelEmaV3` keeps it — one object with a narrow face. `update` after
//! every optimizer step moves each averaged tensor towards the model's
//! (every floating variable: weights and BatchNorm's running statistics,
//! which are averaged alike and so stay consistent with the averaged
//! weights), with a warm-up that lets the first steps count more
//! ([`Warmup`]: TensorFlow's `ExponentialMovingAverage(num_updates)`, or
//! timm's `ModelEmaV3` warm-up). `swap` exchanges the
//! model's variables with the averages without copying, so validation,
//! the best epoch, the checkpoint's model and the export all see the
//! averaged weights, and training goes on with its own.

use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Tensor};

/// How the decay grows to `--ema`'s over a stage's first steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::VariantArray, strum::EnumMessage)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Warmup {
    /// TensorFlow's `ExponentialMovingAverage(num_updates=step)`:
    /// min(DECAY, (1 + step) / (10 + step)) (0.9976 after 3 750 steps).
    #[default]
    Tensorflow,
    /// timm's `ModelEmaV3(use_warmup=True)`: min(DECAY, 1 − (1 + step)^−2/3)
    /// (0.9959 after 3 750 steps).
    Timm,
}

impl Warmup {
    /// What runs before the choice was offered used: TensorFlow's.
    pub fn is_tensorflow(&self) -> bool {
        *self == Warmup::Tensorflow
    }
}

/// The averaged copy of a model's variables.
#[derive(Debug)]
pub struct Ema {
    pub decay: f64,
    pub warmup: Warmup,
    /// The model's variables (handles that share them, so an optimizer or
    /// a checkpoint that replaces their data is seen), in name order…
    model: Vec<(String, Tensor)>,
    /// …and their averages, in the same order.
    shadow: Vec<Tensor>,
}

/// The checkpoint's names for the training weights while the averaged ones
/// are the model's: `train_weights.<variable>`.
pub const PREFIX: &str = "train_weights.";

impl Ema {
    /// Starts the average at the model's current weights.
    pub fn new(vs: &VarStore, decay: f64, warmup: Warmup) -> Ema {
        let mut model: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        model.sort_by(|a, b| a.0.cmp(&b.0));
        let shadow = model.iter().map(|(_, t)| t.detach().copy()).collect();
        Ema { decay, warmup, model, shadow }
    }

    /// The decay at optimizer step `step` (0-based, of the stage).
    pub fn decay_at(&self, step: i64) -> f64 {
        let t = step as f64;
        let warm = match self.warmup {
            Warmup::Tensorflow => (1.0 + t) / (10.0 + t),
            Warmup::Timm => 1.0 - (1.0 + t).powf(-2.0 / 3.0),
        };
        self.decay.min(warm)
    }

    /// One step of the average after optimizer step `step`.
    pub fn update(&mut self, step: i64) {
        let weight = 1.0 - self.decay_at(step);
        tch::no_grad(|| {
            for (avg, (_, w)) in self.shadow.iter_mut().zip(&self.model) {
                let _ = avg.lerp_(w, weight);
            }
        });
    }

    /// Exchanges the model's variables with the averages (no copy); calling
    /// it again swaps them back.
    pub fn swap(&mut self) {
        tch::no_grad(|| {
            for (avg, (_, w)) in self.shadow.iter_mut().zip(self.model.iter_mut()) {
                let current = w.detach().shallow_clone();
                w.set_data(avg);
                *avg = current;
            }
        });
    }

    /// The shadow tensors as a checkpoint holds them (while swapped in,
    /// these are the training weights), named `PREFIX<variable>`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.model.iter().zip(&self.shadow).map(|((k, _), t)| (format!("{PREFIX}{k}"), t.shallow_clone())).collect()
    }

    /// Puts `PREFIX<variable>` tensors of a checkpoint in the shadow.
    pub fn load_state(&mut self, get: impl Fn(&str) -> Option<Tensor>) -> Result<(), String> {
        for ((k, _), t) in self.model.iter().zip(self.shadow.iter_mut()) {
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
    pub fn reset(&mut self) {
        tch::no_grad(|| {
            for (avg, (_, w)) in self.shadow.iter_mut().zip(&self.model) {
                avg.copy_(w);
            }
        });
    }
}
