//! Compressed requests (tritonclient's `request_compression_algorithm`
//! on REST, `compression_algorithm` on gRPC): inflated on a blocking
//! thread, never on the I/O threads, 64 KiB at a time, each step's bytes
//! reserved in the server's budget before they are kept and the whole held
//! to the limit the request's model sets. A bomb that would inflate to
//! gigabytes costs at most that limit, and only while the budget has it.

use std::io::Read;

use super::api_error::{ApiError, Kind};
use super::budget::{Budget, Buffer, Full, Reserved};

/// A compression a request may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gzip,
    /// zlib-wrapped deflate, as HTTP and gRPC name it.
    Deflate,
}

impl Encoding {
    /// `Content-Encoding` / `grpc-encoding`: `None` for identity,
    /// `Err` for one this server does not inflate.
    pub fn from_header(value: &str) -> Result<Option<Encoding>, Unsupported> {
        match value.trim() {
            "" => Ok(None),
            e if e.eq_ignore_ascii_case("identity") => Ok(None),
            e if e.eq_ignore_ascii_case("gzip") || e.eq_ignore_ascii_case("x-gzip") => Ok(Some(Encoding::Gzip)),
            e if e.eq_ignore_ascii_case("deflate") => Ok(Some(Encoding::Deflate)),
            _ => Err(Unsupported),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
        }
    }
}

/// An encoding this server does not inflate.
#[derive(Debug, Clone, Copy)]
pub struct Unsupported;

/// Why a body was not inflated.
#[derive(Debug)]
pub enum Inflate {
    /// It inflates past the limit.
    TooLarge,
    /// The budget could not cover the next step.
    Spent(ApiError),
    /// Not valid data of its encoding: the decoder's error.
    Corrupt(String),
}

/// Bytes inflated between two reservations.
const STEP: usize = 64 << 10;

/// `raw` inflated, at most `max` bytes, with the bytes reserved for it.
pub async fn inflate(
    raw: bytes::Bytes,
    encoding: Encoding,
    max: usize,
    budget: &Budget,
) -> Result<(bytes::Bytes, Reserved), Inflate> {
    let budget = budget.clone();
    tokio::task::spawn_blocking(move || inflate_blocking(&raw, encoding, max, &budget))
        .await
        .map_err(|e| Inflate::Spent(ApiError::new(Kind::Internal, format!("inflating the body failed: {e}"))))?
}

fn inflate_blocking(
    raw: &[u8],
    encoding: Encoding,
    max: usize,
    budget: &Budget,
) -> Result<(bytes::Bytes, Reserved), Inflate> {
    let mut reader: Box<dyn Read> = match encoding {
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Encoding::Deflate => Box::new(flate2::read::ZlibDecoder::new(raw)),
    };
    let mut out = Buffer::default();
    let mut step = vec![0u8; STEP];
    loop {
        let n = match reader.read(&mut step) {
            Ok(0) => return Ok(out.into_parts()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Inflate::Corrupt(e.to_string())),
        };
        out.push(&step[..n], max, budget).map_err(|e| match e {
            Full::Limit => Inflate::TooLarge,
            Full::Spent(e) => Inflate::Spent(e),
        })?;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use crate::budget::Budget;
    use crate::inflate::{inflate_blocking, Encoding, Inflate};

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_the_budget() {
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 100_000, "{}", bomb.len());
        let budget = Budget::new(1 << 30);
        assert!(matches!(inflate_blocking(&bomb, Encoding::Gzip, 1 << 20, &budget), Err(Inflate::TooLarge)));
        assert_eq!(budget.available(), 1 << 30, "everything given back");
        let small = Budget::new(200 << 10);
        assert!(matches!(inflate_blocking(&bomb, Encoding::Gzip, 64 << 20, &small), Err(Inflate::Spent(_))));
        let (out, held) = inflate_blocking(&gzip(b"hello"), Encoding::Gzip, 5, &budget).unwrap();
        assert_eq!((&out[..], held.bytes()), (&b"hello"[..], 5));
        assert!(matches!(inflate_blocking(b"not gzip", Encoding::Gzip, 5, &budget), Err(Inflate::Corrupt(_))));
    }
}
