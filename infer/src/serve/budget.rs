//! The budget of request bytes in flight, across both faces and every
//! client (`--max-inflight-bytes`): a request reserves its body's bytes
//! before reading them (REST: its Content-Length, then its inflated size;
//! gRPC: each data frame as it arrives) and holds them until it is
//! answered. When the budget is spent a request is answered 503 /
//! UNAVAILABLE at once, rather than the server growing with its clients.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::api_error::{ApiError, Kind};

/// Accounted in KiB: a semaphore takes at most u32 permits at a time.
const UNIT: usize = 1024;

#[derive(Debug, Clone)]
pub struct Budget {
    permits: Arc<Semaphore>,
    bytes: usize,
}

/// Bytes reserved, given back when dropped: one permit, however many
/// reservations (a gRPC message's frames) it was made of.
#[derive(Debug, Default)]
pub struct Reserved(Option<OwnedSemaphorePermit>);

impl Reserved {
    pub fn add(&mut self, more: Reserved) {
        match (&mut self.0, more.0) {
            (Some(held), Some(more)) => held.merge(more),
            (held @ None, more) => *held = more,
            (Some(_), None) => {}
        }
    }
}

impl Budget {
    pub fn new(bytes: usize) -> Budget {
        Budget { permits: Arc::new(Semaphore::new(bytes.div_ceil(UNIT).max(1))), bytes }
    }

    /// `bytes` more, or 503 at once when the budget cannot cover them.
    pub fn reserve(&self, bytes: usize) -> Result<Reserved, ApiError> {
        let units = u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX);
        if units == 0 {
            return Ok(Reserved::default());
        }
        match self.permits.clone().try_acquire_many_owned(units) {
            Ok(p) => Ok(Reserved(Some(p))),
            Err(_) => Err(ApiError::new(
                Kind::Unavailable,
                format!(
                    "the server holds --max-inflight-bytes ({} bytes) of requests already; retry later",
                    self.bytes
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::serve::api_error::Kind;
    use crate::serve::budget::Budget;

    #[test]
    fn reservations_are_refused_when_spent_and_given_back_when_dropped() {
        let budget = Budget::new(10 * 1024);
        let a = budget.reserve(6 * 1024).unwrap();
        let mut b = budget.reserve(3000).unwrap(); // 3 KiB
        assert!(budget.reserve(2 * 1024).is_err(), "10 KiB spent: 6 + 3 + 2");
        b.add(budget.reserve(1).unwrap());
        assert_eq!(budget.reserve(1).unwrap_err().kind, Kind::Unavailable);
        drop(a);
        assert!(budget.reserve(6 * 1024).is_ok());
        assert!(budget.reserve(0).is_ok());
    }
}
