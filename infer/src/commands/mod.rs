//! The `infer` commands — classify, reconstruct, embed, info — one module
//! each, on what every running command shares (`run.rs`: options, opening
//! the model and the images, streaming batches, printing). Every running
//! command checks the model's contract and every input and output path
//! before running, streams images batch by batch, and writes its files
//! atomically.

mod classify;
mod embed;
mod info;
mod reconstruct;
mod run;

pub use classify::{classify, ClassifyOptions};
pub use embed::embed;
pub use info::info;
pub use reconstruct::{median, reconstruct, ReconstructOptions};
pub use run::{peak_rss_mib, Format, RunOptions, DEFAULT_BATCH};
