//! What the networks are made of, before any input size is known: the
//! autoencoder's three architecture hyperparameters, the classifier's FC
//! range, and the errors of a configuration that cannot be built or trained.

use serde::{Deserialize, Serialize};

/// serde's `skip_serializing_if` for settings whose 0 means "off": a run
/// that leaves them off keeps the config.json (and fingerprint) it had
/// before they existed.
pub(crate) fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// A configuration the networks cannot be built or trained with.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("--layers must be between 1 and 8, got {0}")]
    Layers(usize),
    #[error("--filter-size must be between 2 and 7, got {0}")]
    FilterSize(usize),
    #[error("--filters must be between 1 and 512, got {0}")]
    Filters(usize),
    #[error("images of {h}×{w} cannot go through {pools} 2×2 poolings: height and width must be divisible by {div}")]
    Geometry { h: usize, w: usize, pools: usize, div: usize },
    #[error("--fc-units must be between 1 and 65536, got {0}")]
    FcUnits(usize),
    #[error("the labels name {0} classes, expected at least 2")]
    Classes(usize),
    #[error("--batch-size must be at least 1, got 0")]
    BatchSize,
    #[error("--epochs must be at least 1, got 0")]
    Epochs,
    #[error("--val-split must be strictly between 0 and 1, got {0}")]
    ValSplit(f64),
    #[error("{0} must be positive, got {1}")]
    Lr(&'static str, f64),
    #[error("--limit must be at least 1, got 0")]
    Limit,
    #[error("--warmup must be a fraction in [0, 1), got {0}")]
    Warmup(f64),
    #[error("--early-stopping must be at least 1 epoch, got 0")]
    Patience,
    #[error("--min-delta must be a finite number ≥ 0, got {0}")]
    MinDelta(f64),
    #[error("{0}")]
    Augment(String),
    #[error("--ema must be a decay in (0, 1), or 0 for none, got {0}")]
    Ema(f64),
    #[error("--label-smoothing must be in [0, 1), got {0}")]
    LabelSmoothing(f64),
    #[error("--label-smoothing smooths the cross-entropy's targets; --loss mse has none")]
    SmoothingNeedsCrossEntropy,
    #[error("--dropout must be a probability in [0, 1), got {0}")]
    Dropout(f64),
    #[error("--noise must be a standard deviation ≥ 0, got {0}")]
    Noise(f64),
}

/// The autoencoder's architecture: three of the reference's five
/// hyperparameters (epochs and batch size are `config::TrainSettings`').
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Architecture {
    /// Encoder layers (the decoder mirrors them).
    pub layers: usize,
    /// Kernel size K (K×K), odd or even.
    pub filter_size: usize,
    /// Filters of the first encoder layer; each next layer doubles them.
    pub filters: usize,
}

impl Architecture {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=8).contains(&self.layers) {
            return Err(ConfigError::Layers(self.layers));
        }
        if !(2..=7).contains(&self.filter_size) {
            return Err(ConfigError::FilterSize(self.filter_size));
        }
        if !(1..=512).contains(&self.filters) {
            return Err(ConfigError::Filters(self.filters));
        }
        Ok(())
    }

    /// The reference's naming: L4_FS3_FL32.
    pub fn tag(&self) -> String {
        format!("L{}_FS{}_FL{}", self.layers, self.filter_size, self.filters)
    }
}

/// The range of `fc_units` a classifier accepts.
pub const FC_UNITS: std::ops::RangeInclusive<usize> = 1..=65536;
