//! Training of the convolutional autoencoder and the classifier built on
//! its encoder (libtorch through tch), their ONNX export, and the reference
//! project's experiment workflow (results tables, sweeps, interactive menu).
//! `ARCHITECTURE.md` maps each concept to its module.

pub mod augment;
pub mod checkpoint;
pub mod config;
pub mod convert;
pub mod cores;
pub mod data;
pub mod dataset;
pub mod device;
pub mod digest;
pub mod early_stopping;
pub mod ema;
pub mod error;
pub mod explore;
pub mod explorer;
pub mod export;
pub mod fallible;
pub mod fault;
pub mod figures;
pub mod fit;
pub mod history;
pub mod loss_scale;
pub mod model;
pub mod optim;
pub mod pipeline;
pub mod precision;
pub mod rng;
pub mod run_dir;
pub mod run_summary;
pub mod sample;
pub mod sweep;
pub mod table;
pub mod tensorboard;
pub mod test_report;

pub use error::TrainError;
