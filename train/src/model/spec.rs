//! What a network is before it has weights: the input's geometry and
//! normalisation, and the autoencoder's complete configuration (the
//! encoder, the decoder and the classifier are all built from it).

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::architecture::{Architecture, ConfigError};

/// Only the first two encoder layers pool (and the last two decoder layers
/// upsample), as in the reference, so deep models keep a 7×7 map on MNIST.
pub const POOLED_LAYERS: usize = 2;

/// The input images' geometry and normalisation, recorded with every model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InputShape {
    /// 1 (grayscale) or 3 (RGB). Runs from before colour have none: 1.
    #[serde(default = "one")]
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Per-channel mean and standard deviation subtracted and divided at
    /// the model's input (part of the model: consumers feed pixels / 255).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<Normalization>,
}

fn one() -> usize {
    1
}

impl InputShape {
    /// Grayscale images of `height × width`, not normalised.
    pub fn gray(height: usize, width: usize) -> InputShape {
        InputShape { channels: 1, height, width, normalize: None }
    }
}

/// Per-channel statistics of the training split, pixels in [0, 1]; only the
/// first `channels` entries are used.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalization {
    /// Mean and standard deviation per channel of `[N, C, H, W]` images in
    /// [0, 1] (a standard deviation of 0 becomes 1: nothing to scale).
    pub fn of(images: &Tensor) -> Normalization {
        let c = images.size()[1] as usize;
        let mean =
            Vec::<f32>::try_from(images.mean_dim([0i64, 2, 3].as_slice(), false, tch::Kind::Float)).expect("f32");
        let std = Vec::<f32>::try_from(images.std_dim([0i64, 2, 3].as_slice(), false, false)).expect("f32");
        let (mut m, mut s) = ([0.0; 3], [1.0; 3]);
        for i in 0..c.min(3) {
            m[i] = mean[i];
            s[i] = if std[i] > 1e-6 { std[i] } else { 1.0 };
        }
        Normalization { mean: m, std: s }
    }

    /// `[1, C, 1, 1]` tensors to subtract and divide by.
    pub fn tensors(&self, channels: usize, device: tch::Device) -> (Tensor, Tensor) {
        let t = |v: &[f32; 3]| Tensor::from_slice(&v[..channels]).reshape([1, channels as i64, 1, 1]).to_device(device);
        (t(&self.mean), t(&self.std))
    }
}

/// An autoencoder for images of one size ([`Architecture::with_input`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AutoencoderConfig {
    /// Encoder layers (the decoder mirrors them).
    pub layers: usize,
    /// Kernel size K (K×K), odd or even.
    pub filter_size: usize,
    /// Filters of the first encoder layer; each next layer doubles them.
    pub filters: usize,
    pub input: InputShape,
}

impl AutoencoderConfig {
    /// Hyperparameters and input geometry.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.architecture().validate()?;
        let div = 1 << self.pools();
        let (h, w) = (self.input.height, self.input.width);
        if h == 0 || w == 0 || h % div != 0 || w % div != 0 {
            return Err(ConfigError::Geometry { h, w, pools: self.pools(), div });
        }
        Ok(())
    }

    pub fn architecture(&self) -> Architecture {
        Architecture { layers: self.layers, filter_size: self.filter_size, filters: self.filters }
    }

    pub fn pools(&self) -> usize {
        self.layers.min(POOLED_LAYERS)
    }

    /// Output channels of encoder layer i.
    pub fn channels(&self, i: usize) -> i64 {
        (self.filters << i) as i64
    }

    /// The embedding's shape [C, h, w].
    pub fn embedding_shape(&self) -> [usize; 3] {
        let div = 1 << self.pools();
        [self.channels(self.layers - 1) as usize, self.input.height / div, self.input.width / div]
    }

    /// The reference's naming: L4_FS3_FL32.
    pub fn tag(&self) -> String {
        self.architecture().tag()
    }
}

impl Architecture {
    /// The model for images of `input`'s size.
    pub fn with_input(self, input: InputShape) -> AutoencoderConfig {
        AutoencoderConfig { layers: self.layers, filter_size: self.filter_size, filters: self.filters, input }
    }
}
