//! The convolutional autoencoder of the reference project, generalised to
//! any depth, kernel size and width.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::{ConvBn, Encoder, InputShape};

/// Only the first two encoder layers pool (and the last two decoder layers
/// upsample), as in the reference, so deep models keep a 7×7 map on MNIST.
pub const POOLED_LAYERS: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoencoderConfig {
    /// Encoder layers (the decoder mirrors them).
    pub layers: usize,
    /// Kernel size K (K×K), odd or even.
    pub filter_size: usize,
    /// Filters of the first encoder layer; each next layer doubles them.
    pub filters: usize,
    pub input: InputShape,
}

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
}

impl AutoencoderConfig {
    /// Hyperparameters and input geometry.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_hyperparameters()?;
        let div = 1 << self.pools();
        let (h, w) = (self.input.height, self.input.width);
        if h == 0 || w == 0 || h % div != 0 || w % div != 0 {
            return Err(ConfigError::Geometry { h, w, pools: self.pools(), div });
        }
        Ok(())
    }

    /// The hyperparameters alone, checkable before any image is read.
    pub fn validate_hyperparameters(&self) -> Result<(), ConfigError> {
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
        format!("L{}_FS{}_FL{}", self.layers, self.filter_size, self.filters)
    }
}

#[derive(Debug)]
pub struct Autoencoder {
    pub config: AutoencoderConfig,
    pub encoder: Encoder,
    /// Decoder layer j: ConvBn to F·2^(L−1−j) channels → ReLU, then 2×
    /// nearest upsampling in the last `pools` layers.
    pub decoder: Vec<ConvBn>,
    /// 3×3 conv to one channel, then sigmoid: pixels in [0, 1].
    pub out: nn::Conv2D,
}

impl Autoencoder {
    pub fn new(p: &nn::Path, config: &AutoencoderConfig) -> Autoencoder {
        let encoder = Encoder::new(&(p / "encoder"), config);
        let dp = p / "decoder";
        let mut c_in = config.channels(config.layers - 1);
        let decoder = (0..config.layers)
            .map(|j| {
                let c_out = config.channels(config.layers - 1 - j);
                let b = ConvBn::new(&(&dp / j), c_in, c_out, config.filter_size as i64);
                c_in = c_out;
                b
            })
            .collect();
        let out = nn::conv2d(&dp / "out", c_in, 1, 3, nn::ConvConfig { padding: 1, ..Default::default() });
        Autoencoder { config: *config, encoder, decoder, out }
    }

    /// Whether decoder layer j upsamples after its activation.
    pub fn upsamples(&self, j: usize) -> bool {
        j + self.config.pools() >= self.config.layers
    }

    /// [B, 1, H, W] → [B, 1, H, W] in [0, 1].
    pub fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = self.encoder.forward(xs, train); // [B, C, H/4, W/4]
        for (j, b) in self.decoder.iter().enumerate() {
            x = b.forward_t(&x, train).relu();
            if self.upsamples(j) {
                let (h, w) = (x.size()[2], x.size()[3]);
                x = x.upsample_nearest2d([2 * h, 2 * w], 2.0, 2.0);
            }
        }
        x.apply(&self.out).sigmoid()
    }
}
