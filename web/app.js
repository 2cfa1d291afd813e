// The page: loads a classifier and its autoencoder with onnxruntime-web
// (WebAssembly) from models/ (or ?models=DIR/), reads from the ONNX files'
// metadata what they take — input shape, channels, the preprocessing they
// were made for (`preprocess`: mnist or resize), the normalisation their
// graph applies — and runs every picture, a drawing or a dropped file,
// through the same path as `infer classify --preprocess <that>`:
// RGBA → on white paper (gray or RGB) → MNIST's recipe or a plain resize →
// both models. A model it cannot serve is said so on the page. `window.app`
// exposes that path to the browser test.

import { lumaOnWhite, mnistStyle, resizeStyle, rgbOnWhite } from './preprocess.js';

const { ort, protobuf } = window;
// Plain static servers send no cross-origin isolation headers, so the
// threaded WebAssembly build cannot share memory: one thread, said outright.
ort.env.wasm.numThreads = 1;
ort.env.wasm.wasmPaths = new URL('node_modules/onnxruntime-web/dist/', document.baseURI).href;

// The two ModelProto fields the page reads (onnx.proto3: doc_string = 6,
// metadata_props = 14); protobufjs skips the rest, graph included.
const OnnxModel = protobuf.Root.fromJSON({
  nested: {
    ModelProto: {
      fields: {
        docString: { type: 'string', id: 6 },
        metadataProps: { rule: 'repeated', type: 'StringStringEntryProto', id: 14 },
      },
    },
    StringStringEntryProto: { fields: { key: { type: 'string', id: 1 }, value: { type: 'string', id: 2 } } },
  },
}).lookupType('ModelProto');

/** Fetches an ONNX model; returns its session, doc string and metadata map. */
async function loadModel(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const proto = OnnxModel.decode(bytes);
  const metadata = Object.fromEntries(proto.metadataProps.map((e) => [e.key, e.value]));
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] });
  return { session, doc: proto.docString, metadata };
}

// What the classifier takes, from its metadata: [C, H, W] and the recipe.
let [C, H, W] = [1, 28, 28];
let recipe = 'mnist';

/** The `input_shape` and `preprocess` a model's metadata names (older exports: from `model_config`). */
function inputOf(metadata) {
  let shape = metadata.input_shape && JSON.parse(metadata.input_shape);
  if (!shape && metadata.model_config) {
    const m = JSON.parse(metadata.model_config).model;
    const input = (m.encoder ?? m).input;
    shape = input && [input.channels, input.height, input.width];
  }
  shape = shape ?? [1, 28, 28];
  const fallback = shape.join() === '1,28,28' ? 'mnist' : 'resize';
  return { shape, preprocess: metadata.preprocess ?? fallback };
}

/** Why the page cannot serve a model with this input, or null. */
function unsupported({ shape: [c, h, w], preprocess }) {
  if (c !== 1 && c !== 3) return `it takes ${c}-channel pictures; the page handles gray (1) and RGB (3)`;
  if (!['mnist', 'resize'].includes(preprocess)) return `it asks for preprocessing "${preprocess}", which the page does not know`;
  if (preprocess === 'mnist' && c !== 1) return 'it asks for the MNIST recipe, which is for gray digits, but takes RGB';
  if (!(h > 0 && w > 0)) return `its input size ${h}×${w} is not a picture size`;
  return null;
}

/** Pixels [0, 255], planar → the models' input: [1, C, H, W] float32 in [0, 1], as `infer` feeds them (a graph that normalises does it inside). */
function tensorOf(pixels) {
  const x = new Float32Array(C * H * W);
  for (let i = 0; i < x.length; i++) x[i] = pixels[i] / 255;
  return new ort.Tensor('float32', x, [1, C, H, W]);
}

let classifier;
let autoencoder;
let classNames;

/**
 * The page's one path for any picture.
 * @param {ImageData} image  RGBA pixels of any size
 * @param {'auto'|'always'|'never'} invert  (default: auto for MNIST's recipe, never for a resize, as `infer`)
 */
async function predict(image, invert = recipe === 'mnist' ? 'auto' : 'never') {
  const gray = lumaOnWhite(image.data);
  const { pixels, inverted } = recipe === 'mnist'
    ? mnistStyle(gray, image.width, image.height, invert, H, W)
    : resizeStyle(C === 1 ? [gray] : rgbOnWhite(image.data), gray, image.width, image.height, invert, H, W);
  const x = tensorOf(pixels);
  const c = await classifier.session.run({ image: x });
  const probabilities = Array.from(c.probabilities.data);
  let reconstruction = null;
  let mse = null;
  if (autoencoder) {
    const a = await autoencoder.session.run({ image: x });
    reconstruction = Float32Array.from(a.reconstruction.data);
    mse = 0;
    for (let i = 0; i < reconstruction.length; i++) mse += (reconstruction[i] - x.data[i]) ** 2;
    mse /= reconstruction.length;
  }
  const best = probabilities.indexOf(Math.max(...probabilities));
  return { pixels: Array.from(pixels), inverted, probabilities, best, name: classNames[best], reconstruction, mse };
}

// ---- drawing ----------------------------------------------------------------

const pad = document.getElementById('pad');
const ctx = pad.getContext('2d', { willReadFrequently: true });

function clearPad() {
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, pad.width, pad.height);
}

function startStroke(e) {
  pad.setPointerCapture(e.pointerId);
  ctx.strokeStyle = '#000';
  ctx.lineWidth = 18;
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';
  ctx.beginPath();
  const [x, y] = padPoint(e);
  ctx.moveTo(x, y);
  ctx.lineTo(x, y);
  ctx.stroke();
  drawing = true;
}

let drawing = false;
const padPoint = (e) => {
  const r = pad.getBoundingClientRect();
  return [((e.clientX - r.left) * pad.width) / r.width, ((e.clientY - r.top) * pad.height) / r.height];
};

pad.addEventListener('pointerdown', startStroke);
pad.addEventListener('pointermove', (e) => {
  if (!drawing) return;
  const [x, y] = padPoint(e);
  ctx.lineTo(x, y);
  ctx.stroke();
});
for (const type of ['pointerup', 'pointercancel']) {
  pad.addEventListener(type, () => {
    if (!drawing) return;
    drawing = false;
    update(ctx.getImageData(0, 0, pad.width, pad.height));
  });
}
document.getElementById('clear').addEventListener('click', () => {
  clearPad();
  show(null);
});

// ---- pictures from files ----------------------------------------------------

async function imageDataOf(file) {
  // Straight alpha and no colour management: the pixels the file holds, as
  // `infer`'s decoder reads them (premultiplying would round transparent
  // pixels).
  const bitmap = await createImageBitmap(file, { premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const c = canvas.getContext('2d');
  c.drawImage(bitmap, 0, 0);
  return c.getImageData(0, 0, bitmap.width, bitmap.height);
}

async function openFile(file) {
  if (!file) return;
  try {
    const image = await imageDataOf(file);
    clearPad();
    // Show the picture on the pad, scaled to fit, for reference.
    const s = Math.min(pad.width / image.width, pad.height / image.height);
    const bitmap = await createImageBitmap(image);
    ctx.drawImage(bitmap, 0, 0, image.width * s, image.height * s);
    update(image);
  } catch (err) {
    document.getElementById('prediction').textContent = `${file.name}: not a readable PNG or JPEG picture`;
  }
}

document.getElementById('file').addEventListener('change', (e) => openFile(e.target.files[0]));
document.addEventListener('dragover', (e) => {
  e.preventDefault();
  document.body.classList.add('dragging');
});
document.addEventListener('dragleave', () => document.body.classList.remove('dragging'));
document.addEventListener('drop', (e) => {
  e.preventDefault();
  document.body.classList.remove('dragging');
  openFile(e.dataTransfer.files[0]);
});

// ---- showing results ----------------------------------------------------------

/** Planar [C, H, W] values × scale as a picture on a canvas of the model's size. */
function paint(canvasId, values, scale) {
  const canvas = document.getElementById(canvasId);
  [canvas.width, canvas.height] = [W, H];
  const c = canvas.getContext('2d');
  const img = c.createImageData(W, H);
  const level = (ch, i) => Math.round(Math.min(Math.max(values[ch * H * W + i] * scale, 0), 255));
  for (let i = 0; i < H * W; i++) {
    const [r, g, b] = C === 3 ? [level(0, i), level(1, i), level(2, i)] : [level(0, i), level(0, i), level(0, i)];
    img.data.set([r, g, b, 255], 4 * i);
  }
  c.putImageData(img, 0, 0);
}

function show(result) {
  const bars = document.getElementById('bars');
  bars.replaceChildren();
  if (!result) {
    document.getElementById('prediction').innerHTML = '&nbsp;';
    document.getElementById('mse').textContent = '';
    paint('input', new Array(C * H * W).fill(0), 1);
    paint('reconstruction', new Array(C * H * W).fill(0), 1);
    return;
  }
  const p = result.probabilities[result.best];
  document.getElementById('prediction').textContent = `${result.name} (${(p * 100).toFixed(1)} %)`;
  result.probabilities.forEach((q, k) => {
    const label = document.createElement('span');
    label.textContent = classNames[k];
    const track = document.createElement('div');
    const bar = document.createElement('div');
    bar.className = k === result.best ? 'bar top' : 'bar';
    bar.style.width = `${Math.max(q * 100, 0.5)}%`;
    track.append(bar);
    const value = document.createElement('span');
    value.className = 'p';
    value.textContent = `${(q * 100).toFixed(1)} %`;
    bars.append(label, track, value);
  });
  paint('input', result.pixels, 1);
  if (result.reconstruction) paint('reconstruction', result.reconstruction, 255);
  const mse = result.mse === null ? 'no autoencoder for this model' : `reconstruction MSE ${result.mse.toFixed(4)}`;
  document.getElementById('mse').textContent = `${mse}${result.inverted ? ' · picture inverted (light background)' : ''}`;
}

let last = Promise.resolve();
function update(image) {
  // One prediction at a time, in order: a fast drawer never sees an older result last.
  last = last.then(() => predict(image)).then((r) => {
    window.app.lastResult = r;
    show(r);
    return r;
  });
  return last;
}

// ---- start ------------------------------------------------------------------

async function start() {
  clearPad();
  // ?models=DIR/ serves another export (Fashion-MNIST, colour); models/ by default.
  let dir = new URLSearchParams(location.search).get('models') ?? 'models/';
  if (!dir.endsWith('/')) dir += '/';
  classifier = await loadModel(`${dir}classifier.onnx`);
  const input = inputOf(classifier.metadata);
  const why = unsupported(input);
  if (why) throw new Error(`${dir}classifier.onnx cannot run here: ${why}`);
  [[C, H, W], recipe] = [input.shape, input.preprocess];
  // The reconstruction panel needs an autoencoder of the same input.
  autoencoder = await loadModel(`${dir}autoencoder.onnx`).catch(() => null);
  if (autoencoder && inputOf(autoencoder.metadata).shape.join() !== input.shape.join()) autoencoder = null;
  document.querySelector('.seen figure:nth-child(2)').hidden = !autoencoder;
  const classes = classifier.session.outputMetadata?.find?.((m) => m.name === 'probabilities');
  classNames = JSON.parse(classifier.metadata.class_names ?? 'null') ??
    Array.from({ length: classes?.shape?.[1] ?? 10 }, (_, k) => String(k));
  const digits = recipe === 'mnist';
  document.querySelector('h1').textContent = digits ? 'Draw a digit' : `Show a picture: ${classNames.join(', ')}`;
  document.getElementById('input').nextElementSibling.textContent =
    `model input (${C === 3 ? 'RGB ' : ''}${H}×${W}, ${digits ? "MNIST's recipe" : 'resized'})`;
  document.getElementById('description').textContent = classifier.doc;
  const m = classifier.metadata;
  const facts = [
    m.test_accuracy && `test accuracy ${Number(m.test_accuracy).toFixed(4)}`,
    m.dataset_images && `trained on ${m.dataset_images} images`,
    m.dataset_sha256 && `data SHA-256 ${m.dataset_sha256.slice(0, 12)}…`,
    m.producer && `made by ${m.producer}`,
    `onnxruntime-web ${ort.env.versions?.web ?? ''} (WebAssembly, on this device)`,
  ].filter(Boolean);
  document.getElementById('provenance').textContent = facts.join(' · ');
  show(null);
  return {
    classNames,
    doc: classifier.doc,
    metadata: classifier.metadata,
    shape: [C, H, W],
    preprocess: recipe,
    autoencoder: Boolean(autoencoder),
  };
}

window.app = {
  ready: start().catch((err) => {
    document.getElementById('description').textContent = `The models could not be loaded: ${err.message}`;
    document.querySelector('h1').textContent = 'This model cannot run on this page';
    throw err;
  }),
  predict,
  update,
  lastResult: null,
};
