import assert from "node:assert/strict";
import test from "node:test";
import { asBytes, decodeArray, inflate } from "../codec.js";
import { buffer, bytes, manifest, needsFixtures } from "./fixtures.js";

const CTORS = { uint8: Uint8Array, uint16: Uint16Array, int16: Int16Array, float32: Float32Array };

async function deflate(raw) {
  const stream = new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** A JS twin of _codec.encode: the array's little-endian bytes grouped by byte position, then deflated. */
async function encode(typed, shape, dtype) {
  const raw = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
  const size = typed.BYTES_PER_ELEMENT;
  const n = typed.length;
  const shuffled = new Uint8Array(raw.length);
  for (let i = 0; i < n; i++) for (let b = 0; b < size; b++) shuffled[b * n + i] = raw[i * size + b];
  return { header: { dtype, shape, encoding: "shuffle-deflate" }, buffer: await deflate(shuffled) };
}

const viewBytes = (a) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

test("asBytes views the same bytes of an ArrayBuffer, a typed array or a DataView, without copying", () => {
  const base = new ArrayBuffer(16);
  new Uint8Array(base).forEach((_, i, a) => {
    a[i] = i;
  });
  assert.deepEqual([...asBytes(base)], [...Array(16).keys()]);
  const u8 = new Uint8Array(base, 3, 5);
  assert.equal(asBytes(u8), u8);
  const dv = asBytes(new DataView(base, 4, 6));
  assert.deepEqual([...dv], [4, 5, 6, 7, 8, 9]);
  assert.equal(dv.buffer, base);
  assert.deepEqual([...asBytes(new Uint16Array(base, 2, 2))], [2, 3, 4, 5]);
});

test("inflate undoes zlib deflate", async () => {
  const raw = new TextEncoder().encode("shuffle-deflate ".repeat(1000));
  const packed = await deflate(raw);
  assert.ok(packed.length < raw.length / 10);
  assert.deepEqual(await inflate(packed), raw);
});

test("decodeArray undoes the byte shuffle for every dtype", async () => {
  const n = 257;
  const cases = {
    uint8: Uint8Array.from({ length: n }, (_, i) => (i * 37) & 255),
    uint16: Uint16Array.from({ length: n }, (_, i) => (i * 2654435761) & 65535),
    int16: Int16Array.from({ length: n }, (_, i) => ((i * 40503) & 65535) - 32768),
    float32: Float32Array.from({ length: n }, (_, i) => (i - 128) * 0.37),
  };
  for (const [dtype, values] of Object.entries(cases)) {
    const { header, buffer } = await encode(values, [n], dtype);
    const { data, shape } = await decodeArray(header, buffer);
    assert.ok(data instanceof CTORS[dtype], dtype);
    assert.deepEqual(shape, [n]);
    assert.deepEqual(data, values, dtype);
  }
});

test("decodeArray reads a multi-dimensional array in C order from a DataView inside a larger buffer", async () => {
  const values = Int16Array.from({ length: 2 * 3 * 4 }, (_, i) => i * 1000 - 12000);
  const { header, buffer } = await encode(values, [2, 3, 4], "int16");
  const padded = new Uint8Array(buffer.length + 9);
  padded.set(buffer, 5);
  const { data, shape } = await decodeArray(header, new DataView(padded.buffer, 5, buffer.length));
  assert.deepEqual(shape, [2, 3, 4]);
  assert.deepEqual(data, values);
  assert.equal(data.byteOffset, 0); // a fresh, aligned buffer
});

test("decodeArray of an empty array (an empty label map) gives an empty typed array", async () => {
  const { header, buffer } = await encode(new Uint16Array(0), [0, 0, 0], "uint16");
  const { data, shape } = await decodeArray(header, buffer);
  assert.ok(data instanceof Uint16Array);
  assert.equal(data.length, 0);
  assert.deepEqual(shape, [0, 0, 0]);
});

test("decodeArray rejects an unknown encoding or dtype, a size that disagrees with the shape, corrupt data", async () => {
  const { header, buffer } = await encode(Uint16Array.of(1, 2, 3, 4, 5, 6), [2, 3], "uint16");
  await assert.rejects(decodeArray({ ...header, encoding: "raw" }, buffer), /unknown encoding raw/);
  await assert.rejects(decodeArray({ ...header, dtype: "int64" }, buffer), /unknown dtype int64/);
  await assert.rejects(decodeArray({ ...header, shape: [2, 4] }, buffer), /buffer holds 12 bytes, expected 16/);
  await assert.rejects(decodeArray(header, buffer.subarray(0, buffer.length - 3)));
  await assert.rejects(decodeArray(header, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8)));
});

test("decodeArray reproduces every array encoded by nni_widget.widget._codec.encode", needsFixtures, async (t) => {
  const cases = manifest().codec;
  assert.ok(cases.length >= 10);
  for (const c of cases) {
    await t.test(c.name, async () => {
      const { data, shape } = await decodeArray(c.header, buffer(c.buffer));
      assert.ok(data instanceof CTORS[c.header.dtype], `${c.header.dtype} -> ${data.constructor.name}`);
      assert.deepEqual(shape, c.header.shape);
      assert.equal(data.length, c.size);
      // byte for byte (NaN, -0 and subnormals included): the array's little-endian bytes in C order
      assert.deepEqual(viewBytes(data), bytes(c.expected));
    });
  }
});
