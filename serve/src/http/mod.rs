//! The REST face of the Open Inference Protocol, and the picture endpoint,
//! on axum: shared state (`state.rs`), the server and its connections
//! (`server.rs`, writes bounded by `../stall.rs`), the endpoints (`handlers.rs`, `picture.rs`) and the
//! protocol's bodies (`types.rs`).

mod handlers;
mod picture;
mod server;
mod state;
pub mod types;

pub use server::{router, serve};
pub use state::{AppState, Limits};
