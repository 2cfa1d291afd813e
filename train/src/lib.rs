//! Training of the convolutional autoencoder and the classifier built on
//! its encoder (libtorch through tch), their ONNX export, and the reference
//! project's experiment workflow (results tables, sweeps, interactive menu).

pub mod bench;
pub mod cli;
pub mod data;
pub mod error;
pub mod explore;
pub mod export;
pub mod fit;
pub mod model;
pub mod optim;
pub mod pipeline;
pub mod run;
pub mod sweep;
pub mod table;

pub use error::TrainError;
