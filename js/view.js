// One orthogonal slice view: a canvas that shows slice `position[axis]` with window/level, the label
// overlay, the crosshair and orientation letters, and turns mouse gestures into strokes.
//
// Slice coordinates: (row, col) are the two remaining volume axes in (z, y, x) order, voxel centres at
// integers. The volume is RAS+ (x -> Right, y -> Anterior, z -> Superior) and every view is shown
// flipped on both axes: axial has Anterior up and the patient's Right on the left (radiological),
// coronal and sagittal have Superior up (sagittal: Anterior on the left).

import { previewSlice } from "./labels.js";

const AXIS_NAMES = ["axial", "coronal", "sagittal"];
const LETTERS = [
  { top: "A", bottom: "P", left: "R", right: "L" },
  { top: "S", bottom: "I", left: "R", right: "L" },
  { top: "S", bottom: "I", left: "A", right: "P" },
];

export class SliceView {
  /**
   * @param {number} axis  slicing axis: 0 axial (fixed z), 1 coronal (fixed y), 2 sagittal (fixed x)
   * @param {object} host  the widget: {model, meta, store, images, requestSlice, sendStroke, ...}
   */
  constructor(axis, host) {
    this.host = host;
    this._geometry(axis, host.meta.shape, host.meta.spacing);
    const shape = host.meta.shape;

    this.el = document.createElement("div");
    this.el.className = "nni-view";
    this.el.tabIndex = 0;
    this.el.dataset.axis = String(axis);
    this.title = document.createElement("div");
    this.title.className = "nni-view-title";
    this.canvas = document.createElement("canvas");
    this.canvas.className = "nni-canvas";
    this.slider = document.createElement("input");
    this.slider.type = "range";
    this.slider.min = "0";
    this.slider.max = String(shape[axis] - 1);
    this.slider.className = "nni-slider";
    this.slider.setAttribute("aria-label", `${AXIS_NAMES[axis]} slice`);
    this.el.append(this.title, this.canvas, this.slider);
    this.off = document.createElement("canvas");
    this.off.width = this.cols;
    this.off.height = this.rows;
    this.offCtx = this.off.getContext("2d");
    this.imageData = this.offCtx.createImageData(this.cols, this.rows);
    this.canvas.__nni = this; // test and debugging hook: voxelToClient / clientToVoxel
    this.el.__nni = this;
    this._bind();
  }

  /** The view's own state, without any DOM (the unit tests build views with this alone). */
  _geometry(axis, shape, spacing) {
    this.axis = axis;
    [this.ra, this.ca] = [0, 1, 2].filter((a) => a !== axis);
    this.rows = shape[this.ra];
    this.cols = shape[this.ca];
    this.sr = spacing[this.ra];
    this.sc = spacing[this.ca];
    this.zoom = 1;
    this.panX = 0;
    this.panY = 0;
    this.stroke = null; // {tool, positive, points: [[r, c], ...]} while drawing
    this.pending = []; // finished strokes waiting for the kernel (drawn faintly)
    this.gesture = null;
  }

  get index() {
    return this.host.model.get("position")[this.axis];
  }

  resize(size) {
    const dpr = window.devicePixelRatio || 1;
    this.cssSize = size;
    this.canvas.style.width = `${size}px`;
    this.canvas.style.height = `${size}px`;
    this.canvas.width = Math.round(size * dpr);
    this.canvas.height = Math.round(size * dpr);
    this.dpr = dpr;
    this.draw();
  }

  // ---------------------------------------------------------------- geometry
  _layout() {
    const W = this.canvas.width;
    const H = this.canvas.height;
    const fit = Math.min(W / (this.cols * this.sc), H / (this.rows * this.sr));
    const px = this.sc * fit * this.zoom; // canvas pixels per column
    const py = this.sr * fit * this.zoom; // canvas pixels per row
    const ox = (W - this.cols * px) / 2 + this.panX * this.dpr;
    const oy = (H - this.rows * py) / 2 + this.panY * this.dpr;
    return { px, py, ox, oy };
  }

  /** Continuous slice (row, col) -> canvas pixel (x, y). */
  voxelToCanvas(r, c) {
    const { px, py, ox, oy } = this._layout();
    return [ox + (this.cols - 0.5 - c) * px, oy + (this.rows - 0.5 - r) * py];
  }

  canvasToVoxel(x, y) {
    const { px, py, ox, oy } = this._layout();
    return [this.rows - 0.5 - (y - oy) / py, this.cols - 0.5 - (x - ox) / px];
  }

  /** Slice (row, col) -> page client coordinates (for tests that drive the mouse). */
  voxelToClient(r, c) {
    const rect = this.canvas.getBoundingClientRect();
    const [x, y] = this.voxelToCanvas(r, c);
    return [rect.left + x / this.dpr, rect.top + y / this.dpr];
  }

  clientToVoxel(cx, cy) {
    const rect = this.canvas.getBoundingClientRect();
    return this.canvasToVoxel((cx - rect.left) * this.dpr, (cy - rect.top) * this.dpr);
  }

  /** RGBA of the rendered overlay image at slice voxel (r, c) (tests assert on overlay pixels). */
  pixelAt(r, c) {
    const i = ((this.rows - 1 - r) * this.cols + (this.cols - 1 - c)) * 4;
    return Array.from(this.imageData.data.slice(i, i + 4));
  }

  // ---------------------------------------------------------------- drawing
  /** Fill the slice-resolution RGBA image from the image slice, window/level and labels. */
  render() {
    const h = this.host;
    const idx = this.index;
    const img = h.images.get(this.axis, idx);
    if (!img) h.requestSlice(this.axis, idx);
    h.prefetch(this.axis, idx);
    const lut = h.grayLut();
    const labels = h.store.slice(this.axis, idx);
    // the coarse answer shown while the kernel refines: a dotted outline in the object's colour
    const pv = h.preview ? previewSlice(h.preview, h.meta.shape, this.axis, idx) : null;
    const pvColor = pv ? h.colorTable()[h.preview.object % h.colorTable().length] : null;
    const colors = h.colorTable();
    const alpha = h.model.get("opacity");
    const outline = h.model.get("outline");
    const active = h.model.get("active_object");
    const out = this.imageData.data;
    const R = this.rows;
    const C = this.cols;
    for (let sr = 0; sr < R; sr++) {
      const r = R - 1 - sr;
      for (let sc = 0; sc < C; sc++) {
        const c = C - 1 - sc;
        const k = r * C + c;
        const g = img ? lut[img[k]] : 24;
        const o = (sr * C + sc) * 4;
        let red = g;
        let green = g;
        let blue = g;
        const lab = labels ? labels[k] : 0;
        if (lab) {
          let edge = true;
          if (outline) {
            // a boundary voxel: on the slice's border or next to another label
            const border = r === 0 || r === R - 1 || c === 0 || c === C - 1;
            edge =
              border ||
              labels[k - C] !== lab ||
              labels[k + C] !== lab ||
              labels[k - 1] !== lab ||
              labels[k + 1] !== lab;
          }
          if (edge) {
            const col = colors[lab % colors.length] || colors[0];
            const a = outline ? 1 : lab === active ? alpha : alpha * 0.8;
            red = g + (col[0] - g) * a;
            green = g + (col[1] - g) * a;
            blue = g + (col[2] - g) * a;
          }
        }
        if (pv?.[k] && (r + c) % 2 === 0) {
          const border = r === 0 || r === R - 1 || c === 0 || c === C - 1;
          if (border || !pv[k - C] || !pv[k + C] || !pv[k - 1] || !pv[k + 1]) {
            red = pvColor[0];
            green = pvColor[1];
            blue = pvColor[2];
          }
        }
        out[o] = red;
        out[o + 1] = green;
        out[o + 2] = blue;
        out[o + 3] = 255;
      }
    }
    this.offCtx.putImageData(this.imageData, 0, 0);
    this.hasImage = Boolean(img);
    this.el.dataset.loaded = img ? "1" : "0";
    this.el.dataset.slice = String(idx);
  }

  draw() {
    if (!this.canvas.width) return;
    this.render();
    const ctx = this.canvas.getContext("2d");
    const W = this.canvas.width;
    const H = this.canvas.height;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#111";
    ctx.fillRect(0, 0, W, H);
    const { px, py, ox, oy } = this._layout();
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(this.off, ox, oy, this.cols * px, this.rows * py);
    // crosshair: the other two views' slices
    const pos = this.host.model.get("position");
    const [cx, cy] = this.voxelToCanvas(pos[this.ra], pos[this.ca]);
    ctx.strokeStyle = "rgba(255, 220, 0, 0.45)";
    ctx.lineWidth = this.dpr;
    ctx.beginPath();
    ctx.moveTo(cx, oy);
    ctx.lineTo(cx, oy + this.rows * py);
    ctx.moveTo(ox, cy);
    ctx.lineTo(ox + this.cols * px, cy);
    ctx.stroke();
    for (const s of this.pending) this._drawStroke(ctx, s, true);
    if (this.stroke) this._drawStroke(ctx, this.stroke, false);
    // orientation letters
    const L = LETTERS[this.axis];
    ctx.fillStyle = "rgba(255, 255, 255, 0.85)";
    ctx.font = `${12 * this.dpr}px sans-serif`;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    ctx.fillText(L.top, W / 2, 4 * this.dpr);
    ctx.textBaseline = "bottom";
    ctx.fillText(L.bottom, W / 2, H - 4 * this.dpr);
    ctx.textBaseline = "middle";
    ctx.textAlign = "left";
    ctx.fillText(L.left, 4 * this.dpr, H / 2);
    ctx.textAlign = "right";
    ctx.fillText(L.right, W - 4 * this.dpr, H / 2);
    const n = this.host.meta.shape[this.axis];
    this.title.textContent = `${AXIS_NAMES[this.axis]}  ${"zyx"[this.axis]} ${this.index + 1}/${n}`;
    if (document.activeElement !== this.slider) this.slider.value = String(this.index);
  }

  _drawStroke(ctx, s, faint) {
    if (s.index !== undefined && s.index !== this.index) return;
    const color = s.positive ? "rgba(0, 230, 90," : "rgba(255, 60, 60,";
    ctx.strokeStyle = `${color}${faint ? 0.5 : 0.95})`;
    ctx.fillStyle = `${color}${faint ? 0.3 : 0.6})`;
    ctx.lineWidth = 2 * this.dpr;
    ctx.setLineDash(faint ? [4 * this.dpr, 3 * this.dpr] : []);
    const pts = s.points.map(([r, c]) => this.voxelToCanvas(r, c));
    ctx.beginPath();
    if (s.tool === "point") {
      const [x, y] = pts[pts.length - 1];
      ctx.arc(x, y, 4 * this.dpr, 0, 2 * Math.PI);
      ctx.fill();
    } else if (s.tool === "box" && pts.length >= 2) {
      const [a, b] = [pts[0], pts[pts.length - 1]];
      ctx.rect(Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.abs(a[0] - b[0]), Math.abs(a[1] - b[1]));
    } else {
      for (const [i, [x, y]] of pts.entries()) {
        if (i) ctx.lineTo(x, y);
        else ctx.moveTo(x, y);
      }
      if (s.tool === "lasso" && !faint && pts.length > 2) ctx.closePath();
    }
    ctx.stroke();
    ctx.setLineDash([]);
  }

  // ---------------------------------------------------------------- input
  _bind() {
    const c = this.canvas;
    this.listeners = []; // removers, run by destroy()
    const on = (el, ev, fn, opts) => {
      el.addEventListener(ev, fn, opts);
      this.listeners.push(() => el.removeEventListener(ev, fn, opts));
    };
    on(c, "contextmenu", (e) => e.preventDefault());
    on(c, "pointerdown", (e) => this._down(e));
    on(c, "pointermove", (e) => this._move(e));
    on(c, "pointerup", (e) => this._up(e));
    on(c, "pointercancel", () => {
      this.gesture = null;
      this.stroke = null;
      this.draw();
    });
    on(c, "dblclick", () => this.resetView());
    on(this.el, "wheel", (e) => this._wheel(e), { passive: false });
    on(this.el, "keydown", (e) => this.host.onKey(e, this));
    on(this.slider, "input", () => this.host.setSlice(this.axis, Number(this.slider.value)));
  }

  resetView() {
    this.zoom = 1;
    this.panX = 0;
    this.panY = 0;
    this.draw();
  }

  _pos(e) {
    const rect = this.canvas.getBoundingClientRect();
    return [(e.clientX - rect.left) * this.dpr, (e.clientY - rect.top) * this.dpr];
  }

  _down(e) {
    this.el.focus({ preventScroll: true });
    const [x, y] = this._pos(e);
    this.canvas.setPointerCapture(e.pointerId);
    const tool = this.host.model.get("tool");
    if (e.button === 2) {
      this.gesture = { kind: "window", x, y, window: this.host.model.get("window").slice() };
    } else if (e.button === 1 || e.ctrlKey || e.metaKey || e.altKey) {
      this.gesture = { kind: "pan", x, y, panX: this.panX, panY: this.panY };
    } else if (e.button === 0 && tool === "navigate") {
      this.gesture = { kind: "navigate" };
      this._navigate(x, y);
    } else if (e.button === 0) {
      const positive = this.host.model.get("positive") !== e.shiftKey; // Shift flips the polarity
      this.gesture = { kind: "stroke" };
      this.stroke = { tool, positive, index: this.index, points: [this.canvasToVoxel(x, y)] };
      this.draw();
    }
    e.preventDefault();
  }

  _move(e) {
    const g = this.gesture;
    if (!g) return;
    const [x, y] = this._pos(e);
    if (g.kind === "window") {
      const [level, width] = g.window;
      const step = Math.max(width, 1) / 300;
      const w = Math.max(1e-3, width + ((x - g.x) * step) / this.dpr);
      const l = level - ((y - g.y) * step) / this.dpr;
      this.host.setWindow(l, w, false);
    } else if (g.kind === "pan") {
      this.panX = g.panX + (x - g.x) / this.dpr;
      this.panY = g.panY + (y - g.y) / this.dpr;
      this.draw();
    } else if (g.kind === "navigate") {
      this._navigate(x, y);
    } else if (g.kind === "stroke" && this.stroke) {
      const p = this.canvasToVoxel(x, y);
      if (this.stroke.tool === "box" || this.stroke.tool === "point") {
        this.stroke.points = [this.stroke.points[0], p];
      } else {
        const last = this.stroke.points[this.stroke.points.length - 1];
        if (Math.hypot(p[0] - last[0], p[1] - last[1]) >= 0.3) this.stroke.points.push(p);
      }
      this.draw();
    }
  }

  _up(e) {
    const g = this.gesture;
    this.gesture = null;
    if (!g) return;
    if (g.kind === "window") this.host.setWindow(...this.host.model.get("window"), true);
    if (g.kind === "stroke" && this.stroke) {
      const s = this.stroke;
      this.stroke = null;
      if (s.tool === "point") s.points = [s.points[0]];
      this.host.sendStroke(this, s);
    }
    this.draw();
    e.preventDefault();
  }

  _navigate(x, y) {
    const [r, c] = this.canvasToVoxel(x, y);
    const pos = this.host.model.get("position").slice();
    pos[this.ra] = Math.min(Math.max(Math.round(r), 0), this.rows - 1);
    pos[this.ca] = Math.min(Math.max(Math.round(c), 0), this.cols - 1);
    this.host.setPosition(pos);
  }

  _wheel(e) {
    // scroll the notebook unless this view has the focus (a click gives it)
    if (document.activeElement !== this.el) return;
    e.preventDefault();
    if (e.ctrlKey || e.metaKey) {
      const [x, y] = this._pos(e);
      const before = this.canvasToVoxel(x, y);
      this.zoom = Math.min(Math.max(this.zoom * (e.deltaY < 0 ? 1.15 : 1 / 1.15), 0.5), 20);
      const [nx, ny] = this.voxelToCanvas(before[0], before[1]);
      this.panX += (x - nx) / this.dpr;
      this.panY += (y - ny) / this.dpr;
      this.draw();
    } else {
      this.host.setSlice(this.axis, this.index + (e.deltaY < 0 ? 1 : -1));
    }
  }

  destroy() {
    for (const off of this.listeners || []) off();
  }
}
