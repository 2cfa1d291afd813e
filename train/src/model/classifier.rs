//! The classifier: the autoencoder's trained encoder → flatten → a fully
//! connected ReLU layer → one logit per class (softmax at inference).

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::autoencoder::ConfigError;
use super::{AutoencoderConfig, Encoder};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassifierConfig {
    /// The autoencoder whose encoder this reuses.
    pub encoder: AutoencoderConfig,
    pub fc_units: usize,
    pub classes: usize,
}

impl ClassifierConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.encoder.validate()?;
        if !(1..=65536).contains(&self.fc_units) {
            return Err(ConfigError::FcUnits(self.fc_units));
        }
        if self.classes < 2 {
            return Err(ConfigError::Classes(self.classes));
        }
        Ok(())
    }

    pub fn embedding_len(&self) -> usize {
        self.encoder.embedding_shape().iter().product()
    }
}

#[derive(Debug)]
pub struct Classifier {
    pub config: ClassifierConfig,
    pub encoder: Encoder,
    pub fc: nn::Linear,
    pub head: nn::Linear,
}

impl Classifier {
    pub fn new(p: &nn::Path, config: &ClassifierConfig) -> Classifier {
        let encoder = Encoder::new(&(p / "encoder"), &config.encoder);
        let fc = nn::linear(p / "fc", config.embedding_len() as i64, config.fc_units as i64, Default::default());
        let head = nn::linear(p / "head", config.fc_units as i64, config.classes as i64, Default::default());
        Classifier { config: config.clone(), encoder, fc, head }
    }

    /// [B, 1, H, W] → logits [B, classes]. `train_encoder` false keeps the
    /// encoder's BatchNorm in eval mode (stage 1: encoder frozen).
    pub fn forward(&self, xs: &Tensor, train: bool, train_encoder: bool) -> Tensor {
        self.encoder
            .forward(xs, train && train_encoder) // [B, C, h, w]
            .flatten(1, -1) // [B, C·h·w]
            .apply(&self.fc)
            .relu()
            .apply(&self.head)
    }
}
