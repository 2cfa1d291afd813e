//! `infer serve`: the models of a folder behind the Open Inference
//! Protocol (KServe v2, as Triton serves it) over REST and gRPC, with
//! requests batched across clients. Built on `infer`'s sessions and
//! contracts; its binary, `infer-serve`, is what `infer serve` runs, so
//! that neither `infer`'s other commands nor `train` carry tokio, hyper,
//! tonic or prometheus.
//!
//! Start-up (`startup.rs`, [`serve`]): read the repository (`repository.rs`,
//! `model_config.rs`), open every model's sessions and run one warm-up
//! batch, start each model's queue (`queue.rs`, sessions on threads of
//! their own), bind both ports and print them, serve (`http/`, `grpc.rs`
//! behind `grpc_transport.rs`,
//! over the same [`model::Models`]), and on SIGTERM or Ctrl-C drain
//! (`shutdown.rs`).

pub mod api_error;
pub mod auth;
pub mod budget;
pub mod classification;
mod connections;
pub mod control;
pub mod grpc;
pub mod grpc_transport;
pub mod http;
pub mod identity;
pub mod inflate;
pub mod load;
pub mod metrics;
pub mod model;
pub mod model_config;
pub mod proto;
pub mod queue;
pub mod repository;
mod shutdown;
mod stall;
mod startup;

pub use startup::{serve, KeySource, ServeError, ServeOptions};
