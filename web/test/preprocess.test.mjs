// The preprocessing contract, without a browser: every picture in the
// golden file (fixtures/preprocess/golden.json, written and checked by the
// Rust side's `cargo test -p ae-core`) through preprocess.js must give the
// committed bytes. A drift on either side fails here or there.
//
// usage (from web/): node --test test/preprocess.test.mjs

import assert from 'node:assert/strict';
import fs from 'node:fs';
import test from 'node:test';
import { fileURLToPath } from 'node:url';
import { lumaOnWhite, mnistStyle, resizeStyle, rgbOnWhite } from '../preprocess.js';

const golden = JSON.parse(fs.readFileSync(fileURLToPath(new URL('../../fixtures/preprocess/golden.json', import.meta.url))));
const bytes = (hex) => Uint8Array.from(hex.match(/../g), (b) => parseInt(b, 16));

/** The page's path for one picture and recipe (app.js's `predict`, without the models). */
function fit({ width, height, rgba, channels, out_height: h, out_width: w, fit: recipe, invert }) {
  const pixels = bytes(rgba);
  const gray = lumaOnWhite(pixels);
  if (recipe === 'mnist') return mnistStyle(gray, width, height, invert, h, w).pixels;
  if (recipe === 'resize') return resizeStyle(channels === 1 ? [gray] : rgbOnWhite(pixels), gray, width, height, invert, h, w).pixels;
  throw new Error(`recipe ${recipe} is not the page's`);
}

test('the golden file has every recipe the page runs', () => {
  assert.ok(golden.length >= 8);
  assert.deepEqual(new Set(golden.map((g) => g.fit)), new Set(['mnist', 'resize']));
  assert.ok(golden.some((g) => g.channels === 3));
});

for (const g of golden) {
  test(`${g.case} → ${g.fit}, ${g.channels}×${g.out_height}×${g.out_width}, invert ${g.invert}`, () => {
    const got = fit(g);
    const want = bytes(g.expected);
    assert.equal(got.length, want.length);
    const differ = want.filter((v, i) => got[i] !== v).length;
    assert.equal(differ, 0, `${differ} of ${want.length} bytes differ from the golden file`);
  });
}
