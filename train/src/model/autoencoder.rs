//! The convolutional autoencoder of the reference project, generalised to
//! any depth, kernel size and width.

use tch::{nn, nn::ModuleT, Tensor};

use super::conv_bn::{conv_bn, ConvBn};
use super::encoder::Encoder;
pub use super::spec::{AutoencoderConfig, InputShape, Normalization};

impl AutoencoderConfig {
    /// The model, its parameters under `p`.
    pub fn init(&self, p: &nn::Path) -> Autoencoder {
        Autoencoder::new(p, self)
    }
}

#[derive(Debug)]
pub struct Autoencoder {
    pub config: AutoencoderConfig,
    pub encoder: Encoder,
    /// Decoder layer j: ConvBn to F·2^(L−1−j) channels → ReLU, then 2×
    /// nearest upsampling in the last `pools` layers.
    pub decoder: Vec<ConvBn>,
    /// 3×3 conv to the input's channels, then sigmoid: pixels in [0, 1].
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
                let b = conv_bn(&(&dp / j), c_in, c_out, config.filter_size as i64);
                c_in = c_out;
                b
            })
            .collect();
        let out = nn::conv2d(
            &dp / "out",
            c_in,
            config.input.channels as i64,
            3,
            nn::ConvConfig { padding: 1, ..Default::default() },
        );
        Autoencoder { config: *config, encoder, decoder, out }
    }

    /// Whether decoder layer j upsamples after its activation.
    pub fn upsamples(&self, j: usize) -> bool {
        j + self.config.pools() >= self.config.layers
    }

    /// [B, C_in, H, W] → the embedding [B, C, H/4, W/4].
    pub fn encode(&self, xs: &Tensor, train: bool) -> Tensor {
        self.encoder.forward_t(xs, train)
    }

    /// The embedding [B, C, H/4, W/4] → pixels [B, C_in, H, W] in [0, 1].
    pub fn decode(&self, zs: &Tensor, train: bool) -> Tensor {
        let mut x = zs.shallow_clone();
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

impl ModuleT for Autoencoder {
    /// [B, C_in, H, W] → its reconstruction [B, C_in, H, W] in [0, 1].
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.decode(&self.encode(xs, train), train)
    }
}
