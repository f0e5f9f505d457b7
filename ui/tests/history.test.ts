import { describe, expect, it } from "vitest";
import { fillPolygon, paintSegment, segmentRect } from "../src/lib/brush";
import { EditHistory } from "../src/lib/history";

function stroke(history: EditHistory, layer: Uint8Array, w: number, h: number, y: number, value = 1) {
  history.begin();
  history.touch(segmentRect([2, y + 0.5], [w - 2, y + 0.5], 5, w, h)!);
  paintSegment(layer, w, h, [2, y + 0.5], [w - 2, y + 0.5], 5, value);
  return history.commit();
}

const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

describe("EditHistory", () => {
  it("undoes and redoes strokes exactly, in order", () => {
    const [w, h] = [300, 200];
    const layer = new Uint8Array(w * h);
    const history = new EditHistory(layer, w, h, { tile: 32 });
    const snapshots = [layer.slice()];
    for (const y of [10, 50, 52, 150]) {
      expect(stroke(history, layer, w, h, y, y % 2 ? 2 : 1)).toBe(true);
      snapshots.push(layer.slice());
    }
    for (let k = snapshots.length - 2; k >= 0; k--) {
      expect(history.undo()).not.toBeNull();
      expect(same(layer, snapshots[k])).toBe(true);
    }
    expect(history.undo()).toBeNull();
    history.redo();
    history.redo();
    expect(same(layer, snapshots[2])).toBe(true);
    // a new edit drops what could be redone
    stroke(history, layer, w, h, 100);
    expect(history.canRedo).toBe(false);
    history.undo();
    expect(same(layer, snapshots[2])).toBe(true);
  });

  it("records nothing for an edit that changed no pixel", () => {
    const layer = new Uint8Array(100 * 100);
    const history = new EditHistory(layer, 100, 100);
    stroke(history, layer, 100, 100, 50);
    expect(stroke(history, layer, 100, 100, 50)).toBe(false);
    expect(history.steps).toBe(1);
  });

  it("stores changed tiles, not copies of the layer, and keeps at least 100 steps of an 8 MP photo", () => {
    const [w, h] = [3504, 2336];
    const layer = new Uint8Array(w * h);
    const history = new EditHistory(layer, w, h);
    for (let k = 0; k < 120; k++) {
      history.begin();
      const y = 20 + k * 19;
      history.touch(segmentRect([110, y], [690, y], 32, w, h)!);
      paintSegment(layer, w, h, [110, y], [690, y], 32, 1 + (k % 2));
      history.commit();
    }
    expect(history.steps).toBe(120);
    // a 600 px stroke touches ~10-20 tiles of 64×64: ~100 KB a step, against 8 MB for a copy of the layer
    expect(history.bytes / history.steps).toBeLessThan(200_000);
    for (let k = 0; k < 120; k++) history.undo();
    expect(layer.every((v) => v === 0)).toBe(true);
  });

  it("drops the oldest steps beyond maxSteps or maxBytes", () => {
    const [w, h] = [256, 256];
    const layer = new Uint8Array(w * h);
    const byCount = new EditHistory(layer, w, h, { tile: 16, maxSteps: 3 });
    for (const y of [10, 60, 110, 160, 210]) stroke(byCount, layer, w, h, y);
    expect(byCount.steps).toBe(3);
    const before = layer.slice();
    byCount.undo();
    byCount.undo();
    byCount.undo();
    expect(byCount.undo()).toBeNull();
    expect(layer.subarray(10 * w, 11 * w).some((v) => v === 1)).toBe(true); // the oldest strokes stay painted
    expect(same(layer, before)).toBe(false);

    const layer2 = new Uint8Array(w * h);
    const byBytes = new EditHistory(layer2, w, h, { tile: 16, maxBytes: 10_000 });
    for (let k = 0; k < 5; k++) {
      byBytes.begin();
      byBytes.touch({ x0: 0, y0: 0, x1: w, y1: h });
      fillPolygon(layer2, w, h, [[0, 0], [w, 0], [w, h], [0, h]], 1 + (k % 2));
      byBytes.commit();
    }
    expect(byBytes.steps).toBe(1); // one step is always kept, however large
    expect(byBytes.bytes).toBe(2 * w * h);
  });
});
