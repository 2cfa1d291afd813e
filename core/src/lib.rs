//! What both tools stand on, with neither libtorch nor ONNX Runtime: the
//! IDX format; pictures, their preprocessing and image-folder data sets;
//! files written atomically; Ctrl-C handling; figures; and what the two
//! binaries share at their edge (exit codes, error chains, clap values
//! behind the `cli` feature). `train` and `infer` both depend on it; it
//! depends on no crate of the workspace.

pub mod atomic;
pub mod class_names;
#[cfg(feature = "cli")]
pub mod cli_values;
pub mod exit;
pub mod figure;
pub mod folder;
pub mod idx;
pub mod interrupt;
pub mod machine;
pub mod numbers;
pub mod picture;
pub mod preprocess;
