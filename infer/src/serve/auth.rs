//! The optional API key (`--api-key`, `--api-key-file`): every endpoint
//! but liveness requires `Authorization: Bearer <key>` (gRPC: the
//! `authorization` metadata). Keys are compared as SHA-256 digests, so the
//! comparison's time says nothing about the key.

use sha2::{Digest, Sha256};

#[derive(Clone)]
pub struct ApiKey {
    digest: [u8; 32],
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(…)")
    }
}

impl ApiKey {
    /// `None` for an empty key: a key must say something.
    pub fn new(key: &str) -> Option<ApiKey> {
        let key = key.trim();
        (!key.is_empty()).then(|| ApiKey { digest: Sha256::digest(key.as_bytes()).into() })
    }

    /// Whether an `authorization` header (or gRPC metadata) value carries
    /// this key.
    pub fn accepts(&self, header: Option<&str>) -> bool {
        let Some(token) = header.and_then(|v| v.strip_prefix("Bearer ")) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        digest.iter().zip(self.digest.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}
