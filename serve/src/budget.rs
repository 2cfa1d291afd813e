//! The budget of request bytes in flight, across both faces and every
//! client (`--max-inflight-bytes`): a request reserves its body's bytes as
//! they arrive (each data frame, REST and gRPC alike), and an inflated body
//! reserves each step of its inflation before it is made (`inflate.rs`),
//! both into a [`Buffer`] whose capacity is what is reserved; all are held
//! until the request is answered. When the budget is spent a
//! request is answered 503 / UNAVAILABLE at once, rather than the server
//! growing with its clients. Counted to the byte: a 1-byte frame costs 1.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;

use http_body::Body;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::api_error::{ApiError, Kind};

#[derive(Debug, Clone)]
pub struct Budget {
    permits: Arc<Semaphore>,
    bytes: usize,
}

/// Bytes reserved, given back when dropped: one permit, however many
/// reservations (a message's frames) it was made of.
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

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |p| p.num_permits())
    }
}

impl Budget {
    pub fn new(bytes: usize) -> Budget {
        let bytes = bytes.clamp(1, Semaphore::MAX_PERMITS);
        Budget { permits: Arc::new(Semaphore::new(bytes)), bytes }
    }

    /// `bytes` more, or 503 at once when the budget cannot cover them.
    pub fn reserve(&self, bytes: usize) -> Result<Reserved, ApiError> {
        if bytes == 0 {
            return Ok(Reserved::default());
        }
        let taken = u32::try_from(bytes).ok().and_then(|n| self.permits.clone().try_acquire_many_owned(n).ok());
        match taken {
            Some(p) => Ok(Reserved(Some(p))),
            None => Err(ApiError::new(
                Kind::Unavailable,
                format!(
                    "the server holds --max-inflight-bytes ({} bytes) of requests already; retry later",
                    self.bytes
                ),
            )),
        }
    }

    /// Bytes not reserved now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// A buffer whose every byte of capacity is reserved in the budget before
/// it is allocated: what a body or an inflated message grows into. (A
/// `Vec` that doubles would hold up to twice what was reserved.)
#[derive(Debug, Default)]
pub struct Buffer {
    bytes: Vec<u8>,
    reserved: Reserved,
}

/// Why a [`Buffer`] did not take more.
#[derive(Debug)]
pub enum Full {
    /// Past its limit.
    Limit,
    /// The budget could not cover it.
    Spent(ApiError),
}

impl Buffer {
    /// Appends `data`, at most `limit` bytes in all.
    pub fn push(&mut self, data: &[u8], limit: usize, budget: &Budget) -> Result<(), Full> {
        let need = self.bytes.len() + data.len();
        if need > limit {
            return Err(Full::Limit);
        }
        if need > self.bytes.capacity() {
            // Doubling, never past the limit: as few copies as a Vec's.
            let grown = need.max(self.bytes.capacity() * 2).max(4096).min(limit).max(need);
            self.reserved.add(budget.reserve(grown - self.reserved.bytes().min(grown)).map_err(Full::Spent)?);
            self.bytes.reserve_exact(grown - self.bytes.len());
        }
        self.bytes.extend_from_slice(data);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes, and their reservation to hold while they are used.
    pub fn into_parts(self) -> (bytes::Bytes, Reserved) {
        (self.bytes.into(), self.reserved)
    }
}

/// Why a body could not be collected.
#[derive(Debug)]
pub enum Collect {
    /// More than the limit arrived.
    TooLarge,
    /// The budget could not cover the next frame.
    Spent(ApiError),
    /// The body ended in an error (a reset stream, a cut connection).
    Cut(String),
}

/// Reads `body` to its end into a [`Buffer`], so that each frame's bytes
/// are reserved before they are kept; at most `limit` bytes (one more is
/// [`Collect::TooLarge`]). `first` sees the bytes so far after each frame
/// and may lower the limit once (a gRPC message names its model early on).
pub async fn collect<B>(
    body: B,
    mut limit: usize,
    budget: &Budget,
    mut first: impl FnMut(&[u8]) -> Option<usize>,
) -> Result<(bytes::Bytes, Reserved), Collect>
where
    B: Body<Data = bytes::Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut body = body;
    let mut out = Buffer::default();
    let mut lowered = false;
    loop {
        let frame = std::future::poll_fn(|cx: &mut Context<'_>| Pin::new(&mut body).poll_frame(cx)).await;
        let frame = match frame {
            None => return Ok(out.into_parts()),
            Some(Err(e)) => return Err(Collect::Cut(e.to_string())),
            Some(Ok(frame)) => frame,
        };
        let Ok(data) = frame.into_data() else { continue };
        out.push(&data, limit, budget).map_err(|e| match e {
            Full::Limit => Collect::TooLarge,
            Full::Spent(e) => Collect::Spent(e),
        })?;
        if !lowered {
            if let Some(l) = first(out.as_slice()) {
                lowered = true;
                limit = limit.min(l);
                if out.len() > limit {
                    return Err(Collect::TooLarge);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::api_error::Kind;
    use crate::budget::{Budget, Buffer, Full};

    #[test]
    fn reservations_are_exact_refused_when_spent_and_given_back_when_dropped() {
        let budget = Budget::new(10 * 1024);
        let a = budget.reserve(6 * 1024).unwrap();
        let mut b = budget.reserve(3000).unwrap();
        // Small frames cost what they hold, not a rounded-up unit.
        for _ in 0..100 {
            b.add(budget.reserve(10).unwrap());
        }
        assert_eq!(b.bytes(), 4000);
        assert_eq!(budget.available(), 10 * 1024 - 6 * 1024 - 4000);
        assert!(budget.reserve(2 * 1024).is_err(), "10 KiB spent: 6 KiB + 4000 + 2 KiB");
        assert_eq!(budget.reserve(200).unwrap_err().kind, Kind::Unavailable);
        drop(a);
        assert!(budget.reserve(6 * 1024).is_ok());
        assert!(budget.reserve(0).is_ok());
    }

    #[test]
    fn a_buffer_reserves_its_capacity_and_stops_at_its_limit() {
        let budget = Budget::new(1 << 20);
        let mut buffer = Buffer::default();
        for _ in 0..100 {
            buffer.push(&[7; 1000], 200_000, &budget).unwrap();
        }
        let held = (1 << 20) - budget.available();
        assert!((100_000..=200_000).contains(&held), "{held} bytes reserved for 100 000");
        assert!(matches!(buffer.push(&[7; 100_001], 200_000, &budget), Err(Full::Limit)));
        let small = Budget::new(50_000);
        let mut other = Buffer::default();
        assert!(matches!(other.push(&[7; 60_000], 1 << 20, &small), Err(Full::Spent(_))));
        let (bytes, reserved) = buffer.into_parts();
        assert_eq!((bytes.len(), reserved.bytes()), (100_000, held));
    }
}
