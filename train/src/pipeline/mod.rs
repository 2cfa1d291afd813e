//! `train autoencoder` and `train classifier`: from a validated job to a
//! finished run directory with checkpoint, history, figures and report.

mod autoencoder;
mod classifier;
mod job;

pub use autoencoder::train_autoencoder;
pub use classifier::{parse_class_names, train_classifier};
pub use job::{AutoencoderJob, ClassifierJob, Common, Outcome, PRODUCER};
