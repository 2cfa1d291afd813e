//! How a picture becomes a model input: inversion, then one of three fits
//! to the model's H×W — exact size only, a plain resize, or MNIST's own
//! recipe (crop to the digit, longer side to 20 of 28 pixels, centre of
//! mass in the middle) for photos and scans of digits.

use image::imageops::{self, FilterType};
use image::{GrayImage, RgbImage};

/// A decoded picture in the model's colour: grayscale or RGB.
#[derive(Debug, Clone)]
pub enum Picture {
    Gray(GrayImage),
    Rgb(RgbImage),
}

impl Picture {
    /// Planar pixels `[C, H, W]` of `channels` (1 or 3) channels, `[H, W]`
    /// of `width`: grayscale, or RGB interleaved per pixel, as decoders give.
    pub fn from_planar(pixels: &[u8], channels: usize, height: usize, width: usize) -> Picture {
        let (w, h) = (width as u32, height as u32);
        if channels == 1 {
            return Picture::Gray(GrayImage::from_raw(w, h, pixels.to_vec()).expect("size matches"));
        }
        let inter = crate::idx::interleaved(pixels, channels, height * width);
        Picture::Rgb(RgbImage::from_raw(w, h, inter).expect("size matches"))
    }

    /// Pixels `[H, W, C]` of `channels` (1 or 3) channels, as IDX files and
    /// decoders store them.
    pub fn from_interleaved(pixels: &[u8], channels: usize, height: usize, width: usize) -> Picture {
        let (w, h) = (width as u32, height as u32);
        match channels {
            1 => Picture::Gray(GrayImage::from_raw(w, h, pixels.to_vec()).expect("size matches")),
            _ => Picture::Rgb(RgbImage::from_raw(w, h, pixels.to_vec()).expect("size matches")),
        }
    }

    /// This picture in `channels` (1: `image`'s luma; 3: gray repeated).
    pub fn with_channels(self, channels: usize) -> Picture {
        match (self, channels) {
            (Picture::Rgb(rgb), 1) => Picture::Gray(image::DynamicImage::ImageRgb8(rgb).to_luma8()),
            (Picture::Gray(g), 3) => Picture::Rgb(image::DynamicImage::ImageLuma8(g).to_rgb8()),
            (p, _) => p,
        }
    }

    pub fn dimensions(&self) -> (u32, u32) {
        match self {
            Picture::Gray(g) => g.dimensions(),
            Picture::Rgb(c) => c.dimensions(),
        }
    }

    /// Planar `[C, H, W]` pixels.
    pub fn into_planar(self) -> Vec<u8> {
        match self {
            Picture::Gray(g) => g.into_raw(),
            Picture::Rgb(c) => {
                let plane = c.width() as usize * c.height() as usize;
                crate::idx::planar(c.into_raw(), 3, plane)
            }
        }
    }
}

/// How a picture of any size is fitted to the model's H×W.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::VariantArray, strum::EnumMessage)]
#[strum(serialize_all = "lowercase")]
pub enum Fit {
    /// Pictures must already be the model's size.
    #[default]
    Exact,
    /// Scale the whole picture to the model's size.
    Resize,
    /// MNIST's recipe: crop to the digit, longer side to 20 of 28 px, centre of mass in the middle.
    Mnist,
}

/// Whether gray levels are inverted (the models expect MNIST's light digits
/// on a dark background).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::VariantArray, strum::EnumMessage)]
#[strum(serialize_all = "lowercase")]
pub enum Invert {
    /// Never invert.
    Never,
    /// Invert every picture (dark ink on light paper).
    Always,
    /// Invert the pictures whose border is light (paper), per picture.
    Auto,
}

/// Everything done to a picture before the model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preprocess {
    pub fit: Fit,
    pub invert: Invert,
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess::new(Fit::Exact)
    }
}

impl Preprocess {
    /// `fit` with its natural inversion: auto-detected for MNIST-style
    /// preprocessing (photos and scans come either way), none otherwise.
    pub fn new(fit: Fit) -> Preprocess {
        let invert = if fit == Fit::Mnist { Invert::Auto } else { Invert::Never };
        Preprocess { fit, invert }
    }

    /// A grayscale picture as `h × w` model pixels, or why it cannot be.
    pub fn apply(&self, gray: GrayImage, h: usize, w: usize) -> Result<Vec<u8>, String> {
        self.apply_picture(Picture::Gray(gray), h, w)
    }

    /// A picture as planar `[C, h, w]` model pixels (C its own channels), or
    /// why it cannot be.
    pub fn apply_picture(&self, picture: Picture, h: usize, w: usize) -> Result<Vec<u8>, String> {
        let mut picture = picture;
        let invert = match (&picture, self.invert) {
            (_, Invert::Never) => false,
            (_, Invert::Always) => true,
            (Picture::Gray(g), Invert::Auto) => light_border(g),
            (Picture::Rgb(c), Invert::Auto) => light_border(&image::DynamicImage::ImageRgb8(c.clone()).to_luma8()),
        };
        if invert {
            match &mut picture {
                Picture::Gray(g) => imageops::invert(g),
                Picture::Rgb(c) => imageops::invert(c),
            }
        }
        let (iw, ih) = picture.dimensions();
        let (ih, iw) = (ih as usize, iw as usize);
        let same = (ih, iw) == (h, w);
        match (self.fit, picture) {
            (Fit::Exact | Fit::Resize, p) if same => Ok(p.into_planar()),
            (Fit::Exact, _) => Err(format!(
                "image is {ih}×{iw}, the model takes {h}×{w} (pass --preprocess resize or --preprocess mnist)"
            )),
            (Fit::Resize, Picture::Gray(g)) => {
                Ok(imageops::resize(&g, w as u32, h as u32, FilterType::Triangle).into_raw())
            }
            (Fit::Resize, Picture::Rgb(c)) => {
                Ok(Picture::Rgb(imageops::resize(&c, w as u32, h as u32, FilterType::Triangle)).into_planar())
            }
            (Fit::Mnist, Picture::Gray(g)) => Ok(mnist_style(&g, h, w)),
            (Fit::Mnist, Picture::Rgb(_)) => {
                Err("--preprocess mnist is for grayscale digit models; this model takes RGB pictures".into())
            }
        }
    }
}

/// Whether the picture's outer ring (1/16 of each side, at least one pixel)
/// is mostly light: paper rather than MNIST's black background.
pub fn light_border(gray: &GrayImage) -> bool {
    let (w, h) = (gray.width(), gray.height());
    let (bw, bh) = ((w / 16).max(1), (h / 16).max(1));
    let (mut sum, mut n) = (0u64, 0u64);
    for (x, y, p) in gray.enumerate_pixels() {
        if x < bw || x >= w.saturating_sub(bw) || y < bh || y >= h.saturating_sub(bh) {
            sum += p.0[0] as u64;
            n += 1;
        }
    }
    n > 0 && sum > 127 * n
}

/// Gray level below which a pixel counts as background once the picture's
/// own background level is subtracted and its contrast stretched to 0..255.
const INK: u8 = 48;

/// MNIST's recipe (LeCun et al.): the digit's bounding box, scaled so its
/// longer side is 20 px of 28 (5/7 of the model's shorter side) keeping the
/// aspect ratio, pasted so its centre of mass sits at the centre. A photo's
/// background is rarely 0: its median border level is subtracted and the
/// rest stretched to 0..255 first. A picture with no ink gives all zeros.
pub fn mnist_style(gray: &GrayImage, h: usize, w: usize) -> Vec<u8> {
    let mut out = vec![0u8; h * w];
    let levelled = level(gray);
    let Some((x0, y0, x1, y1)) = ink_box(&levelled) else {
        return out;
    };
    let digit = imageops::crop_imm(&levelled, x0, y0, x1 - x0 + 1, y1 - y0 + 1).to_image();
    let side = (h.min(w) * 5).div_ceil(7) as f64; // 20 for 28
    let scale = side / digit.width().max(digit.height()) as f64;
    let (dw, dh) = (
        ((digit.width() as f64 * scale).round() as u32).clamp(1, w as u32),
        ((digit.height() as f64 * scale).round() as u32).clamp(1, h as u32),
    );
    let digit = imageops::resize(&digit, dw, dh, FilterType::Triangle);
    let (cx, cy) = centre_of_mass(&digit);
    // Shift so the centre of mass lands on the centre, but keep the whole
    // digit inside the frame.
    let ox = ((w as f64 / 2.0 - cx).round() as i64).clamp(0, (w as i64 - dw as i64).max(0));
    let oy = ((h as f64 / 2.0 - cy).round() as i64).clamp(0, (h as i64 - dh as i64).max(0));
    for (x, y, p) in digit.enumerate_pixels() {
        let (tx, ty) = (x as i64 + ox, y as i64 + oy);
        if (0..w as i64).contains(&tx) && (0..h as i64).contains(&ty) {
            out[ty as usize * w + tx as usize] = p.0[0];
        }
    }
    out
}

/// Background to 0, the brightest ink to 255.
fn level(gray: &GrayImage) -> GrayImage {
    let (w, h) = (gray.width(), gray.height());
    let (bw, bh) = ((w / 16).max(1), (h / 16).max(1));
    let mut border: Vec<u8> = gray
        .enumerate_pixels()
        .filter(|(x, y, _)| *x < bw || *x >= w.saturating_sub(bw) || *y < bh || *y >= h.saturating_sub(bh))
        .map(|(_, _, p)| p.0[0])
        .collect();
    border.sort_unstable();
    let background = border.get(border.len() / 2).copied().unwrap_or(0);
    let peak = gray.pixels().map(|p| p.0[0]).max().unwrap_or(0);
    let span = peak.saturating_sub(background);
    if span == 0 {
        return GrayImage::new(w, h);
    }
    let mut out = gray.clone();
    for p in out.pixels_mut() {
        let v = p.0[0].saturating_sub(background) as u32 * 255 / span as u32;
        p.0[0] = v as u8;
    }
    out
}

/// The smallest box holding every ink pixel, `(x0, y0, x1, y1)` inclusive.
fn ink_box(gray: &GrayImage) -> Option<(u32, u32, u32, u32)> {
    let mut b: Option<(u32, u32, u32, u32)> = None;
    for (x, y, p) in gray.enumerate_pixels() {
        if p.0[0] >= INK {
            b = Some(match b {
                None => (x, y, x, y),
                Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
            });
        }
    }
    b
}

/// Intensity-weighted centre, in pixel-centre coordinates (`x + 0.5`).
fn centre_of_mass(gray: &GrayImage) -> (f64, f64) {
    let (mut sx, mut sy, mut m) = (0.0, 0.0, 0.0);
    for (x, y, p) in gray.enumerate_pixels() {
        let v = p.0[0] as f64;
        sx += v * (x as f64 + 0.5);
        sy += v * (y as f64 + 0.5);
        m += v;
    }
    if m == 0.0 {
        (gray.width() as f64 / 2.0, gray.height() as f64 / 2.0)
    } else {
        (sx / m, sy / m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dark bar on light paper, off-centre, in a 100×60 picture.
    fn scan() -> GrayImage {
        GrayImage::from_fn(60, 100, |x, y| {
            image::Luma([if (10..20).contains(&x) && (5..65).contains(&y) { 20 } else { 230 }])
        })
    }

    #[test]
    fn auto_inversion_reads_the_border() {
        assert!(light_border(&scan()));
        let mut dark = scan();
        imageops::invert(&mut dark);
        assert!(!light_border(&dark));
    }

    #[test]
    fn mnist_style_centres_a_20_pixel_digit() {
        let px = Preprocess::new(Fit::Mnist).apply(scan(), 28, 28).unwrap();
        let img = GrayImage::from_raw(28, 28, px).unwrap();
        let (x0, y0, x1, y1) = ink_box(&img).unwrap();
        // The bar is 10×60: its longer side becomes 20 px, its width 3–4.
        assert_eq!(y1 - y0 + 1, 20, "height of the scaled digit");
        assert!((3..=5).contains(&(x1 - x0 + 1)), "width {}", x1 - x0 + 1);
        let (cx, cy) = centre_of_mass(&img);
        assert!((cx - 14.0).abs() <= 0.75 && (cy - 14.0).abs() <= 0.75, "centre of mass ({cx}, {cy})");
        // Light paper became black background.
        assert_eq!(img.get_pixel(0, 0).0[0], 0);
    }

    #[test]
    fn a_blank_picture_gives_a_black_input() {
        let blank = GrayImage::from_pixel(40, 40, image::Luma([200]));
        assert_eq!(Preprocess::new(Fit::Mnist).apply(blank, 28, 28).unwrap(), vec![0; 784]);
    }

    #[test]
    fn exact_fit_names_the_remedy() {
        let e = Preprocess::new(Fit::Exact).apply(scan(), 28, 28).unwrap_err();
        assert!(e.contains("100×60") && e.contains("--preprocess"), "{e}");
    }
}
