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
//
// usage: node test/browser.mjs INFER_BINARY MNIST_DIR OUT_DIR   (from web/)
// env: CHROMIUM (default /usr/bin/chromium), WEB_IMAGES (default 300)

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

const [inferBin, mnistDir, outDir] = process.argv.slice(2);
if (!inferBin || !mnistDir || !outDir) {
  console.error('usage: node test/browser.mjs INFER_BINARY MNIST_DIR OUT_DIR');
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

/** `infer classify --preprocess mnist` on `images`: the model inputs (u8) and probabilities. */
function inferReference(images) {
  const [x, p] = [path.join(tmp, `x-${Math.random()}.npy`), path.join(tmp, `p-${Math.random()}.npy`)];
  execFileSync(inferBin, ['classify', '--model', path.join(models, 'classifier.onnx'), '--images', ...images,
    '--preprocess', 'mnist', '--inputs', x, '--probabilities', p, '--quiet', '--device', 'cpu'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const inputs = readNpy(x);
  return {
    pixels: Array.from(inputs.data, (v) => Math.round(v * 255)),
    probabilities: readNpy(p).data,
  };
}

function compare(label, page, ref, classes) {
  let pixelDiffs = 0;
  let maxDiff = 0;
  let sameClass = 0;
  page.forEach((r, i) => {
    for (let k = 0; k < 784; k++) if (r.pixels[k] !== ref.pixels[i * 784 + k]) pixelDiffs++;
    const refP = ref.probabilities.subarray(i * classes, (i + 1) * classes);
    r.probabilities.forEach((q, k) => (maxDiff = Math.max(maxDiff, Math.abs(q - refP[k]))));
    if (r.best === refP.indexOf(Math.max(...refP))) sameClass++;
  });
  check(pixelDiffs === 0, `${label}: the page's 28×28 inputs equal infer's (${pixelDiffs} of ${page.length * 784} pixels differ)`);
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

  // 4. The README's screenshot: a drawn 3.
  await page.screenshot({ path: path.join(outDir, 'screenshot.png') });

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
