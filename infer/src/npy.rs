//! NumPy `.npy` float32 arrays (written by `npyz`), filled row by row so
//! large outputs stream to disk, and put in place atomically; and read
//! back whole.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;

use ndarray::ArrayView2;
use npyz::WriterBuilder;

use ae_core::atomic::Staged;

/// A `.npy` file of shape `[rows, …]`; it appears at its path only when
/// every row was written.
pub struct NpyWriter {
    staged: Staged,
    out: npyz::NpyWriter<f32, BufWriter<File>>,
    rows: usize,
    /// Values per row: the product of the shape after the first axis.
    cols: usize,
    written: usize,
}

impl std::fmt::Debug for NpyWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NpyWriter").field("path", &self.staged.path()).field("rows", &self.rows).finish()
    }
}

impl NpyWriter {
    pub fn create(path: &Path, shape: &[usize]) -> io::Result<NpyWriter> {
        let rows = *shape.first().ok_or_else(|| io::Error::other("empty .npy shape"))?;
        let cols = shape[1..].iter().product::<usize>().max(1);
        let (staged, file) = Staged::create(path)?;
        let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let out = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&dims)
            .writer(BufWriter::with_capacity(1 << 16, file))
            .begin_nd()?;
        Ok(NpyWriter { staged, out, rows, cols, written: 0 })
    }

    /// Appends whole rows: `[n, cols]`.
    pub fn write_rows(&mut self, rows: ArrayView2<f32>) -> io::Result<()> {
        if rows.ncols() != self.cols || self.written + rows.nrows() > self.rows {
            return Err(io::Error::other("row count or width does not match the .npy header"));
        }
        self.out.extend(rows.iter().copied())?;
        self.written += rows.nrows();
        Ok(())
    }

    pub fn finish(self) -> io::Result<()> {
        if self.written != self.rows {
            return Err(io::Error::other(format!("wrote {} of {} rows", self.written, self.rows)));
        }
        self.out.finish()?;
        self.staged.commit()
    }
}

/// A float32 `.npy` file's shape and values, as `numpy.load` gives them.
pub fn read_f32(path: &Path) -> io::Result<(Vec<u64>, Vec<f32>)> {
    let npy = npyz::NpyFile::new(io::BufReader::new(File::open(path)?))?;
    let shape = npy.shape().to_vec();
    Ok((shape, npy.into_vec::<f32>()?))
}
