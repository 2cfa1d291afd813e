//! The classifier: the autoencoder's trained encoder → flatten → a fully
//! connected ReLU layer (dropout while fine-tuning, if asked) → one logit
//! per class (softmax at inference).

use serde::{Deserialize, Serialize};
use tch::{nn, nn::ModuleT, Tensor};

use super::architecture::{is_zero, ConfigError, FC_UNITS};
use super::encoder::Encoder;
use super::spec::AutoencoderConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierConfig {
    /// The autoencoder whose encoder this reuses.
    pub encoder: AutoencoderConfig,
    pub fc_units: usize,
    pub classes: usize,
    /// Dropout on the fully connected layer's output while the whole
    /// network trains (stage 2; stage 1 runs in eval mode, as the frozen
    /// encoder's BatchNorm must); none at inference, so no graph node.
    /// Absent from older runs' files (0), so their fingerprints hold.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropout: f64,
}

impl ClassifierConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.encoder.validate()?;
        if !FC_UNITS.contains(&self.fc_units) {
            return Err(ConfigError::FcUnits(self.fc_units));
        }
        if self.classes < 2 {
            return Err(ConfigError::Classes(self.classes));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ConfigError::Dropout(self.dropout));
        }
        Ok(())
    }

    /// The model, its parameters under `p`.
    pub fn init(&self, p: &nn::Path) -> Classifier {
        Classifier::new(p, self)
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

    /// [B, C_in, H, W] → logits [B, classes] with the encoder in eval mode:
    /// evaluation, export, and stage 1 (encoder frozen, its BatchNorm
    /// statistics kept).
    pub fn logits(&self, xs: &Tensor) -> Tensor {
        self.head_logits(&self.encoder.forward_t(xs, false), false)
    }

    /// The embedding [B, C, h, w] → logits [B, classes]; `train`: dropout.
    fn head_logits(&self, zs: &Tensor, train: bool) -> Tensor {
        let hidden = zs.flatten(1, -1).apply(&self.fc).relu(); // [B, C·h·w] → [B, fc_units]
        hidden.dropout(self.config.dropout, train).apply(&self.head) // [B, classes]
    }
}

impl ModuleT for Classifier {
    /// [B, C_in, H, W] → logits [B, classes]; `train` reaches the encoder's
    /// BatchNorm (stage 2: everything fine-tuned).
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.head_logits(&self.encoder.forward_t(xs, train), train)
    }
}
