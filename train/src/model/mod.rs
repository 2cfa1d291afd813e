//! The networks: a convolutional autoencoder and a classifier built on its
//! encoder. Parameter paths (`encoder.0.conv.weight`, …) are the checkpoint
//! keys and the ONNX initializer names.

pub mod autoencoder;
pub mod classifier;

use serde::{Deserialize, Serialize};
use tch::{nn, nn::ModuleT, Tensor};

pub use autoencoder::{Autoencoder, AutoencoderConfig};
pub use classifier::{Classifier, ClassifierConfig};

/// Conv(K×K, "same") → BatchNorm; the ReLU is applied by the caller.
///
/// "Same" for an even K pads one more row/column after than before (as
/// Keras/TensorFlow do), which a symmetric conv padding cannot express, so
/// the pad is explicit then.
#[derive(Debug)]
pub struct ConvBn {
    pub conv: nn::Conv2D,
    pub bn: nn::BatchNorm,
    pub kernel: i64,
}

/// (before, after) padding that keeps the size for a K-wide kernel.
pub fn same_pads(kernel: i64) -> (i64, i64) {
    let before = (kernel - 1) / 2;
    (before, kernel - 1 - before)
}

impl ConvBn {
    pub fn new(p: &nn::Path, c_in: i64, c_out: i64, kernel: i64) -> ConvBn {
        let (before, after) = same_pads(kernel);
        let cfg =
            nn::ConvConfig { padding: if before == after { before } else { 0 }, bias: false, ..Default::default() };
        ConvBn {
            conv: nn::conv2d(p / "conv", c_in, c_out, kernel, cfg),
            bn: nn::batch_norm2d(p / "bn", c_out, Default::default()),
            kernel,
        }
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let (before, after) = same_pads(self.kernel);
        let ys = if before == after {
            xs.apply(&self.conv)
        } else {
            // constant_pad_nd takes (left, right, top, bottom).
            xs.constant_pad_nd([before, after, before, after]).apply(&self.conv)
        };
        ys.apply_t(&self.bn, train)
    }
}

/// The input images' geometry, recorded with every model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputShape {
    pub height: usize,
    pub width: usize,
}

/// The encoder half: layer i is ConvBn → ReLU, then 2×2 max-pool for i < 2.
#[derive(Debug)]
pub struct Encoder {
    pub blocks: Vec<ConvBn>,
}

impl Encoder {
    pub fn new(p: &nn::Path, cfg: &AutoencoderConfig) -> Encoder {
        let mut c_in = 1;
        let blocks = (0..cfg.layers)
            .map(|i| {
                let c_out = cfg.channels(i);
                let b = ConvBn::new(&(p / i), c_in, c_out, cfg.filter_size as i64);
                c_in = c_out;
                b
            })
            .collect();
        Encoder { blocks }
    }

    /// [B, 1, H, W] → [B, F·2^(L−1), H/4, W/4] (H/2 when L = 1).
    pub fn forward(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.shallow_clone();
        for (i, b) in self.blocks.iter().enumerate() {
            x = b.forward_t(&x, train).relu();
            if i < autoencoder::POOLED_LAYERS {
                x = x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
            }
        }
        x
    }
}

impl ModuleT for Encoder {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.forward(xs, train)
    }
}
