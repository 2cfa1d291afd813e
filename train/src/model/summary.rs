//! Keras' `model.summary()` for our networks: each layer's operation,
//! output shape and parameter count, then the totals, trainable and frozen
//! (stage 1 of the classifier freezes the encoder). Counts come from the
//! model's own tensors. BatchNorm's running statistics are buffers, not
//! parameters, and are not counted, so the totals are the ones `make bench`
//! checks against PyTorch's `parameters()`.

use ae_core::numbers::thousands;
use tch::Tensor;

use super::autoencoder::Autoencoder;
use super::classifier::Classifier;
use super::conv_bn::ConvBn;
use super::encoder::Encoder;
use super::spec::{AutoencoderConfig, POOLED_LAYERS};

/// One row of a summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// The variable-store prefix: `encoder.0`, `decoder.out`, `fc`.
    pub name: String,
    pub operation: String,
    /// Without the batch: `[C, H, W]` or `[N]`.
    pub output: Vec<usize>,
    pub params: usize,
    pub frozen: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub model: String,
    /// `[C, H, W]`.
    pub input: [usize; 3],
    pub layers: Vec<Layer>,
}

fn numel(t: &Tensor) -> usize {
    t.numel()
}

fn conv_bn_params(b: &ConvBn) -> usize {
    numel(&b.conv.ws)
        + b.conv.bs.as_ref().map_or(0, numel)
        + b.bn.ws.as_ref().map_or(0, numel)
        + b.bn.bs.as_ref().map_or(0, numel)
}

impl Encoder {
    /// Its rows, for images of `cfg.input`; `frozen` marks them all.
    pub fn summary_layers(&self, cfg: &AutoencoderConfig, frozen: bool) -> Vec<Layer> {
        let (mut h, mut w) = (cfg.input.height, cfg.input.width);
        let k = cfg.filter_size;
        self.blocks
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let pooled = i < POOLED_LAYERS;
                if pooled {
                    (h, w) = (h / 2, w / 2);
                }
                Layer {
                    name: format!("encoder.{i}"),
                    operation: format!("conv {k}×{k}, batch norm, ReLU{}", if pooled { ", max-pool 2×2" } else { "" }),
                    output: vec![cfg.channels(i) as usize, h, w],
                    params: conv_bn_params(b),
                    frozen,
                }
            })
            .collect()
    }
}

impl Autoencoder {
    pub fn summary(&self) -> Summary {
        let cfg = &self.config;
        let mut layers = self.encoder.summary_layers(cfg, false);
        let [_, mut h, mut w] = layers.last().map(|l| [0, l.output[1], l.output[2]]).unwrap_or_default();
        let k = cfg.filter_size;
        for (j, b) in self.decoder.iter().enumerate() {
            let up = self.upsamples(j);
            if up {
                (h, w) = (h * 2, w * 2);
            }
            layers.push(Layer {
                name: format!("decoder.{j}"),
                operation: format!("conv {k}×{k}, batch norm, ReLU{}", if up { ", upsample 2×" } else { "" }),
                output: vec![cfg.channels(cfg.layers - 1 - j) as usize, h, w],
                params: conv_bn_params(b),
                frozen: false,
            });
        }
        layers.push(Layer {
            name: "decoder.out".into(),
            operation: "conv 3×3, sigmoid".into(),
            output: vec![cfg.input.channels, h, w],
            params: numel(&self.out.ws) + self.out.bs.as_ref().map_or(0, numel),
            frozen: false,
        });
        Summary { model: "autoencoder".into(), input: [cfg.input.channels, cfg.input.height, cfg.input.width], layers }
    }
}

impl Classifier {
    /// `encoder_frozen`: stage 1 (the encoder's weights are not trained).
    pub fn summary(&self, encoder_frozen: bool) -> Summary {
        let cfg = &self.config;
        let input = &cfg.encoder.input;
        let mut layers = self.encoder.summary_layers(&cfg.encoder, encoder_frozen);
        let linear = |l: &tch::nn::Linear| numel(&l.ws) + l.bs.as_ref().map_or(0, numel);
        let dropout = format!("dropout {} (fine-tuning only)", cfg.dropout);
        let mut head =
            vec![("flatten", "flatten", cfg.embedding_len(), 0), ("fc", "dense, ReLU", cfg.fc_units, linear(&self.fc))];
        if cfg.dropout > 0.0 {
            head.push(("dropout", dropout.as_str(), cfg.fc_units, 0));
        }
        head.push(("head", "dense (logits; softmax at inference)", cfg.classes, linear(&self.head)));
        for (name, operation, width, params) in head {
            layers.push(Layer {
                name: name.into(),
                operation: operation.into(),
                output: vec![width],
                params,
                frozen: false,
            });
        }
        let model = if encoder_frozen { "classifier, stage 1 (encoder frozen)" } else { "classifier" };
        Summary { model: model.into(), input: [input.channels, input.height, input.width], layers }
    }
}

impl Summary {
    pub fn total(&self) -> usize {
        self.layers.iter().map(|l| l.params).sum()
    }
    pub fn frozen(&self) -> usize {
        self.layers.iter().filter(|l| l.frozen).map(|l| l.params).sum()
    }
    pub fn trainable(&self) -> usize {
        self.total() - self.frozen()
    }

    /// The table, as printed before training and by `train summary`.
    pub fn render(&self) -> String {
        let shape = |s: &[usize]| format!("[B, {}]", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "));
        let rows: Vec<[String; 4]> = self
            .layers
            .iter()
            .map(|l| {
                let params = if l.frozen { format!("{} (frozen)", thousands(l.params)) } else { thousands(l.params) };
                [l.name.clone(), l.operation.clone(), shape(&l.output), params]
            })
            .collect();
        let head = ["layer", "operation", "output shape", "parameters"];
        let widths: Vec<usize> = (0..4)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).chain([head[c].len()]).max().unwrap_or(0))
            .collect();
        let line = |cells: [&str; 4]| {
            let mut s = String::new();
            for (c, cell) in cells.iter().enumerate() {
                let pad = widths[c] - cell.chars().count();
                if c == 3 {
                    s += &format!("{}{cell}", " ".repeat(pad));
                } else {
                    s += &format!("{cell}{}  ", " ".repeat(pad));
                }
            }
            s.trim_end().to_string() + "\n"
        };
        let [c, h, w] = self.input;
        let mut out = format!("{}: input {}\n", self.model, shape(&[c, h, w]));
        out += &line(head);
        for r in &rows {
            out += &line([&r[0], &r[1], &r[2], &r[3]]);
        }
        out += &format!(
            "parameters: {} total, {} trainable, {} frozen\n",
            thousands(self.total()),
            thousands(self.trainable()),
            thousands(self.frozen())
        );
        out
    }
}
