//! Pictures: PNG and JPEG files decoded — with a cap on the size a header
//! may claim — and laid on white paper in gray or RGB, then fitted to a
//! model's `[C, H, W]` by a [`Preprocess`]. `infer`, training on image
//! folders and the fuzzers decode through here, so a file gives the same
//! pixels everywhere.

use std::path::{Path, PathBuf};

use crate::preprocess::{Picture, Preprocess};

/// A picture that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {msg}", path.display())]
pub struct PictureError {
    pub path: PathBuf,
    pub msg: String,
}

/// Whether `p` is named like a picture this toolchain reads.
pub fn is_picture(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

/// A PNG/JPEG file as the model's planar `[C, H, W]` pixels.
pub fn load_picture(path: &Path, shape: [usize; 3], pre: &Preprocess) -> Result<Vec<u8>, PictureError> {
    let bytes = std::fs::read(path).map_err(|e| PictureError { path: path.to_path_buf(), msg: e.to_string() })?;
    decode_picture(path, &bytes, shape, pre)
}

/// Largest picture accepted, in pixels: decoding allocates width × height,
/// so a lying header must not be able to ask for gigabytes.
pub const MAX_PICTURE_PIXELS: u64 = 64 << 20;

/// Decodes PNG/JPEG bytes to the model's planar `[C, H, W]` pixels through
/// `pre` (`path` names it in messages).
pub fn decode_picture(path: &Path, bytes: &[u8], shape: [usize; 3], pre: &Preprocess) -> Result<Vec<u8>, PictureError> {
    decode_picture_within(path, bytes, shape, pre, MAX_PICTURE_PIXELS)
}

/// [`decode_picture`] refusing pictures over `max_pixels` (at most
/// [`MAX_PICTURE_PIXELS`]) before decoding them: a server's cap.
pub fn decode_picture_within(
    path: &Path,
    bytes: &[u8],
    [c, h, w]: [usize; 3],
    pre: &Preprocess,
    max_pixels: u64,
) -> Result<Vec<u8>, PictureError> {
    let img = decode_image_within(path, bytes, max_pixels.min(MAX_PICTURE_PIXELS))?;
    fit_image(img, [c, h, w], pre).map_err(|msg| PictureError { path: path.to_path_buf(), msg })
}

/// A decoded picture as the model's planar `[C, H, W]` pixels: laid on
/// white in C channels, then fitted by `pre`. What every decoded picture
/// goes through, and what the golden files (fixtures/preprocess/) pin for
/// the browser's copy.
pub fn fit_image(img: image::DynamicImage, [c, h, w]: [usize; 3], pre: &Preprocess) -> Result<Vec<u8>, String> {
    pre.apply_picture(on_white(img, c), h, w)
}

/// Decodes PNG/JPEG bytes, refusing other formats and oversized headers.
pub fn decode_image(path: &Path, bytes: &[u8]) -> Result<image::DynamicImage, PictureError> {
    decode_image_within(path, bytes, MAX_PICTURE_PIXELS)
}

fn decode_image_within(path: &Path, bytes: &[u8], max_pixels: u64) -> Result<image::DynamicImage, PictureError> {
    let input = |msg: String| PictureError { path: path.to_path_buf(), msg };
    let reader = image::io::Reader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| input(format!("not a readable PNG/JPEG image: {e}")))?;
    match reader.format() {
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg) => {}
        _ => return Err(input("not a PNG or JPEG image: its bytes match neither format".into())),
    }
    let (iw, ih) = reader.into_dimensions().map_err(|e| input(format!("not a readable PNG/JPEG image: {e}")))?;
    if iw as u64 * ih as u64 > max_pixels {
        let limit = if max_pixels == MAX_PICTURE_PIXELS {
            "more than this tool accepts".to_string()
        } else {
            format!("more than the {max_pixels} this model accepts")
        };
        return Err(input(format!("image claims {iw}×{ih} pixels, {limit}")));
    }
    let mut reader =
        image::io::Reader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| input(e.to_string()))?;
    let mut limits = image::io::Limits::default();
    limits.max_alloc = Some(max_pixels * 8);
    reader.limits(limits);
    reader.decode().map_err(|e| input(format!("not a readable PNG/JPEG image: {e}")))
}

/// The picture in `channels` (1: gray, 3: RGB), transparency composited
/// onto white paper.
pub fn on_white(img: image::DynamicImage, channels: usize) -> Picture {
    if channels == 1 {
        return Picture::Gray(luma_on_white(img));
    }
    if !img.color().has_alpha() {
        return Picture::Rgb(img.to_rgb8());
    }
    let rgba = img.to_rgba8();
    Picture::Rgb(image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let over = |v: u8| ((v as u32 * a as u32 + 255 * (255 - a as u32)) / 255) as u8;
        image::Rgb([over(r), over(g), over(b)])
    }))
}

/// Grayscale, with any transparency composited onto white paper — how a
/// viewer shows a drawing saved with a transparent background.
fn luma_on_white(img: image::DynamicImage) -> image::GrayImage {
    if !img.color().has_alpha() {
        return img.to_luma8();
    }
    let la = img.to_luma_alpha8();
    image::GrayImage::from_fn(la.width(), la.height(), |x, y| {
        let [l, a] = la.get_pixel(x, y).0;
        image::Luma([((l as u32 * a as u32 + 255 * (255 - a as u32)) / 255) as u8])
    })
}
