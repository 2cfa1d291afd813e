//! PNG figures: digit grids with captions, line charts and the confusion
//! heatmap. Rendered in memory with plotters, written atomically.

use std::io;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::register_font;

use crate::atomic;

/// One image of a grid.
#[derive(Debug, Clone)]
pub struct Tile {
    /// Planar u8 pixels `[channels, height, width]`.
    pub pixels: Vec<u8>,
    /// 1: grayscale, drawn as dark ink on white (digits read like print);
    /// 3: RGB, drawn as it is.
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub caption: Option<String>,
    /// Caption in red (a wrong prediction) rather than black.
    pub alert: bool,
}

/// A value → axis coordinate map, and an axis coordinate → tick label.
type Transform = fn(f64) -> f64;
type TickLabel = fn(&f64) -> String;

/// The one font family every figure uses.
const FONT: &str = "sans-serif";

/// Registers the embedded DejaVu Sans under [`FONT`] on first use, so figures
/// draw the same text on every machine without fontconfig or system fonts.
fn embedded_font() -> io::Result<()> {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok());
    if ok {
        Ok(())
    } else {
        Err(io::Error::other("the embedded DejaVu Sans font could not be parsed"))
    }
}

fn draw_err<E: std::fmt::Debug>(e: E) -> io::Error {
    io::Error::other(format!("drawing failed: {e:?}"))
}

/// A figure encoded as an RGB PNG, and its size.
#[derive(Debug, Clone)]
pub struct Png {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

impl Png {
    /// Writes the PNG to `path`, atomically.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        atomic::write_bytes(path, &self.bytes)
    }
}

fn encode_rgb(buf: Vec<u8>, w: u32, h: u32) -> io::Result<Png> {
    let img = image::RgbImage::from_raw(w, h, buf).ok_or_else(|| io::Error::other("image buffer size"))?;
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut io::Cursor::new(&mut png), image::ImageOutputFormat::Png)
        .map_err(io::Error::other)?;
    Ok(Png { bytes: png, width: w, height: h })
}

fn save_rgb(path: &Path, buf: Vec<u8>, w: u32, h: u32) -> io::Result<()> {
    encode_rgb(buf, w, h)?.save(path)
}

/// A grid of tiles, `cols` per row, each magnified `scale` times, with an
/// optional title above and each tile's caption under it.
pub fn image_grid(path: &Path, title: Option<&str>, tiles: &[Tile], cols: usize, scale: usize) -> io::Result<()> {
    image_grid_png(title, tiles, cols, scale)?.save(path)
}

/// [`image_grid`], in memory.
pub fn image_grid_png(title: Option<&str>, tiles: &[Tile], cols: usize, scale: usize) -> io::Result<Png> {
    embedded_font()?;
    let cols = cols.max(1).min(tiles.len().max(1));
    let rows = tiles.len().div_ceil(cols).max(1);
    let (th, tw) = tiles.first().map(|t| (t.height, t.width)).unwrap_or((28, 28));
    let captions = tiles.iter().any(|t| t.caption.is_some());
    let cap_h = if captions { 16 } else { 0 };
    let title_h = if title.is_some() { 24 } else { 0 };
    let cell_w = (tw * scale).max(if captions { 120 } else { 0 }) + 8;
    let cell_h = th * scale + cap_h + 8;
    let (w, h) = ((cols * cell_w + 8) as u32, (rows * cell_h + title_h + 8) as u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        if let Some(t) = title {
            root.draw_text(t, &(FONT, 18).into_font().color(&BLACK), (8, 4)).map_err(draw_err)?;
        }
        for (i, tile) in tiles.iter().enumerate() {
            let (r, c) = (i / cols, i % cols);
            let x0 = (c * cell_w + 8 + (cell_w - 8 - tw * scale) / 2) as i32;
            let y0 = (r * cell_h + title_h + 8) as i32;
            for y in 0..tile.height {
                for x in 0..tile.width {
                    let plane = tile.height * tile.width;
                    let at = |c: usize| tile.pixels[c * plane + y * tile.width + x];
                    let color = if tile.channels == 3 {
                        RGBColor(at(0), at(1), at(2))
                    } else {
                        let g = 255 - at(0);
                        RGBColor(g, g, g)
                    };
                    let (px, py) = (x0 + (x * scale) as i32, y0 + (y * scale) as i32);
                    root.draw(&Rectangle::new([(px, py), (px + scale as i32, py + scale as i32)], color.filled()))
                        .map_err(draw_err)?;
                }
            }
            if let Some(cap) = &tile.caption {
                let color = if tile.alert { RGBColor(200, 0, 0) } else { BLACK };
                let style = (FONT, 12).into_font().color(&color);
                let cx = (c * cell_w + 8) as i32;
                root.draw_text(cap, &style, (cx, y0 + (th * scale) as i32 + 2)).map_err(draw_err)?;
            }
        }
        root.present().map_err(draw_err)?;
    }
    encode_rgb(buf, w, h)
}

/// A tick label as a plain decimal with about three significant digits
/// (0.99, 0.0025, 12.5), never in exponent notation.
pub fn plain(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let digits = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `v` rounded to `n` significant digits.
fn round_sig(v: f64, n: i32) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let m = 10f64.powi(n - 1 - v.abs().log10().floor() as i32);
    (v * m).round() / m
}

/// One named line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// How the x axis of a [`line_chart`] reads.
#[derive(Debug, Clone, Default)]
pub struct XAxis {
    /// Label only whole numbers (epochs), as integers.
    pub integers: bool,
    /// A vertical line at x with its legend text (e.g. where fine-tuning starts).
    pub marker: Option<(f64, String)>,
}

/// A line chart with markers and a legend; a log y axis when `log_y` and
/// every value is positive; `x_axis` for whole-number ticks or a marker.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_y: bool,
    x_axis: &XAxis,
) -> io::Result<()> {
    embedded_font()?;
    let (w, h) = (800u32, 500u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let pts = || series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (mut y0, mut y1) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let log_y = log_y && y0 > 0.0;
    if y1 <= y0 {
        y1 = y0 * 1.1 + 1e-6;
    }
    let colors = [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(214, 39, 40)];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let mut builder = ChartBuilder::on(&root);
        builder.caption(title, (FONT, 18)).margin(12).x_label_area_size(40).y_label_area_size(80);
        let pad = (x1 - x0) * 0.03;
        // A log axis is drawn as log10 on a linear one, so that its ticks
        // are evenly spaced and all labelled (plotters labels decades only).
        let (ty, label): (Transform, TickLabel) =
            if log_y { (f64::log10, |v| plain(round_sig(10f64.powf(*v), 2))) } else { (|v| v, |v| plain(*v)) };
        let (ly0, ly1) = (ty(y0), ty(y1));
        let ypad = (ly1 - ly0) * 0.05;
        let mut chart =
            builder.build_cartesian_2d((x0 - pad)..(x1 + pad), (ly0 - ypad)..(ly1 + ypad)).map_err(draw_err)?;
        let x_label_of = |v: &f64| -> String {
            if !x_axis.integers {
                plain(*v)
            } else if (v - v.round()).abs() < 1e-9 {
                format!("{}", v.round() as i64)
            } else {
                String::new()
            }
        };
        let x_ticks = if x_axis.integers { ((x1 - x0).round() as usize + 1).clamp(2, 20) } else { 10 };
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_labels(x_ticks)
            .x_label_formatter(&x_label_of)
            .y_labels(10)
            .y_label_formatter(&label)
            .draw()
            .map_err(draw_err)?;
        if let Some((x, text)) = &x_axis.marker {
            let red = RGBColor(170, 40, 40);
            chart
                .draw_series(LineSeries::new([(*x, ly0 - ypad), (*x, ly1 + ypad)], red.stroke_width(2)))
                .map_err(draw_err)?
                .label(text.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], red.stroke_width(2)));
        }
        for (i, s) in series.iter().enumerate() {
            let c = colors[i % colors.len()];
            let points: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (x, ty(y))).collect();
            chart
                .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
                .map_err(draw_err)?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled()))).map_err(draw_err)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    save_rgb(path, buf, w, h)
}

/// The confusion matrix as a heatmap with counts in the cells.
pub fn confusion_heatmap(path: &Path, matrix: &[Vec<u64>], names: &[String]) -> io::Result<()> {
    confusion_heatmap_png(matrix, names)?.save(path)
}

/// [`confusion_heatmap`], in memory.
pub fn confusion_heatmap_png(matrix: &[Vec<u64>], names: &[String]) -> io::Result<Png> {
    embedded_font()?;
    let k = matrix.len().max(1);
    let cell = 48usize;
    let font = (FONT, 13).into_font();
    let text_width = |t: &str| font.box_size(t).map(|(w, _)| w as usize).map_err(draw_err);
    // Names that fit a cell head the columns; longer ones (Fashion-MNIST's
    // "T-shirt/top") would overlap, so the columns get the indices and the
    // rows "index name".
    let mut fits = true;
    for n in names.iter().take(k) {
        fits &= text_width(n)? + 6 <= cell;
    }
    let row_labels: Vec<String> = (0..k)
        .map(|i| match names.get(i) {
            Some(n) if fits || *n == i.to_string() => n.clone(),
            Some(n) => format!("{i} {n}"),
            None => i.to_string(),
        })
        .collect();
    let col_labels: Vec<String> = (0..k)
        .map(|i| if fits { names.get(i).cloned().unwrap_or_else(|| i.to_string()) } else { i.to_string() })
        .collect();
    let mut widest = text_width("true ↓")?;
    for l in &row_labels {
        widest = widest.max(text_width(l)?);
    }
    let (left, top) = (widest + 16, 48usize);
    let (w, h) = ((left + k * cell + 20) as u32, (top + k * cell + 20) as u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        root.draw_text("predicted →", &font.color(&BLACK), (left as i32, 8)).map_err(draw_err)?;
        root.draw_text("true ↓", &font.color(&BLACK), (8, top as i32 - 18)).map_err(draw_err)?;
        for (t, row) in matrix.iter().enumerate() {
            let total: u64 = row.iter().sum::<u64>().max(1);
            for (p, &v) in row.iter().enumerate() {
                let frac = v as f64 / total as f64;
                let shade = (255.0 * (1.0 - frac)) as u8;
                let color = RGBColor(shade, shade, 255);
                let (x, y) = ((left + p * cell) as i32, (top + t * cell) as i32);
                root.draw(&Rectangle::new([(x, y), (x + cell as i32, y + cell as i32)], color.filled()))
                    .map_err(draw_err)?;
                let text_color = if frac > 0.5 { WHITE } else { BLACK };
                root.draw_text(&v.to_string(), &font.color(&text_color), (x + 4, y + cell as i32 / 2 - 6))
                    .map_err(draw_err)?;
            }
        }
        for i in 0..k {
            let c = (left + i * cell) as i32;
            let col = &col_labels[i];
            let cx = c + (cell as i32 - text_width(col)? as i32) / 2;
            root.draw_text(col, &font.color(&BLACK), (cx, top as i32 - 18)).map_err(draw_err)?;
            let row = &row_labels[i];
            let ry = (top + i * cell + cell / 2 - 7) as i32;
            root.draw_text(row, &font.color(&BLACK), (left as i32 - 8 - text_width(row)? as i32, ry))
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    encode_rgb(buf, w, h)
}
