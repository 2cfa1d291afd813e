//! One epoch's record: a row of `history.csv`, and what every checkpoint
//! carries of the epochs before it.

use serde::{Deserialize, Serialize};

/// One row of `history.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub loss: f64,
    pub val_loss: f64,
    pub accuracy: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub seconds: f64,
    pub lr: f64,
    /// The best epoch of this row's stage so far, this one included
    /// ([`crate::early_stopping::best_epoch`]): the last row names the
    /// epoch whose weights `best.safetensors` holds. 0 in older runs.
    #[serde(default)]
    pub best_epoch: usize,
    /// The training stage the epoch belongs to: 1 for the autoencoder and
    /// the classifier's frozen-encoder stage, 2 for its fine-tuning (also
    /// when there is no frozen stage). 1 in older runs.
    #[serde(default = "first_stage")]
    pub stage: usize,
}

fn first_stage() -> usize {
    1
}
