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
    /// this key. The scheme's name is case-insensitive (RFC 9110, 11.1).
    pub fn accepts(&self, header: Option<&str>) -> bool {
        let token = header.and_then(|v| {
            let (scheme, token) = v.trim_start().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        });
        let Some(token) = token else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        digest.iter().zip(self.digest.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

#[cfg(test)]
mod tests {
    use crate::auth::ApiKey;

    #[test]
    fn the_scheme_is_case_insensitive_and_the_key_is_not() {
        let key = ApiKey::new("Sesame").unwrap();
        for ok in ["Bearer Sesame", "bearer Sesame", "BEARER  Sesame "] {
            assert!(key.accepts(Some(ok)), "{ok}");
        }
        for refused in ["Bearer sesame", "Basic Sesame", "BearerSesame", "Sesame", ""] {
            assert!(!key.accepts(Some(refused)), "{refused}");
        }
        assert!(!key.accepts(None));
    }
}
