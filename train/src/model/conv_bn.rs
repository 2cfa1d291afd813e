//! Conv(K×K, "same") → BatchNorm, the block every layer of both networks
//! is made of; the ReLU is applied by the caller.

use tch::{nn, nn::ModuleT, Tensor};

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

/// A block under `p` (`p/conv`, `p/bn`), shaped like tch's `nn::conv2d`.
pub fn conv_bn(p: &nn::Path, c_in: i64, c_out: i64, kernel: i64) -> ConvBn {
    let (before, after) = same_pads(kernel);
    let cfg = nn::ConvConfig { padding: if before == after { before } else { 0 }, bias: false, ..Default::default() };
    ConvBn {
        conv: nn::conv2d(p / "conv", c_in, c_out, kernel, cfg),
        bn: nn::batch_norm2d(p / "bn", c_out, Default::default()),
        kernel,
    }
}

impl ModuleT for ConvBn {
    /// [B, C_in, H, W] → [B, C_out, H, W].
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
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
