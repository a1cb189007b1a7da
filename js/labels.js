// The browser's copy of the label map, filled by patches from the kernel.
// Stored as one Uint16Array per axial slice, allocated only when a slice gets a label, so an empty or
// small segmentation of a large volume costs almost nothing. Also the label colours.

/** "#rrggbb" -> [r, g, b]. */
export function hexToRgb(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

/**
 * The overlay colours, indexed by label id modulo the palette's length: id i (1, 2, ...) takes
 * palette[(i - 1) % n] as in the kernel (PALETTE in _annotator.py: id 1 takes the first), so entry 0 is the
 * last palette colour (ids n, 2n, ...).
 */
export function colorTable(palette) {
  const pal = palette.map(hexToRgb);
  return pal.map((_, k) => pal[(k - 1 + pal.length) % pal.length]);
}

export class LabelStore {
  constructor(shape) {
    this.shape = shape;
    this.slabs = new Array(shape[0]).fill(null);
  }

  clear() {
    this.slabs.fill(null);
  }

  /** Replace the labels inside half-open bounds [[z0,z1],[y0,y1],[x0,x1]] with `data` (C order). */
  paste(bounds, data) {
    const [[z0, z1], [y0, y1], [x0, x1]] = bounds;
    const [, Y, X] = this.shape;
    const nx = x1 - x0;
    const ny = y1 - y0;
    let k = 0;
    for (let z = z0; z < z1; z++) {
      let slab = this.slabs[z];
      if (!slab) {
        let any = false;
        const end = k + ny * nx;
        for (let i = k; i < end; i++) {
          if (data[i]) {
            any = true;
            break;
          }
        }
        if (!any) {
          k = end;
          continue;
        }
        slab = this.slabs[z] = new Uint16Array(Y * X);
      }
      for (let y = y0; y < y1; y++) {
        slab.set(data.subarray(k, k + nx), y * X + x0);
        k += nx;
      }
    }
  }

  get(z, y, x) {
    const slab = this.slabs[z];
    return slab ? slab[y * this.shape[2] + x] : 0;
  }

  /** The labels of slice `index` along `axis` as a (rows x cols) Uint16Array, or null if empty. */
  slice(axis, index) {
    const [Z, Y, X] = this.shape;
    if (axis === 0) return this.slabs[index];
    if (axis === 1) {
      let out = null;
      for (let z = 0; z < Z; z++) {
        const slab = this.slabs[z];
        if (!slab) continue;
        out = out || new Uint16Array(Z * X);
        out.set(slab.subarray(index * X, index * X + X), z * X);
      }
      return out;
    }
    let out = null;
    for (let z = 0; z < Z; z++) {
      const slab = this.slabs[z];
      if (!slab) continue;
      out = out || new Uint16Array(Z * Y);
      for (let y = 0; y < Y; y++) out[z * Y + y] = slab[y * X + index];
    }
    return out;
  }
}

/**
 * A coarse preview (the kernel's "preview" message: one object's uint8 mask over half-open `bounds`)
 * cut along slice `index` of `axis`, as a (rows x cols) Uint8Array of the whole slice, or null when
 * the slice misses the preview's bounds.
 */
export function previewSlice(preview, shape, axis, index) {
  const { bounds, data } = preview;
  if (index < bounds[axis][0] || index >= bounds[axis][1]) return null;
  const [ra, ca] = [0, 1, 2].filter((a) => a !== axis);
  const cols = shape[ca];
  const out = new Uint8Array(shape[ra] * cols);
  const ext = bounds.map(([lo, hi]) => hi - lo);
  const stride = [ext[1] * ext[2], ext[2], 1];
  const fixed = (index - bounds[axis][0]) * stride[axis];
  for (let r = bounds[ra][0]; r < bounds[ra][1]; r++) {
    const base = fixed + (r - bounds[ra][0]) * stride[ra];
    for (let c = bounds[ca][0]; c < bounds[ca][1]; c++) {
      out[r * cols + c] = data[base + (c - bounds[ca][0]) * stride[ca]];
    }
  }
  return out;
}
