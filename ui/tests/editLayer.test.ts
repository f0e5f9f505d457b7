import { describe, expect, it } from "vitest";
import {
  compositeLut,
  composedMask,
  editCounts,
  editsFromMask,
  FORCE_BACKGROUND,
  FORCE_VESSEL,
  hasEdits,
  KEEP,
  paintComposite,
} from "../src/lib/editLayer";
import { rgbaWord } from "../src/lib/overlay";

const colours = { vessel: [0, 200, 255], added: [51, 255, 68], removed: [166, 77, 255] } as const;
// probability: 2 low, 2 high; edits: keep, force vessel on a low, force background on a high, keep
const probability = new Uint8Array([10, 20, 200, 250]);
const edits = new Uint8Array([KEEP, FORCE_VESSEL, FORCE_BACKGROUND, KEEP]);

describe("edit layer composition", () => {
  it("forced pixels win over the model at every threshold; kept pixels follow it", () => {
    for (const t of [0, 0.05, 0.5, 0.9, 1]) {
      const model = Array.from(probability, (v) => (v / 255 >= t ? 255 : 0));
      expect(Array.from(composedMask(probability, edits, t))).toEqual([model[0], 255, 0, model[3]]);
    }
  });

  it("clips the final mask to a field (region of interest)", () => {
    expect(Array.from(composedMask(probability, edits, 0.5, new Uint8Array([255, 0, 255, 255])))).toEqual([0, 0, 0, 255]);
    expect(Array.from(composedMask(probability, null, 0.5))).toEqual([0, 0, 255, 255]);
  });

  it("paints added and removed pixels in their own colours, and the final mask in mask view", () => {
    const out = new Uint32Array(4);
    paintComposite(probability, edits, 2, compositeLut(0.5, "overlay", colours), out);
    expect(Array.from(out)).toEqual([0, rgbaWord(51, 255, 68), rgbaWord(166, 77, 255), rgbaWord(0, 200, 255)]);
    paintComposite(probability, edits, 2, compositeLut(0.5, "mask", colours), out);
    const white = rgbaWord(255, 255, 255);
    const black = rgbaWord(0, 0, 0);
    expect(Array.from(out)).toEqual([black, white, black, white]);
  });

  it("repaints only the given rectangle", () => {
    const out = new Uint32Array(4).fill(7);
    paintComposite(probability, edits, 2, compositeLut(0.5, "overlay", colours), out, { x0: 1, y0: 1, x1: 2, y1: 2 });
    expect(Array.from(out)).toEqual([7, 7, 7, rgbaWord(0, 200, 255)]);
  });

  it("counts vessel, added and removed pixels against the model", () => {
    expect(editCounts(probability, edits, 0.5)).toEqual({ vessel: 2, added: 1, removed: 1 });
    expect(editCounts(probability, new Uint8Array(4), 0.5)).toEqual({ vessel: 2, added: 0, removed: 0 });
  });

  it("an opened mask becomes a layer that fixes the final mask at every threshold", () => {
    const mask = new Uint8Array([255, 0, 0, 255]);
    const opened = editsFromMask(mask);
    for (const t of [0, 0.3, 1]) expect(Array.from(composedMask(probability, opened, t))).toEqual([255, 0, 0, 255]);
    expect(hasEdits(opened)).toBe(true);
    expect(hasEdits(new Uint8Array(9))).toBe(false);
  });
});
