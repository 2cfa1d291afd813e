// The page: loads a classifier and its autoencoder with onnxruntime-web
// (WebAssembly) from models/ (or ?models=DIR/, and ?model=FILE for a
// classifier of another name), reads what they take as `infer classify`
// does — ours from their metadata (input shape, channels, the
// preprocessing they were made for: mnist or resize); a model made
// elsewhere from its input and outputs (float32, float16 or uint8, channels
// first or last, a fixed batch, the one [N, K] output, a final Softmax or
// logits, class names in its metadata) — and runs every picture, a drawing
// or a dropped file, through the same path as `infer classify --preprocess
// <that>`: RGBA → on white paper (gray or RGB) → MNIST's recipe or a plain
// resize → both models. A model it cannot read is said so on the page, with
// why. `window.app` exposes that path to the browser test.

import { lumaOnWhite, mnistStyle, resizeStyle, rgbOnWhite } from './preprocess.js';

const { ort, protobuf } = window;
// Plain static servers send no cross-origin isolation headers, so the
// threaded WebAssembly build cannot share memory: one thread, said outright.
ort.env.wasm.numThreads = 1;
ort.env.wasm.wasmPaths = new URL('node_modules/onnxruntime-web/dist/', document.baseURI).href;

// The ModelProto fields the page reads (onnx.proto3: doc_string = 6,
// metadata_props = 14, and of the graph's nodes their inputs, outputs and
// operator, to find a final Softmax); protobufjs skips the rest, weights
// included.
const OnnxModel = protobuf.Root.fromJSON({
  nested: {
    ModelProto: {
      fields: {
        docString: { type: 'string', id: 6 },
        graph: { type: 'GraphProto', id: 7 },
        metadataProps: { rule: 'repeated', type: 'StringStringEntryProto', id: 14 },
      },
    },
    GraphProto: { fields: { node: { rule: 'repeated', type: 'NodeProto', id: 1 } } },
    NodeProto: {
      fields: {
        input: { rule: 'repeated', type: 'string', id: 1 },
        output: { rule: 'repeated', type: 'string', id: 2 },
        opType: { type: 'string', id: 4 },
      },
    },
    StringStringEntryProto: { fields: { key: { type: 'string', id: 1 }, value: { type: 'string', id: 2 } } },
  },
}).lookupType('ModelProto');

/** Fetches an ONNX model; returns its session, doc string, metadata map and graph nodes. */
async function loadModel(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const proto = OnnxModel.decode(bytes);
  const metadata = Object.fromEntries(proto.metadataProps.map((e) => [e.key, e.value]));
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] });
  return { session, doc: proto.docString, metadata, nodes: proto.graph?.node ?? [] };
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

/** Pixels [0, 255], planar → [1, C, H, W] float32 in [0, 1], as `infer` feeds them (a graph that normalises does it inside). */
function tensorOf(pixels) {
  const x = new Float32Array(C * H * W);
  for (let i = 0; i < x.length; i++) x[i] = pixels[i] / 255;
  return new ort.Tensor('float32', x, [1, C, H, W]);
}

// ---- a classifier's contract, read as `infer` reads it (contract.rs, session.rs) --

// Operators that only reshape or pass a value on: the Softmax may sit behind them.
const PASS_THROUGH = ['Identity', 'Reshape', 'Flatten', 'Squeeze', 'Unsqueeze', 'Cast'];

/** The operator that makes `output`, looking through shape-only ones. */
function finalOp(nodes, output) {
  let name = output;
  for (let i = 0; i < 8; i++) {
    const node = nodes.find((n) => n.output.includes(name));
    if (!node) return null;
    if (!PASS_THROUGH.includes(node.opType)) return node.opType;
    name = node.input[0];
  }
  return null;
}

/** Class names under `class_names`, `classes`, `labels` or `class_labels`: a JSON list, an index → name object, or comma-separated; only exactly `k` count. */
function metadataNames(metadata, k) {
  for (const key of ['class_names', 'classes', 'labels', 'class_labels']) {
    const text = metadata[key];
    if (text === undefined) continue;
    let names;
    try {
      const v = JSON.parse(text);
      names = Array.isArray(v) ? v : Array.from({ length: k }, (_, i) => v?.[String(i)]);
    } catch {
      names = text.split(',').map((n) => n.trim());
    }
    if (names.length === k && names.every((n) => typeof n === 'string' && n !== '')) return names;
  }
  return null;
}

const describeDims = (shape) => `[${shape.map((d) => (typeof d === 'number' ? d : 'N')).join(', ')}]`;

/**
 * What a classifier takes and gives: { input, type, layout, shape: [C, H, W], batch, output, logits, names };
 * throws an Error saying why when the page cannot read it.
 */
function contractOf(model) {
  const { session, metadata, nodes } = model;
  const inputs = session.inputMetadata;
  if (inputs.length !== 1) {
    return fail(`it has ${inputs.length} inputs (${inputs.map((i) => i.name).join(', ')}); the page feeds one image input`);
  }
  const [input] = inputs;
  if (!['float32', 'float16', 'uint8'].includes(input.type)) {
    return fail(`its input ${input.name} is ${input.type}; the page feeds float32, float16 or uint8 pictures`);
  }
  const dims = input.shape;
  const fixed = (d) => typeof d === 'number' && d > 0;
  const channel = (d) => d === 1 || d === 3;
  let layout;
  if (dims.length === 4 && channel(dims[1]) && fixed(dims[2]) && fixed(dims[3])) layout = 'nchw';
  else if (dims.length === 4 && fixed(dims[1]) && fixed(dims[2]) && channel(dims[3])) layout = 'nhwc';
  else {
    return fail(`its input ${input.name} has shape ${describeDims(dims)}; the page feeds [batch, C, H, W] or ` +
      '[batch, H, W, C] pictures with C = 1 or 3');
  }
  const shape = layout === 'nchw' ? dims.slice(1) : [dims[3], dims[1], dims[2]];
  const batch = fixed(dims[0]) ? dims[0] : null;
  const outputs = session.outputMetadata;
  const width = (o) => {
    if (o.shape.length === 2 && fixed(o.shape[1])) return o.shape[1];
    if (o.shape.length === 1 && fixed(o.shape[0]) && batch === 1) return o.shape[0];
    return null;
  };
  const ours = outputs.find((o) => o.name === 'probabilities');
  const fitting = ours ? [ours] : outputs.filter((o) => width(o) !== null);
  const have = outputs.map((o) => `${o.name} ${describeDims(o.shape)}`).join(', ');
  if (fitting.length === 0) return fail(`it has outputs ${have}, none of them [batch, classes]`);
  if (fitting.length > 1) {
    return fail(`it has outputs ${have}, several of which could be the scores; infer classify --output chooses, ` +
      'the page does not');
  }
  const [output] = fitting;
  const k = width(output) ?? 10;
  const logits = output.name !== 'probabilities' && finalOp(nodes, output.name) !== 'Softmax';
  const names = metadataNames(metadata, k) ?? Array.from({ length: k }, (_, i) => String(i));
  return { input: input.name, type: input.type, layout, shape, batch, output: output.name, logits, names };

  function fail(why) {
    throw new Error(why);
  }
}

/** float32 → IEEE half bits, rounded to nearest even (as ONNX Runtime's cast). */
function halfBits(value) {
  const f = new Float32Array([value]);
  const x = new Uint32Array(f.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let m = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && (m & 1))) m++;
    return sign | m;
  }
  let m = mant >>> 13;
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (m & 1))) {
    m++;
    if (m === 0x400) [m, e] = [0, e + 1];
  }
  return e >= 0x1f ? sign | 0x7c00 : sign | (e << 10) | m;
}

/** IEEE half bits → number. */
function fromHalf(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/**
 * `?normalize=` as `infer --normalize` takes it: none, imagenet, MEAN,STD or C means then C stds;
 * [means, stds] or null. Throws on anything else.
 */
function parseNormalize(spec, channels) {
  if (spec === null || spec === 'none') return null;
  if (spec === 'imagenet') return [[0.485, 0.456, 0.406], [0.229, 0.224, 0.225]];
  const values = spec.split(',').map(Number);
  const half = values.length / 2;
  if (values.some((v) => !Number.isFinite(v)) || !(half === 1 || half === channels)) {
    throw new Error(`?normalize=${spec}: expected none, imagenet, MEAN,STD or ${channels} means then ${channels} stds`);
  }
  if (values.slice(half).some((v) => !(v > 0))) throw new Error(`?normalize=${spec}: a standard deviation must be above 0`);
  return [values.slice(0, half).map(Math.fround), values.slice(half).map(Math.fround)];
}

/** The picture ([1, C, H, W] float32 in [0, 1]) as the classifier's input: its layout, its type, its batch. */
function classifierInput(x) {
  const { type, layout, batch, normalize } = contract;
  const per = C * H * W;
  const rows = batch ?? 1;
  const values = new Float32Array(rows * per); // rows after the first: padding, their scores dropped
  for (let ch = 0; ch < C; ch++) {
    const [mean, std] = normalize ? normalize.map((v) => v[v.length === 1 ? 0 : ch]) : [0, 1];
    for (let p = 0; p < H * W; p++) {
      values[layout === 'nchw' ? ch * H * W + p : p * C + ch] = Math.fround(Math.fround(x.data[ch * H * W + p] - mean) / std);
    }
  }
  const dims = layout === 'nchw' ? [rows, C, H, W] : [rows, H, W, C];
  if (type === 'uint8') return new ort.Tensor('uint8', Uint8Array.from(values, (v) => Math.min(Math.max(Math.round(v * 255), 0), 255)), dims);
  if (type === 'float16') return new ort.Tensor('float16', Uint16Array.from(values, halfBits), dims);
  return new ort.Tensor('float32', values, dims);
}

/** The first row of the classifier's scores, as probabilities (softmax of logits in float64, as `infer`). */
function probabilitiesOf(tensor) {
  const raw = tensor.type === 'float16' && tensor.data instanceof Uint16Array ? Array.from(tensor.data, fromHalf) : Array.from(tensor.data);
  const row = raw.slice(0, contract.names.length);
  if (!contract.logits) return row;
  const max = Math.max(...row);
  const exps = row.map((v) => Math.exp(Math.fround(v - max)));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => Math.fround(e / sum));
}

let classifier;
let contract;
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
  const c = await classifier.session.run({ [contract.input]: classifierInput(x) });
  const probabilities = probabilitiesOf(c[contract.output]);
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
  const query = new URLSearchParams(location.search);
  let dir = query.get('models') ?? 'models/';
  if (!dir.endsWith('/')) dir += '/';
  const file = `${dir}${query.get('model') ?? 'classifier.onnx'}`;
  classifier = await loadModel(file);
  try {
    contract = contractOf(classifier);
    contract.normalize = parseNormalize(query.get('normalize'), contract.shape[0]);
    if (contract.normalize && contract.type === 'uint8') throw new Error('?normalize= applies to float inputs; this one takes uint8 pixels');
  } catch (err) {
    throw new Error(`${file} cannot run here: ${err.message}`);
  }
  // Ours name their input's shape and recipe in their metadata; others
  // are read from their input (MNIST's recipe for 1×28×28, else a resize).
  const ours = Boolean(classifier.metadata.input_shape || classifier.metadata.model_config);
  const input = ours
    ? inputOf(classifier.metadata)
    : { shape: contract.shape, preprocess: classifier.metadata.preprocess ?? (contract.shape.join() === '1,28,28' ? 'mnist' : 'resize') };
  const why = unsupported(input);
  if (why) throw new Error(`${file} cannot run here: ${why}`);
  [[C, H, W], recipe] = [input.shape, input.preprocess];
  // The reconstruction panel: this toolchain's autoencoder of the same input.
  autoencoder = ours ? await loadModel(`${dir}autoencoder.onnx`).catch(() => null) : null;
  if (autoencoder && inputOf(autoencoder.metadata).shape.join() !== input.shape.join()) autoencoder = null;
  document.querySelector('.seen figure:nth-child(2)').hidden = !autoencoder;
  classNames = contract.names;
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
    contract,
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
