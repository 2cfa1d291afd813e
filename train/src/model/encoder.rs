//! The encoder half, shared by the autoencoder and the classifier.

use tch::{nn, nn::ModuleT, Tensor};

use super::conv_bn::{conv_bn, ConvBn};
use super::spec::{AutoencoderConfig, POOLED_LAYERS};

/// Layer i is ConvBn → ReLU, then 2×2 max-pool for i < 2; before the first,
/// the input's normalisation, if the model has one.
#[derive(Debug)]
pub struct Encoder {
    pub blocks: Vec<ConvBn>,
    /// `[1, C, 1, 1]` mean and standard deviation (not trained).
    pub normalize: Option<(Tensor, Tensor)>,
}

impl Encoder {
    pub fn new(p: &nn::Path, cfg: &AutoencoderConfig) -> Encoder {
        let normalize = cfg.input.normalize.map(|n| n.tensors(cfg.input.channels, p.device()));
        let mut c_in = cfg.input.channels as i64;
        let blocks = (0..cfg.layers)
            .map(|i| {
                let c_out = cfg.channels(i);
                let b = conv_bn(&(p / i), c_in, c_out, cfg.filter_size as i64);
                c_in = c_out;
                b
            })
            .collect();
        Encoder { blocks, normalize }
    }
}

impl ModuleT for Encoder {
    /// [B, C_in, H, W] → [B, F·2^(L−1), H/4, W/4] (H/2 when L = 1).
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = match &self.normalize {
            Some((mean, std)) => (xs - mean) / std,
            None => xs.shallow_clone(),
        };
        for (i, b) in self.blocks.iter().enumerate() {
            x = b.forward_t(&x, train).relu();
            if i < POOLED_LAYERS {
                x = x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
            }
        }
        x
    }
}
