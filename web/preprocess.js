// The browser's copy of `infer --preprocess mnist` and `resize`
// (core/src/preprocess.rs, and `on_white` in core/src/picture.rs). It must
// give the same pixels as `infer` for the same picture: the golden files
// (fixtures/preprocess/golden.json) hold both sides to the same bytes
// (test/preprocess.test.mjs here, `cargo test -p ae-core` there), and the
// browser test (test/browser.mjs) compares whole runs. Each step follows the Rust
// code, including the `image` crate's integer luma, its f32 triangle-filter
// resize and Rust's rounding, so the two agree bit for bit.

const f32 = Math.fround;

/** Rust's `f64::round`: halves away from zero (Math.round rounds them up). */
const roundHalfAway = (x) => Math.sign(x) * Math.round(Math.abs(x));

/**
 * RGBA pixels → grayscale, transparency laid on white paper (`image`'s luma:
 * (2126 R + 7152 G + 722 B) / 10000, integer division).
 * @param {Uint8ClampedArray|Uint8Array} rgba  width·height·4 bytes
 * @returns {Uint8Array} width·height gray levels
 */
export function lumaOnWhite(rgba) {
  const n = rgba.length / 4;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const [r, g, b, a] = [rgba[4 * i], rgba[4 * i + 1], rgba[4 * i + 2], rgba[4 * i + 3]];
    const l = Math.floor((2126 * r + 7152 * g + 722 * b) / 10000);
    out[i] = a === 255 ? l : Math.floor((l * a + 255 * (255 - a)) / 255);
  }
  return out;
}

/** Ring of 1/16 of each side (at least one pixel) around the picture. */
function isBorder(x, y, w, h) {
  const bw = Math.max(Math.floor(w / 16), 1);
  const bh = Math.max(Math.floor(h / 16), 1);
  return x < bw || x >= Math.max(w - bw, 0) || y < bh || y >= Math.max(h - bh, 0);
}

/** Whether the border is mostly light: paper, to be inverted. */
export function lightBorder(gray, w, h) {
  let sum = 0;
  let n = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (isBorder(x, y, w, h)) {
        sum += gray[y * w + x];
        n++;
      }
    }
  }
  return n > 0 && sum > 127 * n;
}

/** Background (median border level) to 0, the brightest ink to 255. */
function level(gray, w, h) {
  const border = [];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (isBorder(x, y, w, h)) border.push(gray[y * w + x]);
    }
  }
  border.sort((a, b) => a - b);
  const background = border.length ? border[Math.floor(border.length / 2)] : 0;
  let peak = 0;
  for (const v of gray) peak = Math.max(peak, v);
  const span = Math.max(peak - background, 0);
  const out = new Uint8Array(w * h);
  if (span === 0) return out;
  for (let i = 0; i < gray.length; i++) {
    out[i] = Math.floor((Math.max(gray[i] - background, 0) * 255) / span);
  }
  return out;
}

const INK = 48;

/** Smallest box holding every pixel ≥ INK: [x0, y0, x1, y1] inclusive, or null. */
function inkBox(gray, w, h) {
  let box = null;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (gray[y * w + x] >= INK) {
        box = box ? [Math.min(box[0], x), Math.min(box[1], y), Math.max(box[2], x), Math.max(box[3], y)] : [x, y, x, y];
      }
    }
  }
  return box;
}

/** One pass of `image`'s separable resize: weights for each output index. */
function triangleWeights(inSize, outSize) {
  const ratio = f32(inSize / outSize);
  const sratio = ratio < 1 ? 1 : ratio;
  const support = f32(1 * sratio);
  const rows = [];
  for (let o = 0; o < outSize; o++) {
    let centre = f32(f32(o + 0.5) * ratio);
    let left = Math.floor(f32(centre - support));
    left = Math.min(Math.max(left, 0), inSize - 1);
    let right = Math.ceil(f32(centre + support));
    right = Math.min(Math.max(right, left + 1), inSize);
    centre = f32(centre - 0.5);
    const ws = [];
    let sum = 0;
    for (let i = left; i < right; i++) {
      const t = Math.abs(f32(f32(i - centre) / sratio));
      const wgt = t < 1 ? f32(1 - t) : 0;
      ws.push(wgt);
      sum = f32(sum + wgt);
    }
    rows.push({ left, ws: ws.map((v) => f32(v / sum)) });
  }
  return rows;
}

/** `image::imageops::resize(.., FilterType::Triangle)` on one channel. */
export function resizeTriangle(gray, w, h, nw, nh) {
  if (w === nw && h === nh) return Uint8Array.from(gray);
  // Vertical pass into f32, then horizontal with clamping and rounding.
  const vert = new Float32Array(w * nh);
  for (const [oy, { left, ws }] of triangleWeights(h, nh).entries()) {
    for (let x = 0; x < w; x++) {
      let t = 0;
      for (let i = 0; i < ws.length; i++) t = f32(t + f32(gray[(left + i) * w + x] * ws[i]));
      vert[oy * w + x] = t;
    }
  }
  const out = new Uint8Array(nw * nh);
  for (const [ox, { left, ws }] of triangleWeights(w, nw).entries()) {
    for (let y = 0; y < nh; y++) {
      let t = 0;
      for (let i = 0; i < ws.length; i++) t = f32(t + f32(vert[y * w + left + i] * ws[i]));
      out[y * nw + ox] = roundHalfAway(Math.min(Math.max(t, 0), 255));
    }
  }
  return out;
}

function centreOfMass(gray, w, h) {
  let sx = 0;
  let sy = 0;
  let m = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const v = gray[y * w + x];
      sx += v * (x + 0.5);
      sy += v * (y + 0.5);
      m += v;
    }
  }
  return m === 0 ? [w / 2, h / 2] : [sx / m, sy / m];
}

/**
 * A grayscale picture as the model's h×w input, the MNIST way: invert
 * ('auto': when the border is light), level, crop to the ink, longer side
 * to 5/7 of the frame (20 of 28 px), centre of mass at the centre.
 * @param {Uint8Array} gray  w·h gray levels
 * @param {'auto'|'always'|'never'} invert
 * @returns {{pixels: Uint8Array, inverted: boolean}}
 */
export function mnistStyle(gray, w, h, invert = 'auto', outH = 28, outW = 28) {
  const inverted = invert === 'always' || (invert === 'auto' && lightBorder(gray, w, h));
  const src = inverted ? gray.map((v) => 255 - v) : gray;
  const out = new Uint8Array(outH * outW);
  const levelled = level(src, w, h);
  const box = inkBox(levelled, w, h);
  if (!box) return { pixels: out, inverted };
  const [x0, y0, x1, y1] = box;
  const [cw, ch] = [x1 - x0 + 1, y1 - y0 + 1];
  const crop = new Uint8Array(cw * ch);
  for (let y = 0; y < ch; y++) {
    for (let x = 0; x < cw; x++) crop[y * cw + x] = levelled[(y0 + y) * w + x0 + x];
  }
  const side = Math.ceil((Math.min(outH, outW) * 5) / 7);
  const scale = side / Math.max(cw, ch);
  const dw = Math.min(Math.max(roundHalfAway(cw * scale), 1), outW);
  const dh = Math.min(Math.max(roundHalfAway(ch * scale), 1), outH);
  const digit = resizeTriangle(crop, cw, ch, dw, dh);
  const [cx, cy] = centreOfMass(digit, dw, dh);
  const ox = Math.min(Math.max(roundHalfAway(outW / 2 - cx), 0), Math.max(outW - dw, 0));
  const oy = Math.min(Math.max(roundHalfAway(outH / 2 - cy), 0), Math.max(outH - dh, 0));
  for (let y = 0; y < dh; y++) {
    for (let x = 0; x < dw; x++) {
      const [tx, ty] = [x + ox, y + oy];
      if (tx < outW && ty < outH) out[ty * outW + tx] = digit[y * dw + x];
    }
  }
  return { pixels: out, inverted };
}

/**
 * RGBA pixels → three planes (R, G, B), transparency laid on white paper as
 * `infer` does for colour models (`on_white` in core/src/picture.rs).
 * @returns {Uint8Array[]} three planes of width·height levels
 */
export function rgbOnWhite(rgba) {
  const n = rgba.length / 4;
  const planes = [new Uint8Array(n), new Uint8Array(n), new Uint8Array(n)];
  for (let i = 0; i < n; i++) {
    const a = rgba[4 * i + 3];
    for (let c = 0; c < 3; c++) {
      const v = rgba[4 * i + c];
      planes[c][i] = a === 255 ? v : Math.floor((v * a + 255 * (255 - a)) / 255);
    }
  }
  return planes;
}

/**
 * Planes of a picture as the model's [C, H, W] input by a plain resize
 * (`infer --preprocess resize`): inverted first with 'always' (or 'auto'
 * when the border, in gray, is light), then each plane resized with the
 * triangle filter, as `image` resizes each channel of a picture.
 * @param {Uint8Array[]} planes  1 or 3 planes of w·h levels
 * @param {Uint8Array} gray  the picture in gray (for 'auto')
 * @returns {{pixels: Uint8Array, inverted: boolean}} C·outH·outW levels, planar
 */
export function resizeStyle(planes, gray, w, h, invert = 'never', outH = 28, outW = 28) {
  const inverted = invert === 'always' || (invert === 'auto' && lightBorder(gray, w, h));
  const out = new Uint8Array(planes.length * outH * outW);
  planes.forEach((plane, c) => {
    const src = inverted ? plane.map((v) => 255 - v) : plane;
    out.set(resizeTriangle(src, w, h, outW, outH), c * outH * outW);
  });
  return { pixels: out, inverted };
}
