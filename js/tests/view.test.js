// SliceView without a DOM: its geometry and its overlay rendering only read plain fields, so the tests
// build a view with Object.create, its DOM-free _geometry() and stand-ins for the canvas it renders to.
import assert from "node:assert/strict";
import test from "node:test";
import { colorTable, LabelStore } from "../labels.js";
import { SliceView } from "../view.js";

const close = (a, b, what) => assert.ok(Math.abs(a - b) < 1e-9, `${what}: ${a} != ${b}`);

/** A view of `axis` of a volume of `shape` and `spacing` on a W x H canvas, as the constructor sets it up. */
function makeView(axis, shape, spacing, { W = 300, H = 300, dpr = 1, host = null } = {}) {
  const v = Object.create(SliceView.prototype);
  v._geometry(axis, shape, spacing);
  v.dpr = dpr;
  v.canvas = { width: W, height: H };
  v.host = host;
  v.el = { dataset: {} };
  v.offCtx = { putImageData() {} };
  v.imageData = { data: new Uint8ClampedArray(v.rows * v.cols * 4) };
  return v;
}

test("canvasToVoxel inverts voxelToCanvas at any zoom, pan and device pixel ratio", () => {
  const v = makeView(1, [20, 30, 40], [2.5, 1, 0.8], { W: 420, H: 300 });
  for (const [zoom, panX, panY, dpr] of [
    [1, 0, 0, 1],
    [3.5, 17, -40, 2],
    [0.5, -3, 8, 1.25],
  ]) {
    Object.assign(v, { zoom, panX, panY, dpr });
    for (const [r, c] of [
      [0, 0],
      [19, 39],
      [7.25, 12.5],
      [-0.5, 40.2],
    ]) {
      const [x, y] = v.voxelToCanvas(r, c);
      const [r2, c2] = v.canvasToVoxel(x, y);
      close(r2, r, "row");
      close(c2, c, "col");
    }
  }
});

test("every view is flipped on both axes: higher rows go up, higher columns go left", () => {
  for (let axis = 0; axis < 3; axis++) {
    const v = makeView(axis, [10, 12, 14], [1, 1, 1]);
    const [x0, y0] = v.voxelToCanvas(0, 0);
    const [x1, y1] = v.voxelToCanvas(v.rows - 1, v.cols - 1);
    assert.ok(x0 > 150 && y0 > 150, `axis ${axis}: voxel (0, 0) in the bottom right`);
    assert.ok(x1 < 150 && y1 < 150, `axis ${axis}: the last voxel in the top left`);
  }
});

test("anisotropic voxels keep their physical aspect, fitted and centred in the canvas", () => {
  // sagittal view of (z, y, x) = (20, 40, 8) voxels of 3 x 1 x 1 mm: rows z (60 mm) x cols y (40 mm)
  const v = makeView(2, [20, 40, 8], [3, 1, 1]);
  const { px, py, ox, oy } = v._layout();
  close(py / px, 3, "pixels per row / pixels per column");
  close(py * v.rows, 300, "the taller side fills the canvas");
  close(ox, (300 - 40 * px) / 2, "centred horizontally");
  close(oy, 0, "top");
  // the image's corners: voxel edges at -0.5 and n - 0.5
  const [left, top] = v.voxelToCanvas(v.rows - 0.5, v.cols - 0.5);
  const [right, bottom] = v.voxelToCanvas(-0.5, -0.5);
  close(left, ox, "left edge");
  close(top, 0, "top edge");
  close(right, 300 - ox, "right edge");
  close(bottom, 300, "bottom edge");
});

test("zoom scales about the canvas centre and pan shifts by CSS pixels times the device pixel ratio", () => {
  const v = makeView(0, [5, 11, 11], [1, 1, 1], { dpr: 2 });
  const centre = v.voxelToCanvas(5, 5);
  v.zoom = 4;
  assert.deepEqual(v.voxelToCanvas(5, 5), centre);
  const [xa, ya] = v.voxelToCanvas(6, 6);
  const [xb, yb] = v.voxelToCanvas(5, 5);
  close(xb - xa, (4 * 300) / 11, "4x zoom");
  close(yb - ya, (4 * 300) / 11, "4x zoom");
  v.panX = 10;
  v.panY = -5;
  const [x, y] = v.voxelToCanvas(5, 5);
  close(x - centre[0], 20, "pan x");
  close(y - centre[1], -10, "pan y");
});

/** A host with one image slice, a label store, two object colours and the given display settings. */
function makeHost(shape, { image = null, position = [0, 0, 0], opacity = 0.5, outline = false, active = 1 } = {}) {
  const requested = [];
  const model = { position, opacity, outline, active_object: active };
  return {
    requested,
    model: { get: (name) => model[name] },
    images: { get: () => image },
    requestSlice: (axis, index) => requested.push(["slice", axis, index]),
    prefetch: (axis, index) => requested.push(["prefetch", axis, index]),
    grayLut: () => Uint8ClampedArray.from({ length: 65536 }, (_, code) => code),
    store: new LabelStore(shape),
    colorTable: () => colorTable(["#ff0000", "#0000ff"]),
    meta: { shape },
    preview: null,
  };
}

const blend = (g, col, a) => col.map((c) => Uint8ClampedArray.of(g + (c - g) * a)[0]);

test("render draws the grey image and blends labels: the active object at the opacity, others at 0.8 x", () => {
  const shape = [3, 2, 3];
  const image = Uint16Array.of(10, 20, 30, 40, 50, 60); // axial slice z = 0: rows y, cols x
  const host = makeHost(shape, { image });
  host.store.paste(
    [
      [0, 1],
      [0, 2],
      [0, 3],
    ],
    Uint16Array.of(0, 1, 0, 0, 2, 0),
  );
  const v = makeView(0, shape, [1, 1, 1], { host });
  v.render();
  assert.deepEqual(v.pixelAt(0, 0), [10, 10, 10, 255]);
  assert.deepEqual(v.pixelAt(1, 2), [60, 60, 60, 255]);
  assert.deepEqual(v.pixelAt(0, 1), [...blend(20, [255, 0, 0], 0.5), 255]); // object 1, active
  assert.deepEqual(v.pixelAt(1, 1), [...blend(50, [0, 0, 255], 0.4), 255]); // object 2
  // the image is stored flipped like the canvas: slice voxel (0, 0) is the bottom-right pixel
  assert.deepEqual([...v.imageData.data.slice(-4)], [10, 10, 10, 255]);
  assert.equal(v.el.dataset.loaded, "1");
  assert.equal(v.el.dataset.slice, "0");
  assert.deepEqual(host.requested, [["prefetch", 0, 0]]);
});

test("render without the image slice draws dark grey and asks the kernel for it", () => {
  const host = makeHost([4, 3, 3], { position: [2, 1, 1] });
  const v = makeView(0, [4, 3, 3], [1, 1, 1], { host });
  v.render();
  assert.deepEqual(v.pixelAt(1, 1), [24, 24, 24, 255]);
  assert.equal(v.el.dataset.loaded, "0");
  assert.deepEqual(host.requested, [
    ["slice", 0, 2],
    ["prefetch", 0, 2],
  ]);
});

test("outline mode colours only the boundary of each label, at full strength", () => {
  // a coronal view (fixed y = 2) of a 5 x 5 x 5 volume with a 3 x 3 block of label 1 at z, x in 1..3
  const shape = [5, 5, 5];
  const host = makeHost(shape, {
    image: new Uint16Array(25).fill(100),
    position: [0, 2, 0],
    opacity: 0.3,
    outline: true,
  });
  const block = [
    [1, 4],
    [2, 3],
    [1, 4],
  ];
  host.store.paste(block, new Uint16Array(9).fill(1));
  const v = makeView(1, shape, [1, 1, 1], { host });
  v.render();
  const red = [255, 0, 0, 255];
  const grey = [100, 100, 100, 255];
  for (let r = 0; r < 5; r++) {
    for (let c = 0; c < 5; c++) {
      const inBlock = r >= 1 && r <= 3 && c >= 1 && c <= 3;
      const centre = r === 2 && c === 2;
      assert.deepEqual(v.pixelAt(r, c), inBlock && !centre ? red : grey, `(${r}, ${c})`);
    }
  }
});

test("a coarse preview is drawn as a dotted outline in its object's colour over the labels", () => {
  // axial view (z = 0) of a 1 x 6 x 6 volume; the preview of object 2 is a 4 x 4 square at rows, cols 1..4
  const shape = [1, 6, 6];
  const host = makeHost(shape, { image: new Uint16Array(36).fill(100), opacity: 0.5 });
  host.preview = {
    bounds: [
      [0, 1],
      [1, 5],
      [1, 5],
    ],
    data: new Uint8Array(16).fill(1),
    object: 2,
  };
  const v = makeView(0, shape, [1, 1, 1], { host });
  v.render();
  const blue = [0, 0, 255, 255];
  const grey = [100, 100, 100, 255];
  for (let r = 0; r < 6; r++) {
    for (let c = 0; c < 6; c++) {
      const inside = r >= 1 && r <= 4 && c >= 1 && c <= 4;
      const edge = inside && (r === 1 || r === 4 || c === 1 || c === 4);
      const dot = edge && (r + c) % 2 === 0;
      assert.deepEqual(v.pixelAt(r, c), dot ? blue : grey, `(${r}, ${c})`);
    }
  }
  host.preview = null; // dropped when the refined patch has arrived
  v.render();
  assert.deepEqual(v.pixelAt(1, 1), grey);
});
