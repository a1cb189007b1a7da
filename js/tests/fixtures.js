// Test vectors written by the Python encoder: tests/test_js.py writes them into a directory and runs
// `npm test` with NNI_JS_FIXTURES set to it, so the decoder is checked against nni_widget.widget._codec.
import { readFileSync } from "node:fs";
import { join } from "node:path";

const DIR = process.env.NNI_JS_FIXTURES || "";

/** Options for test(): skip (saying how to get the vectors) when no fixture directory is given. */
export const needsFixtures = DIR
  ? {}
  : {
      skip:
        "no Python-made vectors: run `pytest tests/test_js.py`, or `python tests/test_js.py DIR` then " +
        "`NNI_JS_FIXTURES=DIR npm test`",
    };

/** manifest.json of the fixture directory. */
export function manifest() {
  return JSON.parse(readFileSync(join(DIR, "manifest.json"), "utf8"));
}

/** A fixture file's bytes as a DataView on a larger buffer, as ipywidgets hands message buffers over. */
export function buffer(name) {
  const b = readFileSync(join(DIR, name));
  const padded = new Uint8Array(b.length + 11);
  padded.set(b, 7);
  return new DataView(padded.buffer, 7, b.length);
}

/** A fixture file's bytes as a Uint8Array. */
export function bytes(name) {
  const b = readFileSync(join(DIR, name));
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}
