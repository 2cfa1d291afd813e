//! The networks: a convolutional autoencoder and a classifier built on its
//! encoder. Parameter paths (`encoder.0.conv.weight`, …) are the checkpoint
//! keys and the ONNX initializer names.

pub mod architecture;
pub mod autoencoder;
pub mod classifier;
pub mod conv_bn;
pub mod encoder;
pub mod spec;
pub mod summary;

pub use architecture::{Architecture, ConfigError, FC_UNITS};
pub use autoencoder::{Autoencoder, AutoencoderConfig, InputShape, Normalization};
pub use classifier::{Classifier, ClassifierConfig};
pub use conv_bn::{conv_bn, same_pads, ConvBn};
pub use encoder::Encoder;
