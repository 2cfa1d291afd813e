//! Image inputs for inference: an IDX file (plain or gzip), one PNG/JPEG
//! file, or a directory of them. Images are produced batch by batch, so
//! memory does not grow with the number of images.

use std::path::{Path, PathBuf};

use crate::error::InferError;
use crate::idx::ImageStream;

/// How images that are not the model's size are treated.
#[derive(Debug, Clone, Copy, Default)]
pub struct Preprocess {
    /// Resize to the model's H×W instead of failing.
    pub resize: bool,
    /// Invert gray levels (dark digits on light paper → MNIST's light on dark).
    pub invert: bool,
}

enum Kind {
    Idx(ImageStream),
    Files(Vec<PathBuf>),
}

/// A sequence of grayscale images of the model's size.
pub struct ImageSource {
    kind: Kind,
    path: PathBuf,
    count: usize,
    next: usize,
    height: usize,
    width: usize,
    pre: Preprocess,
}

impl std::fmt::Debug for ImageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageSource").field("path", &self.path).field("count", &self.count).finish()
    }
}

fn is_picture(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

impl ImageSource {
    /// Opens `path` for a model taking `height × width` images.
    pub fn open(path: &Path, height: usize, width: usize, pre: Preprocess) -> Result<ImageSource, InferError> {
        let input = |msg: String| InferError::Input { path: path.to_path_buf(), msg };
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| input(e.to_string()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_picture(p))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(input("directory has no PNG or JPEG images".into()));
            }
            let count = files.len();
            return Ok(ImageSource { kind: Kind::Files(files), path: path.into(), count, next: 0, height, width, pre });
        }
        if is_picture(path) {
            if !path.exists() {
                return Err(input("no such file".into()));
            }
            return Ok(ImageSource {
                kind: Kind::Files(vec![path.to_path_buf()]),
                path: path.into(),
                count: 1,
                next: 0,
                height,
                width,
                pre,
            });
        }
        let stream = ImageStream::open(path)?;
        if (stream.rows, stream.cols) != (height, width) && !pre.resize {
            return Err(input(format!(
                "images are {}×{}, the model takes {height}×{width} (pass --resize to scale them)",
                stream.rows, stream.cols
            )));
        }
        let count = stream.count;
        Ok(ImageSource { kind: Kind::Idx(stream), path: path.into(), count, next: 0, height, width, pre })
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The picture files, in the order their images come (a directory's
    /// sorted by path); `None` for an IDX file, whose images are indexed.
    pub fn files(&self) -> Option<&[PathBuf]> {
        match &self.kind {
            Kind::Files(files) => Some(files),
            Kind::Idx(_) => None,
        }
    }

    /// The next up to `n` images as u8 pixels `[n, H, W]`, `None` at the end.
    pub fn next_batch(&mut self, n: usize) -> Result<Option<Vec<u8>>, InferError> {
        if self.next >= self.count {
            return Ok(None);
        }
        let (h, w) = (self.height, self.width);
        let mut pixels = match &mut self.kind {
            Kind::Idx(stream) => {
                let (sh, sw) = (stream.rows, stream.cols);
                let raw = stream.next_batch(n)?.unwrap_or_default();
                if (sh, sw) == (h, w) {
                    raw
                } else {
                    raw.chunks_exact(sh * sw).flat_map(|img| resize(img, sw, sh, w, h)).collect()
                }
            }
            Kind::Files(files) => {
                let end = (self.next + n).min(files.len());
                let mut out = Vec::with_capacity((end - self.next) * h * w);
                for p in &files[self.next..end] {
                    out.extend(load_picture(p, h, w, self.pre.resize)?);
                }
                out
            }
        };
        if self.pre.invert {
            for p in &mut pixels {
                *p = 255 - *p;
            }
        }
        self.next += pixels.len() / (h * w);
        Ok(Some(pixels))
    }
}

fn resize(img: &[u8], w: usize, h: usize, to_w: usize, to_h: usize) -> Vec<u8> {
    let buf = image::GrayImage::from_raw(w as u32, h as u32, img.to_vec()).expect("size matches");
    image::imageops::resize(&buf, to_w as u32, to_h as u32, image::imageops::FilterType::Triangle).into_raw()
}

/// A PNG/JPEG file as grayscale of the model's size.
fn load_picture(path: &Path, h: usize, w: usize, allow_resize: bool) -> Result<Vec<u8>, InferError> {
    let bytes = std::fs::read(path).map_err(|e| InferError::Input { path: path.to_path_buf(), msg: e.to_string() })?;
    decode_picture(path, &bytes, h, w, allow_resize)
}

/// Largest picture accepted, in pixels: decoding allocates width × height,
/// so a lying header must not be able to ask for gigabytes.
pub const MAX_PICTURE_PIXELS: u64 = 64 << 20;

/// Decodes PNG/JPEG bytes to grayscale `h × w` pixels (`path` names it in
/// messages).
pub fn decode_picture(
    path: &Path,
    bytes: &[u8],
    h: usize,
    w: usize,
    allow_resize: bool,
) -> Result<Vec<u8>, InferError> {
    let input = |msg: String| InferError::Input { path: path.to_path_buf(), msg };
    let reader = image::io::Reader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| input(format!("not a readable PNG/JPEG image: {e}")))?;
    match reader.format() {
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg) => {}
        _ => return Err(input("not a PNG or JPEG image: its bytes match neither format".into())),
    }
    let (iw, ih) = reader.into_dimensions().map_err(|e| input(format!("not a readable PNG/JPEG image: {e}")))?;
    if iw as u64 * ih as u64 > MAX_PICTURE_PIXELS {
        return Err(input(format!("image claims {iw}×{ih} pixels, more than this tool accepts")));
    }
    let mut reader =
        image::io::Reader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| input(e.to_string()))?;
    let mut limits = image::io::Limits::default();
    limits.max_alloc = Some(MAX_PICTURE_PIXELS * 8);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| input(format!("not a readable PNG/JPEG image: {e}")))?;
    let gray = img.to_luma8();
    let (iw, ih) = (gray.width() as usize, gray.height() as usize);
    if (ih, iw) == (h, w) {
        return Ok(gray.into_raw());
    }
    if !allow_resize {
        return Err(input(format!("image is {ih}×{iw}, the model takes {h}×{w} (pass --resize to scale it)")));
    }
    Ok(resize(gray.as_raw(), iw, ih, w, h))
}
