// Binary codecs: the browser half of src/nni_widget/widget/_codec.py.
// An array travels as {dtype, shape, encoding: "shuffle-deflate"} plus one buffer: its little-endian
// bytes regrouped by byte position, then zlib-deflated. DecompressionStream is built into browsers.

const ITEMSIZE = { uint8: 1, uint16: 2, int16: 2, float32: 4 };

export function asBytes(buf) {
  if (buf instanceof Uint8Array) return buf;
  if (ArrayBuffer.isView(buf)) return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  return new Uint8Array(buf);
}

export async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Decode one array; returns {data: TypedArray, shape}. */
export async function decodeArray(header, buffer) {
  if (header.encoding !== "shuffle-deflate") throw new Error(`unknown encoding ${header.encoding}`);
  const size = ITEMSIZE[header.dtype];
  if (!size) throw new Error(`unknown dtype ${header.dtype}`);
  const n = header.shape.reduce((a, b) => a * b, 1);
  const raw = await inflate(asBytes(buffer));
  if (raw.length !== n * size) throw new Error(`buffer holds ${raw.length} bytes, expected ${n * size}`);
  const out = new Uint8Array(n * size);
  for (let b = 0; b < size; b++) {
    const base = b * n;
    for (let i = 0; i < n; i++) out[i * size + b] = raw[base + i];
  }
  const Ctor = { uint8: Uint8Array, uint16: Uint16Array, int16: Int16Array, float32: Float32Array }[header.dtype];
  return { data: new Ctor(out.buffer), shape: header.shape };
}
