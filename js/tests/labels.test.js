import assert from "node:assert/strict";
import test from "node:test";
import { decodeArray } from "../codec.js";
import { colorTable, hexToRgb, LabelStore, previewSlice } from "../labels.js";
import { buffer, bytes, manifest, needsFixtures } from "./fixtures.js";

/** A dense (Z, Y, X) label volume with the same paste, to check the store against. */
function dense(shape) {
  return { shape, data: new Uint16Array(shape[0] * shape[1] * shape[2]) };
}

function densePaste(vol, bounds, data) {
  const [[z0, z1], [y0, y1], [x0, x1]] = bounds;
  const [, Y, X] = vol.shape;
  let k = 0;
  for (let z = z0; z < z1; z++)
    for (let y = y0; y < y1; y++)
      for (let x = x0; x < x1; x++) {
        vol.data[(z * Y + y) * X + x] = data[k++];
      }
}

/** Slice `index` along `axis` of a dense volume as (rows x cols), rows and cols the other axes in (z, y, x) order. */
function denseSlice(vol, axis, index) {
  const [Z, Y, X] = vol.shape;
  const at = (z, y, x) => vol.data[(z * Y + y) * X + x];
  if (axis === 0) return Uint16Array.from({ length: Y * X }, (_, i) => at(index, Math.floor(i / X), i % X));
  if (axis === 1) return Uint16Array.from({ length: Z * X }, (_, i) => at(Math.floor(i / X), index, i % X));
  return Uint16Array.from({ length: Z * Y }, (_, i) => at(Math.floor(i / Y), i % Y, index));
}

/** The store holds exactly `vol`: voxel by voxel, and every slice along every axis (null only if all zero). */
function assertHolds(store, vol, what = "") {
  const [Z, Y, X] = vol.shape;
  const got = new Uint16Array(vol.data.length);
  for (let z = 0; z < Z; z++)
    for (let y = 0; y < Y; y++)
      for (let x = 0; x < X; x++) {
        got[(z * Y + y) * X + x] = store.get(z, y, x);
      }
  assert.deepEqual(got, vol.data, `${what} voxels`);
  for (let axis = 0; axis < 3; axis++) {
    for (let index = 0; index < vol.shape[axis]; index++) {
      const want = denseSlice(vol, axis, index);
      const s = store.slice(axis, index);
      if (s === null)
        assert.ok(
          want.every((v) => v === 0),
          `${what} slice ${axis}:${index} is null but labelled`,
        );
      else assert.deepEqual(s, want, `${what} slice ${axis}:${index}`);
    }
  }
}

test("a new store is empty and allocates nothing", () => {
  const store = new LabelStore([4, 5, 6]);
  assert.equal(store.get(3, 4, 5), 0);
  assert.ok(store.slabs.every((s) => s === null));
  for (let axis = 0; axis < 3; axis++) assert.equal(store.slice(axis, 1), null);
});

test("paste writes a block at its bounds; get and the slices of all three axes read it back", () => {
  const shape = [3, 4, 5];
  const store = new LabelStore(shape);
  const vol = dense(shape);
  const bounds = [
    [1, 3],
    [1, 3],
    [2, 5],
  ];
  const data = Uint16Array.from({ length: 2 * 2 * 3 }, (_, i) => i + 1);
  store.paste(bounds, data);
  densePaste(vol, bounds, data);
  assertHolds(store, vol);
  assert.equal(store.get(1, 1, 2), 1);
  assert.equal(store.get(2, 2, 4), 12);
  assert.equal(store.slabs[0], null); // only the slabs the patch touched
  // coronal (fixed y): rows z, cols x; sagittal (fixed x): rows z, cols y
  assert.equal(store.slice(1, 2)[2 * 5 + 3], store.get(2, 2, 3));
  assert.equal(store.slice(2, 4)[1 * 4 + 2], store.get(1, 2, 4));
});

test("an all-zero patch allocates no slab but erases labels already there", () => {
  const shape = [4, 3, 3];
  const store = new LabelStore(shape);
  const vol = dense(shape);
  const ones = [
    [1, 2],
    [0, 3],
    [0, 3],
  ];
  store.paste(ones, new Uint16Array(9).fill(7));
  densePaste(vol, ones, new Uint16Array(9).fill(7));
  const zeros = [
    [0, 3],
    [1, 2],
    [0, 2],
  ];
  store.paste(zeros, new Uint16Array(6));
  densePaste(vol, zeros, new Uint16Array(6));
  assertHolds(store, vol);
  assert.equal(store.slabs[0], null);
  assert.equal(store.slabs[2], null);
  assert.equal(store.get(1, 1, 0), 0);
  assert.equal(store.get(1, 1, 2), 7);
});

test("labels above 255 survive (uint16), and clear empties the store", () => {
  const store = new LabelStore([2, 2, 2]);
  store.paste(
    [
      [0, 2],
      [0, 2],
      [0, 2],
    ],
    Uint16Array.of(0, 300, 65535, 1, 2, 3, 4, 5),
  );
  assert.equal(store.get(0, 0, 1), 300);
  assert.equal(store.get(0, 1, 0), 65535);
  store.clear();
  assert.ok(store.slabs.every((s) => s === null));
  assert.equal(store.get(0, 0, 1), 0);
});

test("random patches into a non-cubic volume agree with a dense copy", () => {
  const shape = [7, 5, 9];
  const store = new LabelStore(shape);
  const vol = dense(shape);
  let seed = 12345;
  const rand = (n) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  for (let step = 0; step < 40; step++) {
    const bounds = shape.map((n) => {
      const a = rand(n);
      return [a, a + 1 + rand(n - a)];
    });
    const size = bounds.reduce((p, [a, b]) => p * (b - a), 1);
    const sparse = rand(3) === 0; // some patches erase
    const data = Uint16Array.from({ length: size }, () => (sparse ? 0 : rand(4)));
    store.paste(bounds, data);
    densePaste(vol, bounds, data);
    assertHolds(store, vol, `step ${step}`);
  }
});

test("hexToRgb parses #rrggbb", () => {
  assert.deepEqual(hexToRgb("#e6194b"), [230, 25, 75]);
  assert.deepEqual(hexToRgb("#000000"), [0, 0, 0]);
  assert.deepEqual(hexToRgb("#FFFFFF"), [255, 255, 255]);
});

test("colorTable: label id i takes palette[(i - 1) % n] when indexed by i % n", () => {
  const palette = ["#ff0000", "#00ff00", "#0000ff"];
  const table = colorTable(palette);
  assert.deepEqual(table, [
    [0, 0, 255],
    [255, 0, 0],
    [0, 255, 0],
  ]);
  for (let id = 1; id <= 10; id++) assert.deepEqual(table[id % 3], hexToRgb(palette[(id - 1) % 3]));
});

test("the overlay colour of every object id is its swatch colour from the kernel's PALETTE", needsFixtures, () => {
  const palette = manifest().palette;
  assert.ok(palette.length >= 8);
  const table = colorTable(palette);
  for (const rgb of table) assert.ok(rgb.every((v) => Number.isInteger(v) && v >= 0 && v <= 255));
  // _annotator.py gives object i the swatch PALETTE[(i - 1) % len]; view.js draws label i in table[i % len]
  for (let id = 1; id <= 3 * palette.length; id++) {
    assert.deepEqual(table[id % table.length], hexToRgb(palette[(id - 1) % palette.length]), `id ${id}`);
  }
});

test("replaying the kernel's label messages reproduces its label map after every message", needsFixtures, async () => {
  const { shape, messages } = manifest().labels;
  assert.ok(messages.length >= 5);
  const store = new LabelStore(shape);
  for (const m of messages) {
    // what widget.js does with a "labels" (full map) or "patch" message
    const { data } = await decodeArray(m.header, buffer(m.buffer));
    if (m.kind === "labels") store.clear();
    if (data.length) store.paste(m.bounds, data);
    const expected = bytes(m.expected);
    const vol = { shape, data: new Uint16Array(expected.slice().buffer) }; // little-endian uint16, C order
    assertHolds(store, vol, `${m.kind} v${m.version} (${m.note})`);
  }
});

test("previewSlice cuts a preview's mask along every axis like a dense volume", () => {
  const shape = [5, 6, 7];
  const bounds = [
    [1, 4],
    [2, 6],
    [0, 5],
  ];
  const n = 3 * 4 * 5;
  const data = Uint8Array.from({ length: n }, (_, i) => (i * 7) % 3 === 0);
  const vol = dense(shape);
  densePaste(vol, bounds, data);
  for (let axis = 0; axis < 3; axis++) {
    for (let index = 0; index < shape[axis]; index++) {
      const got = previewSlice({ bounds, data, object: 1 }, shape, axis, index);
      if (index < bounds[axis][0] || index >= bounds[axis][1]) {
        assert.equal(got, null, `axis ${axis} index ${index}: outside the preview`);
      } else {
        assert.deepEqual(Array.from(got), Array.from(denseSlice(vol, axis, index)), `axis ${axis} index ${index}`);
      }
    }
  }
});
