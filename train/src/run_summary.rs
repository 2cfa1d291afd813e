//! `train summary --run RUN`: the run's network as `model.summary()` shows
//! it — layers, output shapes, parameters; for a classifier with frozen
//! epochs, stage 1 (encoder frozen) and stage 2 (everything trained).

use std::path::Path;

use tch::nn::VarStore;

use crate::error::TrainError;
use crate::run_dir::{ModelConfig, RunDir};

/// The summary of the model a run's `config.json` describes.
pub fn run_summary(run: &Path) -> Result<String, TrainError> {
    let cfg = RunDir::open(run)?.read_config()?;
    let vs = VarStore::new(tch::Device::Cpu);
    Ok(match &cfg.model {
        ModelConfig::Autoencoder { model } => model.init(&vs.root()).summary().render(),
        ModelConfig::Classifier { model, .. } => {
            let clf = model.init(&vs.root());
            if cfg.train.frozen_epochs > 0 {
                format!("{}\n{}", clf.summary(true).render(), clf.summary(false).render())
            } else {
                clf.summary(false).render()
            }
        }
    })
}
