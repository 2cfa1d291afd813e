//! The `train` crate's tests, one module per concern: the networks
//! (`models`), augmentation and averaging, whole runs, resume and faults,
//! export and int8, the command line, mixed precision; what they share
//! (data, small jobs, the one way to run a process) in `common`. One test
//! binary so libtorch links once. Training tests hold a lock: libtorch's
//! thread pool is process-wide, and determinism needs one training at a
//! time.

mod common;

mod averaging;
mod cli;
mod export;
mod models;
mod precision;
mod resume;
mod runs;
