// The page in a real browser: headless Chromium (Debian's `chromium`, never
// a downloaded one) driven by puppeteer-core.
//
//  1. MNIST test images through the page's own path (RGBA → gray → MNIST-style
//     preprocessing → onnxruntime-web) give `infer classify --preprocess mnist`'s
//     model inputs (bit for bit) and probabilities (within 1e-4).
//  2. Strokes drawn on the pad with pointer events give the expected digits, and
//     the same drawings saved as PNG give `infer`'s inputs and probabilities too.
//  3. With the server stopped and the browser offline, the page still predicts.
//  4. A screenshot of the page with a drawn digit is saved.
//  5. Real files through the file input: a photo-like JPEG and a PNG with
//     transparency, against `infer --preprocess mnist` on the same files (the
//     PNG bit for bit; the JPEG within the stated decoder tolerance).
//  6. Models the page must read from their metadata: a colour model and a
//     gray one with named classes (both `preprocess: resize`, trained and
//     exported here with `train`), against `infer --preprocess resize`; and
//     a missing model is said so on the page.
//  7. Classifiers made elsewhere (tests/foreign_models.py's PyTorch exports:
//     logits with other names, a batch fixed at 1, channels last + softmax +
//     Keras labels, uint8, float16, a colour model on normalised inputs with
//     ?normalize=), each read from its input and outputs, against
//     `infer classify` on the same pictures; the one with two outputs is
//     refused on the page with the reason.
//
// usage: node test/browser.mjs INFER_BINARY MNIST_DIR OUT_DIR FOREIGN_MODELS_DIR   (from web/)
// env: CHROMIUM (default /usr/bin/chromium), WEB_IMAGES (default 300)

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

const [inferBin, mnistDir, outDir, foreignDir] = process.argv.slice(2);
if (!inferBin || !mnistDir || !outDir || !foreignDir) {
  console.error('usage: node test/browser.mjs INFER_BINARY MNIST_DIR OUT_DIR FOREIGN_MODELS_DIR');
  process.exit(2);
}
const web = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const models = path.join(web, 'models');
const chromium = process.env.CHROMIUM ?? '/usr/bin/chromium';
const count = Number(process.env.WEB_IMAGES ?? 300);
if (!fs.existsSync(chromium)) {
  console.error(`web test: no Chromium at ${chromium} (apt-get install chromium, or set CHROMIUM to a Chromium or Chrome binary)`);
  process.exit(2);
}
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'web-test-'));
fs.mkdirSync(outDir, { recursive: true });
const t0 = performance.now();
const failures = [];
const check = (ok, what) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures.push(what);
};

// ---- data and the reference: `infer` itself ----------------------------------

/** The first n images of an IDX image file: { n, rows, cols, pixels }. */
function readIdxImages(file, n) {
  const buf = fs.readFileSync(file);
  if (buf.readUInt32BE(0) !== 0x00000803) throw new Error(`${file}: not an IDX u8 image file`);
  const [total, rows, cols] = [buf.readUInt32BE(4), buf.readUInt32BE(8), buf.readUInt32BE(12)];
  n = Math.min(n, total);
  return { n, rows, cols, pixels: buf.subarray(16, 16 + n * rows * cols) };
}

function writeIdxImages(file, { n, rows, cols, pixels }) {
  const head = Buffer.alloc(16);
  head.writeUInt32BE(0x00000803, 0);
  head.writeUInt32BE(n, 4);
  head.writeUInt32BE(rows, 8);
  head.writeUInt32BE(cols, 12);
  fs.writeFileSync(file, Buffer.concat([head, pixels]));
}

/** A little-endian float32 .npy as { shape, data }. */
function readNpy(file) {
  const buf = fs.readFileSync(file);
  const headerLen = buf.readUInt16LE(8);
  const header = buf.subarray(10, 10 + headerLen).toString('latin1');
  if (!header.includes("'descr': '<f4'")) throw new Error(`${file}: not float32: ${header}`);
  const shape = header.match(/'shape': \(([^)]*)\)/)[1].split(',').filter((s) => s.trim()).map(Number);
  const bytes = buf.subarray(10 + headerLen);
  const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  return { shape, data };
}

/** `infer classify --preprocess <fit>` on `images`: the model inputs (u8) and probabilities. */
function inferReference(images, model = path.join(models, 'classifier.onnx'), fit = 'mnist', extra = []) {
  const [x, p] = [path.join(tmp, `x-${Math.random()}.npy`), path.join(tmp, `p-${Math.random()}.npy`)];
  execFileSync(inferBin, ['classify', '--model', model, '--images', ...images,
    '--preprocess', fit, '--inputs', x, '--probabilities', p, '--quiet', '--device', 'cpu', ...extra], { stdio: ['ignore', 'ignore', 'inherit'] });
  const inputs = readNpy(x);
  return {
    pixels: Array.from(inputs.data, (v) => Math.round(v * 255)),
    probabilities: readNpy(p).data,
  };
}

function compare(label, page, ref, classes, per = 784) {
  let pixelDiffs = 0;
  let maxDiff = 0;
  let sameClass = 0;
  page.forEach((r, i) => {
    for (let k = 0; k < per; k++) if (r.pixels[k] !== ref.pixels[i * per + k]) pixelDiffs++;
    const refP = ref.probabilities.subarray(i * classes, (i + 1) * classes);
    r.probabilities.forEach((q, k) => (maxDiff = Math.max(maxDiff, Math.abs(q - refP[k]))));
    if (r.best === refP.indexOf(Math.max(...refP))) sameClass++;
  });
  check(pixelDiffs === 0, `${label}: the page's inputs equal infer's (${pixelDiffs} of ${page.length * per} values differ)`);
  check(maxDiff <= 1e-4, `${label}: probabilities within 1e-4 of infer's (max |diff| ${maxDiff.toExponential(2)})`);
  check(sameClass === page.length, `${label}: same class as infer for ${sameClass} of ${page.length}`);
}

// ---- the server: Python's standard one, on a free port --------------------------

function serve() {
  return new Promise((resolve, reject) => {
    const server = spawn('python3', ['-u', '-m', 'http.server', '0', '--bind', '127.0.0.1', '--directory', web],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    server.on('error', reject);
    server.stdout.on('data', (d) => {
      const m = String(d).match(/port (\d+)/);
      if (m) resolve({ server, url: `http://127.0.0.1:${m[1]}/` });
    });
    setTimeout(() => reject(new Error('the static server did not start in 10 s')), 10_000);
  });
}

const { server, url } = await serve();
const browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const watchdog = setTimeout(() => {
  console.error('web test: no result after 150 s');
  process.exit(1);
}, 150_000);

try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1100, height: 720 });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  await page.goto(url, { waitUntil: 'load' });
  const info = await page.evaluate(() => window.app.ready);
  check(info.classNames.length === 10 && /classifier/i.test(info.doc),
    `metadata read from the ONNX file: ${info.classNames.length} class names, "${info.doc.slice(0, 40)}…"`);

  // 1. MNIST test images through the page's path.
  const mnist = readIdxImages(path.join(mnistDir, 't10k-images-idx3-ubyte'), count);
  const idxFile = path.join(tmp, 'first.idx');
  writeIdxImages(idxFile, mnist);
  const tPage = performance.now();
  const pageResults = await page.evaluate(async (pixels, n, rows, cols) => {
    const out = [];
    for (let i = 0; i < n; i++) {
      const rgba = new Uint8ClampedArray(rows * cols * 4);
      for (let k = 0; k < rows * cols; k++) rgba.set([pixels[i * rows * cols + k], pixels[i * rows * cols + k], pixels[i * rows * cols + k], 255], 4 * k);
      const r = await window.app.predict(new ImageData(rgba, cols, rows));
      out.push({ pixels: r.pixels, probabilities: r.probabilities, best: r.best });
    }
    return out;
  }, Array.from(mnist.pixels), mnist.n, mnist.rows, mnist.cols);
  const pageSeconds = (performance.now() - tPage) / 1000;
  compare(`${mnist.n} MNIST test images`, pageResults, inferReference([idxFile]), 10);

  // 2. Drawn digits: strokes as pointer events on the pad.
  const pad = await page.$('#pad');
  const box = await pad.boundingBox();
  const at = ([x, y]) => [box.x + (x * box.width) / 280, box.y + (y * box.height) / 280];
  async function stroke(points) {
    const [x0, y0] = at(points[0]);
    await page.mouse.move(x0, y0);
    await page.mouse.down();
    for (const p of points.slice(1)) {
      const [x, y] = at(p);
      await page.mouse.move(x, y, { steps: 4 });
    }
    await page.mouse.up();
  }
  const ellipse = (cx, cy, rx, ry) => Array.from({ length: 41 }, (_, i) => [cx + rx * Math.sin((i / 40) * 2 * Math.PI), cy - ry * Math.cos((i / 40) * 2 * Math.PI)]);
  const shapes = [
    { digit: '1', strokes: [[[150, 50], [140, 230]]] },
    { digit: '0', strokes: [ellipse(140, 140, 55, 85)] },
    { digit: '7', strokes: [[[80, 60], [200, 60], [120, 230]]] },
    { digit: '4', strokes: [[[150, 40], [70, 160], [210, 160]], [[170, 90], [170, 240]]] },
    { digit: '3', strokes: [[[85, 60], [140, 40], [190, 70], [180, 115], [130, 135], [190, 160], [195, 205], [140, 235], [80, 215]]] },
  ];
  const drawn = [];
  for (const [i, { digit, strokes }] of shapes.entries()) {
    await page.click('#clear');
    for (const s of strokes) await stroke(s);
    const r = await page.evaluate(async () => {
      await new Promise((ok) => setTimeout(ok, 0));
      const res = await window.app.update(document.getElementById('pad').getContext('2d').getImageData(0, 0, 280, 280));
      return { pixels: res.pixels, probabilities: res.probabilities, best: res.best, name: res.name, png: document.getElementById('pad').toDataURL('image/png') };
    });
    const png = path.join(tmp, `drawn-${i}-${digit}.png`);
    fs.writeFileSync(png, Buffer.from(r.png.split(',')[1], 'base64'));
    const shown = await page.$eval('#prediction', (e) => e.textContent);
    check(r.name === digit && shown.startsWith(digit),
      `drawn "${digit}" is read as ${r.name} (${(r.probabilities[r.best] * 100).toFixed(1)} %; the page shows "${shown}")`);
    drawn.push({ ...r, png });
  }
  compare('the drawings saved as PNG', drawn, inferReference(drawn.map((d) => d.png)), 10);

  // 4. The browser guide's screenshot (docs/browser.md): a drawn 3.
  await page.screenshot({ path: path.join(outDir, 'screenshot.png') });

  // 5. Real files through the file input (the drop path's openFile): a
  // photo-like JPEG (a dark 7 on uneven, noisy paper) and a PNG whose
  // background is transparent (a 3), both made by the browser's encoders.
  const files = await page.evaluate(() => {
    const make = (w, h, paint, type) => {
      const c = new OffscreenCanvas(w, h);
      const g = c.getContext('2d');
      paint(g);
      return c.convertToBlob(type === 'jpeg' ? { type: 'image/jpeg', quality: 0.85 } : { type: 'image/png' })
        .then((b) => b.arrayBuffer()).then((a) => Array.from(new Uint8Array(a)));
    };
    let seed = 7;
    const rnd = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    const photo = make(320, 240, (g) => {
      const paper = g.createLinearGradient(0, 0, 320, 240);
      paper.addColorStop(0, '#e9e4d8');
      paper.addColorStop(1, '#b9b2a4');
      g.fillStyle = paper;
      g.fillRect(0, 0, 320, 240);
      for (let i = 0; i < 3000; i++) {
        g.fillStyle = `rgba(${rnd() > 0.5 ? 255 : 60},${rnd() > 0.5 ? 255 : 60},${rnd() > 0.5 ? 255 : 60},0.08)`;
        g.fillRect(rnd() * 320, rnd() * 240, 2, 2);
      }
      g.strokeStyle = '#2a2630';
      g.lineWidth = 14;
      g.lineCap = 'round';
      g.lineJoin = 'round';
      g.beginPath();
      g.moveTo(120, 60);
      g.lineTo(205, 64);
      g.lineTo(150, 190);
      g.stroke();
    }, 'jpeg');
    const transparent = make(200, 200, (g) => {
      g.strokeStyle = '#000';
      g.lineWidth = 16;
      g.lineCap = 'round';
      g.beginPath();
      g.moveTo(60, 50);
      g.bezierCurveTo(150, 10, 160, 90, 100, 100);
      g.bezierCurveTo(170, 110, 160, 190, 55, 160);
      g.stroke();
    }, 'png');
    return Promise.all([photo, transparent]);
  });
  const real = [['photo.jpg', files[0], '7'], ['transparent.png', files[1], '3']];
  const input = await page.$('#file');
  const dropped = [];
  for (const [name, bytes, digit] of real) {
    const file = path.join(tmp, name);
    fs.writeFileSync(file, Buffer.from(bytes));
    await page.evaluate(() => { window.app.lastResult = null; });
    await input.uploadFile(file);
    await page.waitForFunction(() => window.app.lastResult !== null, { timeout: 10_000 });
    const r = await page.evaluate(() => window.app.lastResult);
    check(r.name === digit, `${name} through the file input is read as ${r.name} (expected ${digit})`);
    dropped.push({ ...r, file });
  }
  // The PNG decodes the same everywhere: bit for bit.
  compare('transparent.png, dropped', [dropped[1]], inferReference([dropped[1].file]), 10);
  // JPEG decoders may differ by a level here and there (Chromium's
  // libjpeg-turbo vs the `image` crate's jpeg-decoder, both within the
  // standard's tolerance): the page must give infer's class, and its 28×28
  // input may differ by at most JPEG_TOLERANCE levels per pixel.
  const JPEG_TOLERANCE = 8;
  const ref = inferReference([dropped[0].file]);
  const deltas = dropped[0].pixels.map((v, k) => Math.abs(v - ref.pixels[k]));
  const worst = Math.max(...deltas);
  const refBest = ref.probabilities.indexOf(Math.max(...ref.probabilities));
  check(worst <= JPEG_TOLERANCE && dropped[0].best === refBest,
    `photo.jpg, dropped: infer's class (${refBest}); inputs within ${JPEG_TOLERANCE} levels (max |diff| ${worst}, ` +
    `${deltas.filter((d) => d > 0).length} of 784 pixels differ)`);

  // 6. Other models: read from their metadata, or refused in words.
  const trainBin = path.join(path.dirname(inferBin), 'train');
  const testModels = path.join(web, '.test-models');
  fs.rmSync(testModels, { recursive: true, force: true });
  const images = path.join(mnistDir, 't10k-images-idx3-ubyte');
  const labels = path.join(mnistDir, 't10k-labels-idx1-ubyte');
  const letters = 'abcdefghij'.split('').map((c) => `class-${c}`).join(',');
  for (const [name, extra] of [['colour', ['--channels', '3']], ['named', ['--class-names', letters]]]) {
    const run = path.join(tmp, name);
    const small = ['--images', images, '--limit', '2000', '--threads', '2', '--quiet'];
    execFileSync(trainBin, ['autoencoder', ...small, '--layers', '1', '--filters', '4', '--epochs', '1',
      '--out', path.join(run, 'ae'), ...(name === 'colour' ? extra : [])], { stdio: ['ignore', 'ignore', 'inherit'] });
    execFileSync(trainBin, ['classifier', ...small, '--autoencoder', path.join(run, 'ae'), '--labels', labels,
      '--test-images', 'none', '--fc-units', '16', '--epochs', '1', '--out', path.join(run, 'clf'),
      ...(name === 'named' ? extra : [])], { stdio: ['ignore', 'ignore', 'inherit'] });
    execFileSync(trainBin, ['export', '--run', path.join(run, 'clf'), '--out', path.join(testModels, name), '--quiet'],
      { stdio: ['ignore', 'ignore', 'inherit'] });
    await page.goto(`${url}?models=.test-models/${name}/`, { waitUntil: 'load' });
    const got = await page.evaluate(() => window.app.ready);
    const [c, h, w] = got.shape;
    check(got.preprocess === 'resize' && c === (name === 'colour' ? 3 : 1) && h === 28 && w === 28 && got.autoencoder,
      `${name} model: the page reads [${got.shape}] and "${got.preprocess}" from its metadata`);
    // Pictures of another size (36×40), tinted for colour, through the
    // page's path and saved as PNG for infer.
    const n = 12;
    const res = await page.evaluate(async (pixels, n, colour) => {
      const out = [];
      for (let i = 0; i < n; i++) {
        const img = new ImageData(40, 36);
        for (let y = 0; y < 36; y++) {
          for (let x = 0; x < 40; x++) {
            const v = pixels[i * 784 + Math.min(Math.floor((y * 28) / 36), 27) * 28 + Math.min(Math.floor((x * 28) / 40), 27)];
            img.data.set(colour ? [v, (v * 3) >> 2, 255 - v, 255] : [v, v, v, 255], 4 * (y * 40 + x));
          }
        }
        const r = await window.app.predict(img);
        const canvas = new OffscreenCanvas(40, 36);
        canvas.getContext('2d').putImageData(img, 0, 0);
        const blob = await canvas.convertToBlob({ type: 'image/png' });
        out.push({ pixels: r.pixels, probabilities: r.probabilities, best: r.best, name: r.name,
          png: Array.from(new Uint8Array(await blob.arrayBuffer())) });
      }
      return out;
    }, Array.from(mnist.pixels.subarray(0, 12 * 784)), n, name === 'colour');
    const pngs = res.map((r, i) => {
      const f = path.join(tmp, `${name}-${String(i).padStart(2, '0')}.png`);
      fs.writeFileSync(f, Buffer.from(r.png));
      return f;
    });
    compare(`${name} model, ${n} pictures of 40×36 resized`, res,
      inferReference(pngs, path.join(testModels, name, 'classifier.onnx'), 'resize'), 10, c * h * w);
    if (name === 'named') check(res.every((r) => r.name.startsWith('class-')), 'named model: the page shows its class names');
  }

  // 7. Classifiers made elsewhere, read from their input and outputs.
  const foreign = path.join(testModels, 'foreign');
  fs.mkdirSync(foreign, { recursive: true });
  for (const f of fs.readdirSync(foreignDir)) fs.copyFileSync(path.join(foreignDir, f), path.join(foreign, f));
  const colourNorm = '0.1,0.2,0.3,0.3,0.35,0.4'; // tests/foreign_models.py's COLOUR_MEAN, COLOUR_STD
  const forms = [
    ['logits', '', { layout: 'nchw', type: 'float32', output: 'logits', logits: true, batch: null }],
    ['mnist-12', '', { layout: 'nchw', type: 'float32', output: 'Plus214_Output_0', logits: true, batch: 1 }],
    ['nhwc', '', { layout: 'nhwc', type: 'float32', output: 'dense_2', logits: false, batch: null }],
    ['uint8', '', { layout: 'nchw', type: 'uint8', output: 'logits', logits: true, batch: null }],
    ['float16', '', { layout: 'nchw', type: 'float16', output: 'logits', logits: true, batch: null }],
    ['colour', `&normalize=${colourNorm}`, { layout: 'nchw', type: 'float32', output: 'logits', logits: true, batch: null }],
  ];
  for (const [name, query, want] of forms) {
    await page.goto(`${url}?models=.test-models/foreign/&model=${name}.onnx${query}`, { waitUntil: 'load' });
    const got = await page.evaluate(() => window.app.ready);
    const read = Object.fromEntries(Object.keys(want).map((k) => [k, got.contract[k]]));
    check(JSON.stringify(read) === JSON.stringify(want) && !got.autoencoder,
      `${name}: the page reads ${JSON.stringify(read)}, ${got.preprocess} [${got.shape}]`);
    const n = 12;
    const res = await page.evaluate(async (pixels, n) => {
      const out = [];
      for (let i = 0; i < n; i++) {
        const img = new ImageData(28, 28);
        for (let k = 0; k < 784; k++) img.data.set([pixels[i * 784 + k], pixels[i * 784 + k], pixels[i * 784 + k], 255], 4 * k);
        const r = await window.app.predict(img);
        const canvas = new OffscreenCanvas(28, 28);
        canvas.getContext('2d').putImageData(img, 0, 0);
        const blob = await canvas.convertToBlob({ type: 'image/png' });
        out.push({ pixels: r.pixels, probabilities: r.probabilities, best: r.best, name: r.name,
          png: Array.from(new Uint8Array(await blob.arrayBuffer())) });
      }
      return out;
    }, Array.from(mnist.pixels.subarray(0, 12 * 784)), n);
    const pngs = res.map((r, i) => {
      const f = path.join(tmp, `${name}-${String(i).padStart(2, '0')}.png`);
      fs.writeFileSync(f, Buffer.from(r.png));
      return f;
    });
    const extra = name === 'colour' ? ['--normalize', colourNorm] : [];
    const [c, h, w] = got.shape;
    compare(`${name}, ${n} MNIST pictures`, res, inferReference(pngs, path.join(foreign, `${name}.onnx`), got.preprocess, extra),
      10, c * h * w);
    if (name === 'nhwc') check(res.every((r) => r.name === ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'][r.best]),
      'nhwc: the page shows the class names of its Keras-style metadata');
  }
  const errorsBeforeRefusal = errors.length;
  await page.goto(`${url}?models=.test-models/foreign/&model=two.onnx`, { waitUntil: 'load' });
  await page.evaluate(() => window.app.ready.catch(() => null));
  const refused = await page.$eval('#description', (e) => e.textContent);
  check(/two\.onnx cannot run here: it has outputs logits \[N, 10\], features \[N, 84\], several of which could be the scores/.test(refused),
    `a model with two outputs is refused with the reason: "${refused}"`);
  errors.splice(errorsBeforeRefusal);

  fs.rmSync(testModels, { recursive: true, force: true });
  const errorsBefore404 = errors.length;
  await page.goto(`${url}?models=no-such-dir/`, { waitUntil: 'load' });
  await page.evaluate(() => window.app.ready.catch(() => null));
  const said = await page.$eval('#description', (e) => e.textContent);
  check(/could not be loaded: .*no-such-dir\/classifier\.onnx: HTTP 404/.test(said), `a missing model is said so: "${said}"`);
  errors.splice(errorsBefore404); // the 404's own errors are the point of that check; earlier ones stay

  // Back to the committed models for the offline check.
  await page.goto(url, { waitUntil: 'load' });
  await page.evaluate(() => window.app.ready);

  // 3. Offline: no server, no network; the page still reads a new drawing.
  server.kill();
  // Straight through the DevTools protocol: puppeteer's setOfflineMode speaks a newer
  // protocol revision than Debian's Chromium.
  const cdp = await page.createCDPSession();
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: true, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  await page.click('#clear');
  for (const s of shapes[2].strokes) await stroke(s);
  const offline = await page.evaluate(async () => {
    const res = await window.app.update(document.getElementById('pad').getContext('2d').getImageData(0, 0, 280, 280));
    return res.name;
  });
  check(offline === '7', `offline, with the server stopped: a drawn 7 is read as ${offline}`);
  check(errors.length === 0, `no errors in the page's console${errors.length ? `: ${errors.join(' | ')}` : ''}`);
  console.log(`web test: ${mnist.n} images in the page in ${pageSeconds.toFixed(1)} s; ` +
    `whole test ${((performance.now() - t0) / 1000).toFixed(1)} s; screenshot ${path.join(outDir, 'screenshot.png')}`);
} finally {
  clearTimeout(watchdog);
  await browser.close();
  server.kill();
  fs.rmSync(tmp, { recursive: true, force: true });
}
if (failures.length) {
  console.error(`web test: ${failures.length} check(s) failed`);
  process.exit(1);
}
