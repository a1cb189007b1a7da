// nni_widget front-end (anywidget): three orthogonal views, prompt tools, objects, live 3D results.
// The kernel serves image slices on request and the changed part of the label map after each step;
// window/level, colours, opacity and outlines are applied here.

import { decodeArray } from "./codec.js";
import { colorTable, LabelStore } from "./labels.js";
import { SliceView } from "./view.js";

// per-stroke timing records kept on the host (the newest ones; see host.timings)
const TIMINGS_KEPT = 1000;

const TOOLS = [
  ["navigate", "navigate", "Navigate: click to move the crosshair (C)"],
  ["point", "point", "Point (P)"],
  ["box", "box", "2D box (B)"],
  ["lasso", "lasso", "Lasso (L)"],
  ["scribble", "scribble", "Scribble (S)"],
];
const KEY_TOOLS = { c: "navigate", p: "point", b: "box", l: "lasso", s: "scribble" };
const MAX_CACHE_BYTES = 96 * 1024 * 1024;

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k in e) e[k] = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

/** Image slices kept in the browser, least recently used dropped first. */
class SliceCache {
  constructor() {
    this.map = new Map();
    this.bytes = 0;
  }
  key(axis, index) {
    return `${axis}:${index}`;
  }
  get(axis, index) {
    const k = this.key(axis, index);
    const v = this.map.get(k);
    if (v) {
      this.map.delete(k);
      this.map.set(k, v);
    }
    return v;
  }
  has(axis, index) {
    return this.map.has(this.key(axis, index));
  }
  put(axis, index, data) {
    const k = this.key(axis, index);
    if (this.map.has(k)) this.bytes -= this.map.get(k).byteLength;
    this.map.set(k, data);
    this.bytes += data.byteLength;
    for (const [key, v] of this.map) {
      if (this.bytes <= MAX_CACHE_BYTES) break;
      this.map.delete(key);
      this.bytes -= v.byteLength;
    }
  }
}

function render({ model, el: root }) {
  const meta = model.get("meta");
  const disposers = [];
  const listen = (name, fn) => {
    model.on(name, fn);
    disposers.push(() => model.off(name, fn));
  };

  const host = {
    model,
    meta,
    store: new LabelStore(meta.shape),
    images: new SliceCache(),
    requested: new Set(),
    labelVersion: -1,
    resyncing: false,
    preview: null, // {bounds, data, object}: the coarse answer while the kernel refines, or null
    lut: null,
    lutKey: "",
    colors: null,
    views: [],
    elapsed: null,
    // per stroke, keyed by its seq: when it was sent and when its result was drawn (benchmarks read
    // host.timings[seq]); only the newest TIMINGS_KEPT strokes are kept, so a long session stays small
    timings: {},
    strokes: 0, // strokes sent so far: the next stroke's seq
  };

  host.requestSlice = (axis, index) => {
    if (index < 0 || index >= meta.shape[axis]) return;
    const k = `${axis}:${index}`;
    if (host.requested.has(k) || host.images.has(axis, index)) return;
    host.requested.add(k);
    model.send({ kind: "slice", axis, index });
  };
  host.prefetch = (axis, index) => {
    for (const d of [1, -1, 2, -2]) host.requestSlice(axis, index + d);
  };
  host.grayLut = () => {
    const [level, width] = model.get("window");
    const key = `${level}:${width}`;
    if (host.lut && host.lutKey === key) return host.lut;
    const lut = new Uint8ClampedArray(65536);
    const lo = level - width / 2;
    for (let code = 0; code < 65536; code++) {
      const v = meta.value_offset + code * meta.value_scale;
      lut[code] = ((v - lo) / width) * 255;
    }
    host.lut = lut;
    host.lutKey = key;
    return lut;
  };
  host.colorTable = () => {
    host.colors = host.colors || colorTable(meta.palette);
    return host.colors;
  };
  host.redraw = () => {
    for (const v of host.views) if (v.el.isConnected && v.el.style.display !== "none") v.draw();
  };
  host.setPosition = (pos) => {
    model.set(
      "position",
      pos.map((p, a) => Math.min(Math.max(Math.round(p), 0), meta.shape[a] - 1)),
    );
    model.save_changes();
  };
  host.setSlice = (axis, index) => {
    const pos = model.get("position").slice();
    pos[axis] = index;
    host.setPosition(pos);
  };
  host.setWindow = (level, width, save) => {
    model.set("window", [level, Math.max(width, 1e-3)]);
    if (save) model.save_changes();
    host.redraw();
    syncWindowInputs();
  };
  host.sendStroke = (view, s) => {
    const seq = host.strokes++;
    const msg = {
      kind: "prompt",
      seq,
      tool: s.tool,
      positive: s.positive,
      axis: view.axis,
      index: s.index,
      points: s.points.map(([r, c]) => [Number(r.toFixed(3)), Number(c.toFixed(3))]),
    };
    view.pending.push(s);
    host.timings[seq] = { seq, sent: performance.now(), drawn: null };
    delete host.timings[seq - TIMINGS_KEPT];
    root.dataset.sent = String(Number(root.dataset.sent || 0) + 1);
    model.send(msg);
  };
  host.action = (name, extra = {}) => model.send({ kind: "action", name, ...extra });
  host.onKey = (e, view) => {
    if (e.target.tagName === "INPUT" && e.target.type !== "range") return;
    const k = e.key.toLowerCase();
    const mod = e.ctrlKey || e.metaKey;
    let handled = true;
    if (mod && k === "z") host.action(e.shiftKey ? "redo" : "undo");
    else if (mod && k === "y") host.action("redo");
    else if (mod) handled = false;
    else if (e.key === "ArrowUp" || e.key === "PageUp") host.setSlice(view.axis, view.index + 1);
    else if (e.key === "ArrowDown" || e.key === "PageDown") host.setSlice(view.axis, view.index - 1);
    else if (KEY_TOOLS[k]) {
      model.set("tool", KEY_TOOLS[k]);
      model.save_changes();
    } else if (k === "n") {
      model.set("positive", !model.get("positive"));
      model.save_changes();
    } else if (k === "z") host.action("undo");
    else if (k === "y") host.action("redo");
    else if (k === "o") host.action("new");
    else if (k === "]") host.action("next");
    else if (k === "r") view.resetView();
    else if (k === "+" || k === "=") {
      view.zoom = Math.min(view.zoom * 1.25, 20);
      view.draw();
    } else if (k === "-") {
      view.zoom = Math.max(view.zoom / 1.25, 0.5);
      view.draw();
    } else handled = false;
    if (handled) {
      e.preventDefault();
      e.stopPropagation(); // keep JupyterLab's own shortcuts out of the focused view
    }
  };

  // ------------------------------------------------------------------ layout
  root.classList.add("nni-root");
  const toolbar = el("div", { class: "nni-toolbar" });
  const toolButtons = {};
  for (const [name, icon, tip] of TOOLS) {
    toolButtons[name] = el(
      "button",
      {
        class: "nni-btn nni-tool",
        title: tip,
        dataset: { tool: name },
        onclick: () => {
          model.set("tool", name);
          model.save_changes();
        },
      },
      icon,
    );
    toolbar.append(toolButtons[name]);
  }
  const polarity = el("button", {
    class: "nni-btn nni-polarity",
    title: "Positive / negative (N; hold Shift to flip)",
    onclick: () => {
      model.set("positive", !model.get("positive"));
      model.save_changes();
    },
  });
  const undoBtn = el(
    "button",
    { class: "nni-btn", title: "Undo (Z, Ctrl+Z)", dataset: { action: "undo" }, onclick: () => host.action("undo") },
    "↶",
  );
  const redoBtn = el(
    "button",
    {
      class: "nni-btn",
      title: "Redo (Y, Ctrl+Shift+Z)",
      dataset: { action: "redo" },
      onclick: () => host.action("redo"),
    },
    "↷",
  );
  const layoutSel = el(
    "select",
    {
      class: "nni-select",
      title: "Layout",
      onchange: () => {
        model.set("layout", layoutSel.value);
        model.save_changes();
      },
    },
    ...["three", "axial", "coronal", "sagittal"].map((v) => el("option", { value: v }, v)),
  );
  const presetSel = el(
    "select",
    {
      class: "nni-select",
      title: "Window preset",
      onchange: () => {
        const p = meta.presets[presetSel.value];
        if (p) host.setWindow(p[0], p[1], true);
      },
    },
    ...Object.keys(meta.presets).map((v) => el("option", { value: v }, v)),
  );
  const levelIn = el("input", {
    type: "number",
    class: "nni-num",
    title: "Level",
    step: "any",
    onchange: () => host.setWindow(Number(levelIn.value), Number(widthIn.value), true),
  });
  const widthIn = el("input", {
    type: "number",
    class: "nni-num",
    title: "Width",
    step: "any",
    onchange: () => host.setWindow(Number(levelIn.value), Number(widthIn.value), true),
  });
  const opacityIn = el("input", {
    type: "range",
    min: "0",
    max: "1",
    step: "0.05",
    class: "nni-opacity",
    title: "Overlay opacity",
    oninput: () => {
      model.set("opacity", Number(opacityIn.value));
      model.save_changes();
    },
  });
  // a checkbox bound to a boolean trait, both ways; `then` runs after the trait changes
  const traitCheckbox = (name, title, then = () => {}) => {
    const box = el("input", {
      type: "checkbox",
      title,
      onchange: () => {
        model.set(name, box.checked);
        model.save_changes();
      },
    });
    box.checked = model.get(name);
    listen(`change:${name}`, () => {
      box.checked = model.get(name);
      then();
    });
    return box;
  };
  const outlineIn = traitCheckbox("outline", "Outline instead of fill", () => host.redraw());
  const mirrorIn = traitCheckbox(
    "mirroring",
    "Test-time mirroring: average the network over four mirrored passes (more accurate, 4x slower)",
  );
  toolbar.append(
    polarity,
    undoBtn,
    redoBtn,
    layoutSel,
    el("span", { class: "nni-sep" }),
    "W/L",
    presetSel,
    levelIn,
    widthIn,
    el("span", { class: "nni-sep" }),
    "opacity",
    opacityIn,
    el("label", { class: "nni-check" }, outlineIn, "outline"),
    el("span", { class: "nni-sep" }),
    el("label", { class: "nni-check", dataset: { role: "mirroring" } }, mirrorIn, "mirrored"),
  );

  const viewsBox = el("div", { class: "nni-views" });
  host.views = [0, 1, 2].map((a) => new SliceView(a, host));
  viewsBox.append(...host.views.map((v) => v.el));

  const objList = el("div", { class: "nni-objects" });
  const side = el(
    "div",
    { class: "nni-side" },
    el("div", { class: "nni-side-title" }, "Objects"),
    objList,
    el(
      "div",
      { class: "nni-side-buttons" },
      el(
        "button",
        { class: "nni-btn", dataset: { action: "new" }, title: "New object (O)", onclick: () => host.action("new") },
        "+ new",
      ),
      el(
        "button",
        { class: "nni-btn", dataset: { action: "next" }, title: "Next object (])", onclick: () => host.action("next") },
        "next",
      ),
      el(
        "button",
        {
          class: "nni-btn",
          dataset: { action: "reset" },
          title: "Clear the active object",
          onclick: () => host.action("reset"),
        },
        "reset",
      ),
    ),
  );
  const main = el("div", { class: "nni-main" }, viewsBox, side);

  const busyEl = el("span", { class: "nni-busy" });
  const statusEl = el("span", { class: "nni-status" });
  const errorText = el("span");
  const errorEl = el(
    "div",
    { class: "nni-error", role: "alert" },
    errorText,
    el("button", { class: "nni-btn nni-dismiss", title: "Dismiss", onclick: () => host.action("dismiss") }, "×"),
  );
  const footer = el(
    "div",
    { class: "nni-footer" },
    `${meta.shape.join(" × ")} voxels, ${meta.spacing.map((s) => s.toFixed(2)).join(" × ")} mm · ${meta.device}` +
      (meta.licence ? ` · model licence: ${meta.licence.split("\n")[0].slice(0, 120)}` : ""),
  );
  root.append(toolbar, main, el("div", { class: "nni-statusbar" }, busyEl, statusEl), errorEl, footer);
  root.__nni = host; // tests read the label store and views through this

  // ------------------------------------------------------------------ state -> DOM
  function syncWindowInputs() {
    const [l, w] = model.get("window");
    if (document.activeElement !== levelIn) levelIn.value = String(Math.round(l * 100) / 100);
    if (document.activeElement !== widthIn) widthIn.value = String(Math.round(w * 100) / 100);
  }
  function syncTools() {
    const tool = model.get("tool");
    for (const [name, b] of Object.entries(toolButtons)) b.classList.toggle("nni-on", name === tool);
    const pos = model.get("positive");
    polarity.textContent = pos ? "+ positive" : "− negative";
    polarity.classList.toggle("nni-negative", !pos);
    root.dataset.tool = tool;
    root.dataset.positive = pos ? "1" : "0";
  }
  function syncLayout() {
    const layout = model.get("layout");
    const size = model.get("view_size");
    layoutSel.value = layout;
    host.views.forEach((v, a) => {
      const show = layout === "three" || ["axial", "coronal", "sagittal"][a] === layout;
      v.el.style.display = show ? "" : "none";
      if (show) v.resize(layout === "three" ? size : Math.round(size * 2));
    });
  }
  function syncObjects() {
    const active = model.get("active_object");
    objList.replaceChildren(
      ...model.get("objects").map((o) => {
        const name = el("span", { class: "nni-obj-name", title: "Double-click to rename" }, o.name);
        const row = el(
          "div",
          {
            class: `nni-obj${o.id === active ? " nni-on" : ""}`,
            dataset: { id: String(o.id) },
            onclick: () => host.action("select", { id: o.id }),
          },
          el("span", { class: "nni-swatch", style: `background:${o.color}` }),
          name,
          el("span", { class: "nni-obj-count", title: "prompts" }, String(o.prompts)),
          el(
            "button",
            {
              class: "nni-btn nni-del",
              title: "Delete object",
              dataset: { action: "delete" },
              onclick: (e) => {
                e.stopPropagation();
                host.action("delete", { id: o.id });
              },
            },
            "×",
          ),
        );
        name.addEventListener("dblclick", (e) => {
          e.stopPropagation();
          const input = el("input", { class: "nni-rename", value: o.name });
          const done = (commit) => {
            if (commit && input.value.trim() && input.value !== o.name) {
              host.action("rename", { id: o.id, value: input.value });
            }
            syncObjects();
          };
          input.addEventListener("keydown", (ev) => {
            ev.stopPropagation();
            if (ev.key === "Enter") done(true);
            if (ev.key === "Escape") done(false);
          });
          input.addEventListener("blur", () => done(true));
          name.replaceWith(input);
          input.focus();
          input.select();
        });
        return row;
      }),
    );
    root.dataset.objects = String(model.get("objects").length);
    root.dataset.active = String(active);
  }
  function syncHistory() {
    undoBtn.disabled = !model.get("can_undo");
    redoBtn.disabled = !model.get("can_redo");
  }
  function syncBusy() {
    const busy = model.get("busy");
    const queued = model.get("queued");
    root.dataset.busy = busy ? "1" : "0";
    if (busy && !host.elapsed) {
      const t0 = performance.now();
      const tick = () => {
        const q = model.get("queued");
        busyEl.textContent = `⏳ running ${((performance.now() - t0) / 1000).toFixed(1)} s${q ? ` (${q} queued)` : ""}`;
      };
      tick();
      host.elapsed = setInterval(tick, 100);
    } else if (!busy) {
      clearInterval(host.elapsed);
      host.elapsed = null;
      busyEl.textContent = "";
      if (!queued) {
        for (const v of host.views) v.pending = [];
        host.redraw();
      }
    }
  }
  function syncError() {
    const err = model.get("error");
    errorText.textContent = err;
    errorEl.style.display = err ? "" : "none";
    root.dataset.error = err ? "1" : "0";
  }
  function syncStatus() {
    statusEl.textContent = model.get("status");
  }

  // ------------------------------------------------------------------ messages from the kernel
  async function onMessage(msg, buffers) {
    try {
      if (msg.kind === "slice") {
        const { data } = await decodeArray(msg, buffers[0]);
        host.images.put(msg.axis, msg.index, data);
        host.requested.delete(`${msg.axis}:${msg.index}`);
        const v = host.views[msg.axis];
        if (v.index === msg.index) v.draw();
      } else if (msg.kind === "labels") {
        const { data } = await decodeArray(msg, buffers[0]);
        host.store.clear();
        if (data.length) host.store.paste(msg.bounds, data);
        host.labelVersion = msg.version;
        host.resyncing = false;
        root.dataset.labelVersion = String(host.labelVersion);
        host.redraw();
      } else if (msg.kind === "patch") {
        if (host.resyncing || msg.version <= host.labelVersion) return;
        if (msg.version !== host.labelVersion + 1) {
          // a patch went missing (view opened mid-stream): ask for the whole label map again
          host.resyncing = true;
          model.send({ kind: "hello" });
          return;
        }
        host.labelVersion = msg.version;
        const { data } = await decodeArray(msg, buffers[0]);
        host.store.paste(msg.bounds, data);
        root.dataset.labelVersion = String(host.labelVersion);
        host.redraw();
        const t = msg.seq !== undefined ? host.timings[msg.seq] : null;
        if (t) t.drawn = performance.now();
      } else if (msg.kind === "preview") {
        if (host.resyncing) return;
        const { data } = await decodeArray(msg, buffers[0]);
        host.preview = { bounds: msg.bounds, data, object: msg.object };
        root.dataset.preview = "1";
        host.redraw();
        const t = msg.seq !== undefined ? host.timings[msg.seq] : null;
        if (t) t.preview = performance.now();
      } else if (msg.kind === "preview_end") {
        if (!host.preview) return;
        host.preview = null;
        root.dataset.preview = "0";
        host.redraw();
      }
    } catch (err) {
      errorText.textContent = `display error: ${err}`;
      errorEl.style.display = "";
    }
  }
  // patches decode asynchronously: apply them in arrival order
  let chain = Promise.resolve();
  const queueMessage = (msg, buffers) => {
    chain = chain.then(() => onMessage(msg, buffers));
  };
  listen("msg:custom", queueMessage);

  listen("change:position", host.redraw);
  listen("change:window", () => {
    host.redraw();
    syncWindowInputs();
  });
  listen("change:opacity", () => {
    opacityIn.value = String(model.get("opacity"));
    host.redraw();
  });
  listen("change:active_object", () => {
    syncObjects();
    host.redraw();
  });
  listen("change:objects", syncObjects);
  listen("change:tool", syncTools);
  listen("change:positive", syncTools);
  listen("change:layout", syncLayout);
  listen("change:view_size", syncLayout);
  listen("change:can_undo", syncHistory);
  listen("change:can_redo", syncHistory);
  listen("change:busy", syncBusy);
  listen("change:queued", syncBusy);
  listen("change:error", syncError);
  listen("change:status", syncStatus);

  syncTools();
  syncLayout();
  syncObjects();
  syncHistory();
  syncBusy();
  syncError();
  syncStatus();
  syncWindowInputs();
  opacityIn.value = String(model.get("opacity"));
  const preset = Object.entries(meta.presets).find(
    ([, w]) => w[0] === model.get("window")[0] && w[1] === model.get("window")[1],
  );
  if (preset) presetSel.value = preset[0];

  host.resyncing = true;
  model.send({ kind: "hello" });
  root.dataset.ready = "1";

  return () => {
    for (const d of disposers) d();
    for (const v of host.views) v.destroy();
    clearInterval(host.elapsed);
  };
}

export default { render };
