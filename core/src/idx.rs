//! The IDX file format (the MNIST container), read and written in full.
//!
//! Layout: two zero bytes, a type code, the number of dimensions `n`, then `n`
//! big-endian `u32` dimensions, then the C-order payload in big-endian. Files
//! may be gzip-compressed (the official `.gz` downloads); the reader detects
//! that from the gzip magic, not from the file name.
//!
//! Every header is validated before anything the size of the payload is
//! allocated: a plain file's length must match the header exactly, and a gzip
//! stream is read incrementally so a lying header cannot force a huge
//! allocation.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::atomic::AtomicFile;

/// The element type of an IDX payload, by its type code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    U8,
    I8,
    I16,
    I32,
    F32,
    F64,
}

impl DType {
    pub fn from_code(code: u8) -> Option<DType> {
        Some(match code {
            0x08 => DType::U8,
            0x09 => DType::I8,
            0x0B => DType::I16,
            0x0C => DType::I32,
            0x0D => DType::F32,
            0x0E => DType::F64,
            _ => return None,
        })
    }

    pub fn code(self) -> u8 {
        match self {
            DType::U8 => 0x08,
            DType::I8 => 0x09,
            DType::I16 => 0x0B,
            DType::I32 => 0x0C,
            DType::F32 => 0x0D,
            DType::F64 => 0x0E,
        }
    }

    pub fn size(self) -> usize {
        match self {
            DType::U8 | DType::I8 => 1,
            DType::I16 => 2,
            DType::I32 | DType::F32 => 4,
            DType::F64 => 8,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::U8 => "u8",
            DType::I8 => "i8",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::F32 => "f32",
            DType::F64 => "f64",
        })
    }
}

/// What a file is expected to hold; used to word errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Images,
    Labels,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Images => "images ([N, H, W] or [N, H, W, 3] u8)",
            Role::Labels => "labels ([N] u8)",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    #[error("{}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: empty file, expected an IDX header", path.display())]
    Empty { path: PathBuf },
    #[error("{}: IDX header cut short after {got} bytes, expected {expected}", path.display())]
    ShortHeader { path: PathBuf, got: usize, expected: usize },
    #[error("{}: not an IDX file: magic starts with {b0:#04x} {b1:#04x}, expected 0x00 0x00", path.display())]
    BadMagic { path: PathBuf, b0: u8, b1: u8 },
    #[error("{}: unknown IDX type code {code:#04x}, expected one of 0x08 0x09 0x0b 0x0c 0x0d 0x0e", path.display())]
    UnknownType { path: PathBuf, code: u8 },
    #[error("{}: IDX header has 0 dimensions, expected at least 1", path.display())]
    NoDimensions { path: PathBuf },
    #[error("{}: IDX dimension {index} is 0, expected every dimension >= 1", path.display())]
    ZeroDimension { path: PathBuf, index: usize },
    #[error("{}: IDX header claims {dims} elements of {dtype}, which overflows the address space", path.display())]
    Overflow { path: PathBuf, dims: String, dtype: DType },
    #[error("{}: truncated IDX payload: header says {dims} {dtype} ({expected} bytes), file has {actual}", path.display())]
    Truncated { path: PathBuf, dims: String, dtype: DType, expected: u64, actual: u64 },
    #[error("{}: {extra} unexpected trailing bytes after the IDX payload of {dims} {dtype}", path.display())]
    Trailing { path: PathBuf, dims: String, dtype: DType, extra: u64 },
    #[error("{}: corrupt gzip stream", path.display())]
    Gzip { path: PathBuf, source: io::Error },
    #[error("{}: IDX file has shape {dims} of {dtype}, expected {role}", path.display())]
    WrongRole { path: PathBuf, dims: String, dtype: DType, role: Role },
    #[error("{}: IDX payload does not match its shape {dims}", path.display())]
    ShapeMismatch { path: PathBuf, dims: String },
}

pub type Result<T, E = IdxError> = std::result::Result<T, E>;

/// The payload of an IDX file, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum IdxData {
    U8(Vec<u8>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl IdxData {
    pub fn dtype(&self) -> DType {
        match self {
            IdxData::U8(_) => DType::U8,
            IdxData::I8(_) => DType::I8,
            IdxData::I16(_) => DType::I16,
            IdxData::I32(_) => DType::I32,
            IdxData::F32(_) => DType::F32,
            IdxData::F64(_) => DType::F64,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            IdxData::U8(v) => v.len(),
            IdxData::I8(v) => v.len(),
            IdxData::I16(v) => v.len(),
            IdxData::I32(v) => v.len(),
            IdxData::F32(v) => v.len(),
            IdxData::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn from_be_bytes(dtype: DType, bytes: Vec<u8>) -> IdxData {
        fn conv<const N: usize, T>(bytes: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
            bytes.chunks_exact(N).map(|c| f(c.try_into().expect("chunk of N bytes"))).collect()
        }
        match dtype {
            DType::U8 => IdxData::U8(bytes),
            DType::I8 => IdxData::I8(bytes.into_iter().map(|b| b as i8).collect()),
            DType::I16 => IdxData::I16(conv(&bytes, i16::from_be_bytes)),
            DType::I32 => IdxData::I32(conv(&bytes, i32::from_be_bytes)),
            DType::F32 => IdxData::F32(conv(&bytes, f32::from_be_bytes)),
            DType::F64 => IdxData::F64(conv(&bytes, f64::from_be_bytes)),
        }
    }

    fn to_be_bytes(&self) -> Vec<u8> {
        match self {
            IdxData::U8(v) => v.clone(),
            IdxData::I8(v) => v.iter().map(|&x| x as u8).collect(),
            IdxData::I16(v) => v.iter().flat_map(|x| x.to_be_bytes()).collect(),
            IdxData::I32(v) => v.iter().flat_map(|x| x.to_be_bytes()).collect(),
            IdxData::F32(v) => v.iter().flat_map(|x| x.to_be_bytes()).collect(),
            IdxData::F64(v) => v.iter().flat_map(|x| x.to_be_bytes()).collect(),
        }
    }
}

/// A whole IDX file: its shape and typed payload.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: IdxData,
}

/// `[N, H, W]` u8 images, row-major, as MNIST stores them.
#[derive(Debug, Clone, PartialEq)]
pub struct Images {
    pub count: usize,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    pub rows: usize,
    pub cols: usize,
    /// `[count, channels, rows, cols]`: each image's planes one after the
    /// other, the layout the models take (IDX's `[N, H, W, 3]` is
    /// interleaved; reading converts).
    pub pixels: Vec<u8>,
}

impl Images {
    /// Grayscale images.
    pub fn gray(count: usize, rows: usize, cols: usize, pixels: Vec<u8>) -> Images {
        Images { count, channels: 1, rows, cols, pixels }
    }

    pub fn pixels_per_image(&self) -> usize {
        self.channels * self.rows * self.cols
    }

    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.pixels_per_image();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// The images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Images {
        let mut pixels = Vec::with_capacity(indices.len() * self.pixels_per_image());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        Images { count: indices.len(), pixels, ..*self }
    }

    /// The first `n` images (all of them when `n >= count`).
    pub fn truncate(&mut self, n: usize) {
        self.count = self.count.min(n);
        self.pixels.truncate(self.count * self.pixels_per_image());
    }

    /// Pixels scaled to [0, 1], done once for the whole set.
    pub fn to_f32(&self) -> Vec<f32> {
        normalize(&self.pixels)
    }
}

/// u8 pixels → f32 in [0, 1], divided (not multiplied by 1/255) so values
/// equal NumPy's `x / 255.0` and libtorch's bit for bit. A plain loop the
/// compiler vectorises.
pub fn normalize(pixels: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(pixels.len());
    normalize_into(pixels, &mut out);
    out
}

/// [`normalize`] into a reused buffer (streaming: one allocation in all).
pub fn normalize_into(pixels: &[u8], out: &mut Vec<f32>) {
    out.clear();
    out.extend(pixels.iter().map(|&p| p as f32 / 255.0));
}

/// The parsed header of an IDX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub dtype: DType,
    pub dims: Vec<usize>,
}

impl Header {
    pub fn header_len(&self) -> usize {
        4 + 4 * self.dims.len()
    }

    fn dims_string(&self) -> String {
        dims_string(&self.dims)
    }

    fn payload_len(&self, path: &Path) -> Result<u64> {
        self.dims
            .iter()
            .try_fold(self.dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64))
            .filter(|&n| usize::try_from(n).is_ok())
            .ok_or_else(|| IdxError::Overflow { path: path.to_path_buf(), dims: self.dims_string(), dtype: self.dtype })
    }

    fn check_role(&self, path: &Path, role: Role) -> Result<()> {
        let ok = self.dtype == DType::U8
            && match role {
                Role::Images => self.dims.len() == 3 || self.dims.len() == 4 && matches!(self.dims[3], 1 | 3),
                Role::Labels => self.dims.len() == 1,
            };
        if ok {
            Ok(())
        } else {
            Err(IdxError::WrongRole { path: path.to_path_buf(), dims: self.dims_string(), dtype: self.dtype, role })
        }
    }
}

fn dims_string(dims: &[usize]) -> String {
    dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×")
}

/// An open IDX file positioned at the start of its payload, plain or gzip.
pub struct IdxReader {
    path: PathBuf,
    header: Header,
    source: Box<dyn Read + Send>,
    payload_len: u64,
    consumed: u64,
    gzip: bool,
}

impl fmt::Debug for IdxReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdxReader")
            .field("path", &self.path)
            .field("header", &self.header)
            .field("gzip", &self.gzip)
            .finish()
    }
}

fn io_err(path: &Path, gzip: bool) -> impl Fn(io::Error) -> IdxError + '_ {
    move |source| {
        if gzip && source.kind() != io::ErrorKind::NotFound {
            IdxError::Gzip { path: path.to_path_buf(), source }
        } else {
            IdxError::Io { path: path.to_path_buf(), source }
        }
    }
}

/// Reads up to `buf.len()` bytes, stopping early only at end of stream.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl IdxReader {
    /// Opens `path`, parses and validates the header. For plain files the
    /// payload size is checked against the file length here, before any read.
    pub fn open(path: impl AsRef<Path>) -> Result<IdxReader> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| IdxError::Io { path: path.to_path_buf(), source })?;
        let file_len = file.metadata().map_err(|source| IdxError::Io { path: path.to_path_buf(), source })?.len();
        IdxReader::from_reader(path, BufReader::with_capacity(1 << 16, file), file_len)
    }

    /// Reads IDX bytes held in memory (`name` is used in messages).
    pub fn from_bytes(name: impl AsRef<Path>, bytes: Vec<u8>) -> Result<IdxReader> {
        let len = bytes.len() as u64;
        IdxReader::from_reader(name.as_ref(), io::Cursor::new(bytes), len)
    }

    /// Any reader of `len` bytes, plain or gzip.
    pub fn from_reader(path: &Path, mut file: impl Read + Send + 'static, len: u64) -> Result<IdxReader> {
        if len == 0 {
            return Err(IdxError::Empty { path: path.to_path_buf() });
        }
        let mut magic = [0u8; 2];
        let got = read_full(&mut file, &mut magic).map_err(io_err(path, false))?;
        let gzip = got == 2 && magic == [0x1f, 0x8b];
        let chained = io::Cursor::new(magic[..got].to_vec()).chain(file);
        let mut source: Box<dyn Read + Send> = if gzip {
            Box::new(BufReader::with_capacity(1 << 16, MultiGzDecoder::new(chained)))
        } else {
            Box::new(chained)
        };
        let header = read_header(path, &mut *source, gzip)?;
        let payload_len = header.payload_len(path)?;
        if !gzip {
            let actual = len.saturating_sub(header.header_len() as u64);
            if actual < payload_len {
                return Err(IdxError::Truncated {
                    path: path.to_path_buf(),
                    dims: header.dims_string(),
                    dtype: header.dtype,
                    expected: payload_len,
                    actual,
                });
            }
            if actual > payload_len {
                return Err(IdxError::Trailing {
                    path: path.to_path_buf(),
                    dims: header.dims_string(),
                    dtype: header.dtype,
                    extra: actual - payload_len,
                });
            }
        }
        Ok(IdxReader { path: path.to_path_buf(), header, source, payload_len, consumed: 0, gzip })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fails unless the file holds `role`'s shape and type.
    pub fn expect(self, role: Role) -> Result<IdxReader> {
        self.header.check_role(&self.path, role)?;
        Ok(self)
    }

    /// Reads the next `len` payload bytes, or fewer at the end of the payload.
    /// The buffer grows only as bytes arrive, so a lying gzip header costs
    /// nothing before the stream runs dry.
    pub fn read_bytes(&mut self, len: u64) -> Result<Vec<u8>> {
        let want = len.min(self.payload_len - self.consumed);
        let mut buf = Vec::with_capacity(want.min(1 << 24) as usize);
        let got = (&mut self.source).take(want).read_to_end(&mut buf).map_err(io_err(&self.path, self.gzip))? as u64;
        self.consumed += got;
        if got < want {
            return Err(IdxError::Truncated {
                path: self.path.clone(),
                dims: self.header.dims_string(),
                dtype: self.header.dtype,
                expected: self.payload_len,
                actual: self.consumed,
            });
        }
        if self.consumed == self.payload_len {
            self.check_end()?;
        }
        Ok(buf)
    }

    /// After the payload: a gzip stream must end (trailing bytes are an
    /// error, as for plain files, whose length was checked at open).
    fn check_end(&mut self) -> Result<()> {
        if !self.gzip {
            return Ok(());
        }
        let mut rest = Vec::new();
        let extra = (&mut self.source).take(1 << 20).read_to_end(&mut rest).map_err(io_err(&self.path, true))?;
        if extra > 0 {
            return Err(IdxError::Trailing {
                path: self.path.clone(),
                dims: self.header.dims_string(),
                dtype: self.header.dtype,
                extra: extra as u64,
            });
        }
        Ok(())
    }

    /// Reads the whole payload.
    pub fn read_all(mut self) -> Result<IdxArray> {
        let bytes = self.read_bytes(self.payload_len)?;
        let data = IdxData::from_be_bytes(self.header.dtype, bytes);
        Ok(IdxArray { dims: self.header.dims.clone(), data })
    }
}

fn read_header(path: &Path, r: &mut dyn Read, gzip: bool) -> Result<Header> {
    let mut fixed = [0u8; 4];
    let got = read_full(r, &mut fixed).map_err(io_err(path, gzip))?;
    if got == 0 {
        return Err(IdxError::Empty { path: path.to_path_buf() });
    }
    if got >= 2 && (fixed[0] != 0 || fixed[1] != 0) || got == 1 && fixed[0] != 0 {
        return Err(IdxError::BadMagic { path: path.to_path_buf(), b0: fixed[0], b1: fixed[1] });
    }
    if got < 4 {
        return Err(IdxError::ShortHeader { path: path.to_path_buf(), got, expected: 4 });
    }
    let dtype = DType::from_code(fixed[2]).ok_or(IdxError::UnknownType { path: path.to_path_buf(), code: fixed[2] })?;
    let ndims = fixed[3] as usize;
    if ndims == 0 {
        return Err(IdxError::NoDimensions { path: path.to_path_buf() });
    }
    let mut raw = vec![0u8; 4 * ndims];
    let got_dims = read_full(r, &mut raw).map_err(io_err(path, gzip))?;
    if got_dims < raw.len() {
        return Err(IdxError::ShortHeader { path: path.to_path_buf(), got: 4 + got_dims, expected: 4 + raw.len() });
    }
    let dims: Vec<usize> =
        raw.chunks_exact(4).map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")) as usize).collect();
    if let Some(index) = dims.iter().position(|&d| d == 0) {
        return Err(IdxError::ZeroDimension { path: path.to_path_buf(), index });
    }
    Ok(Header { dtype, dims })
}

/// Reads any IDX file (plain or gzip) in full.
pub fn read(path: impl AsRef<Path>) -> Result<IdxArray> {
    IdxReader::open(path)?.read_all()
}

/// Reads `[N, H, W]` (grayscale) or `[N, H, W, C]` (C = 1 or 3) u8 images.
pub fn read_images(path: impl AsRef<Path>) -> Result<Images> {
    let reader = IdxReader::open(path)?.expect(Role::Images)?;
    let dims = reader.header().dims.clone();
    let array = reader.read_all()?;
    let IdxData::U8(pixels) = array.data else { unreachable!("role checked u8") };
    let channels = dims.get(3).copied().unwrap_or(1);
    let pixels = planar(pixels, channels, dims[1] * dims[2]);
    Ok(Images { count: dims[0], channels, rows: dims[1], cols: dims[2], pixels })
}

/// Interleaved `[…, H·W, C]` pixels → planar `[…, C, H·W]`; grayscale is
/// returned as it came (no copy on the IDX hot path).
pub fn planar(interleaved: Vec<u8>, channels: usize, plane: usize) -> Vec<u8> {
    if channels == 1 {
        return interleaved;
    }
    let mut out = vec![0u8; interleaved.len()];
    for (src, dst) in interleaved.chunks_exact(plane * channels).zip(out.chunks_exact_mut(plane * channels)) {
        for (i, px) in src.chunks_exact(channels).enumerate() {
            for (c, &v) in px.iter().enumerate() {
                dst[c * plane + i] = v;
            }
        }
    }
    out
}

/// Planar `[…, C, H·W]` → interleaved `[…, H·W, C]`.
pub fn interleaved(planar: &[u8], channels: usize, plane: usize) -> Vec<u8> {
    if channels == 1 {
        return planar.to_vec();
    }
    let mut out = vec![0u8; planar.len()];
    for (src, dst) in planar.chunks_exact(plane * channels).zip(out.chunks_exact_mut(plane * channels)) {
        for c in 0..channels {
            for i in 0..plane {
                dst[i * channels + c] = src[c * plane + i];
            }
        }
    }
    out
}

/// Reads `[N]` u8 labels.
pub fn read_labels(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let reader = IdxReader::open(path)?.expect(Role::Labels)?;
    match reader.read_all()?.data {
        IdxData::U8(v) => Ok(v),
        _ => unreachable!("role checked u8"),
    }
}

/// Streams `[N, H, W]` u8 images batch by batch, so memory stays bounded
/// whatever the file's size.
#[derive(Debug)]
pub struct ImageStream {
    reader: IdxReader,
    pub count: usize,
    pub channels: usize,
    pub rows: usize,
    pub cols: usize,
    next: usize,
}

impl ImageStream {
    pub fn open(path: impl AsRef<Path>) -> Result<ImageStream> {
        let reader = IdxReader::open(path)?.expect(Role::Images)?;
        let d = reader.header().dims.clone();
        Ok(ImageStream {
            reader,
            count: d[0],
            channels: d.get(3).copied().unwrap_or(1),
            rows: d[1],
            cols: d[2],
            next: 0,
        })
    }

    pub fn path(&self) -> &Path {
        self.reader.path()
    }

    /// The next up to `n` images as planar u8 pixels `[n, C, H, W]`, `None` at the end.
    pub fn next_batch(&mut self, n: usize) -> Result<Option<Vec<u8>>> {
        Ok(self.next_batch_as_stored(n)?.map(|bytes| planar(bytes, self.channels, self.rows * self.cols)))
    }

    /// The next up to `n` images as the file stores them, `[n, H, W, C]`
    /// (for pictures that are decoded and fitted next: the `image` crate's
    /// layout, so no planar round trip); `None` at the end.
    pub fn next_batch_as_stored(&mut self, n: usize) -> Result<Option<Vec<u8>>> {
        if self.next >= self.count {
            return Ok(None);
        }
        let take = n.min(self.count - self.next);
        let bytes = self.reader.read_bytes((take * self.channels * self.rows * self.cols) as u64)?;
        self.next += take;
        Ok(Some(bytes))
    }
}

/// Writes an IDX file atomically (temp file + rename); gzip-compressed when
/// `gzip` is set.
pub fn write(path: impl AsRef<Path>, array: &IdxArray, gzip: bool) -> Result<()> {
    let path = path.as_ref();
    let expected: usize = array.dims.iter().product();
    if array.dims.is_empty() || array.dims.len() > 255 || expected != array.data.len() {
        return Err(IdxError::ShapeMismatch { path: path.to_path_buf(), dims: dims_string(&array.dims) });
    }
    let mut bytes = Vec::with_capacity(4 + 4 * array.dims.len() + expected * array.data.dtype().size());
    bytes.extend_from_slice(&[0, 0, array.data.dtype().code(), array.dims.len() as u8]);
    for &d in &array.dims {
        let d = u32::try_from(d)
            .map_err(|_| IdxError::ShapeMismatch { path: path.to_path_buf(), dims: dims_string(&array.dims) })?;
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(&array.data.to_be_bytes());
    let io = |source| IdxError::Io { path: path.to_path_buf(), source };
    let mut out = AtomicFile::create(path).map_err(io)?;
    if gzip {
        let mut enc = flate2::write::GzEncoder::new(&mut out, flate2::Compression::default());
        enc.write_all(&bytes).map_err(io)?;
        enc.finish().map_err(io)?;
    } else {
        out.write_all(&bytes).map_err(io)?;
    }
    out.commit().map_err(io)
}

/// Writes u8 images: `[N, H, W]` for grayscale, `[N, H, W, C]` otherwise.
pub fn write_images(path: impl AsRef<Path>, images: &Images, gzip: bool) -> Result<()> {
    let mut dims = vec![images.count, images.rows, images.cols];
    if images.channels != 1 {
        dims.push(images.channels);
    }
    let pixels = interleaved(&images.pixels, images.channels, images.rows * images.cols);
    write(path, &IdxArray { dims, data: IdxData::U8(pixels) }, gzip)
}

/// Writes `[N]` u8 labels.
pub fn write_labels(path: impl AsRef<Path>, labels: &[u8], gzip: bool) -> Result<()> {
    write(path, &IdxArray { dims: vec![labels.len()], data: IdxData::U8(labels.to_vec()) }, gzip)
}

/// Reads IDX bytes held in memory (plain or gzip) in full; `name` is used
/// in messages.
pub fn read_bytes(name: impl AsRef<Path>, bytes: Vec<u8>) -> Result<IdxArray> {
    IdxReader::from_bytes(name, bytes)?.read_all()
}
