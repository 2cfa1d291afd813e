//! NumPy `.npy` (format 1.0) float32 matrices, written row by row so large
//! embeddings stream to disk.

use std::io::{self, Write};
use std::path::Path;

use crate::atomic::AtomicFile;

/// A `.npy` file of little-endian float32 of shape `[rows, …]`, filled row
/// by row; it appears at its path only when every row was written.
#[derive(Debug)]
pub struct NpyWriter {
    file: AtomicFile,
    rows: usize,
    /// Values per row: the product of the shape after the first axis.
    cols: usize,
    written: usize,
}

/// The header: magic, version 1.0, and a dict padded so the data starts on
/// a 64-byte boundary.
pub fn header(shape: &[usize]) -> Vec<u8> {
    let dims = shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
    let dims = if shape.len() == 1 { format!("{dims},") } else { dims };
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let len = (dict.len() + pad + 1) as u16;
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.extend(std::iter::repeat_n(b' ', pad));
    h.push(b'\n');
    h
}

impl NpyWriter {
    pub fn create(path: &Path, shape: &[usize]) -> io::Result<NpyWriter> {
        let rows = *shape.first().ok_or_else(|| io::Error::other("empty .npy shape"))?;
        let cols = shape[1..].iter().product::<usize>().max(1);
        let mut file = AtomicFile::create(path)?;
        file.write_all(&header(shape))?;
        Ok(NpyWriter { file, rows, cols, written: 0 })
    }

    /// Appends whole rows (`values.len()` a multiple of `cols`).
    pub fn write_rows(&mut self, values: &[f32]) -> io::Result<()> {
        if !values.len().is_multiple_of(self.cols) || self.written + values.len() / self.cols > self.rows {
            return Err(io::Error::other("row count or width does not match the .npy header"));
        }
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.file.write_all(&bytes)?;
        self.written += values.len() / self.cols;
        Ok(())
    }

    pub fn finish(self) -> io::Result<()> {
        if self.written != self.rows {
            return Err(io::Error::other(format!("wrote {} of {} rows", self.written, self.rows)));
        }
        self.file.commit()
    }
}
