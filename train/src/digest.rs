//! SHA-256 digests as hex: how runs, checkpoints and data sets are named
//! for provenance.

use std::path::Path;

use crate::error::TrainError;

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, TrainError> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path).map_err(TrainError::io(path, "cannot read"))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(TrainError::io(path, "cannot read"))?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// SHA-256 of bytes in memory, as hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
