//! TensorBoard event files for a training run: the schema subset
//! (`proto`), TFRecord framing (`record`), one event file (`writer`) and a
//! run's log in Keras's layout (`run_log`).

pub mod proto;
pub mod record;
pub mod run_log;
pub mod writer;
