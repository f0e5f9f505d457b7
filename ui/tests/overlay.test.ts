import { describe, expect, it } from "vitest";
import { compositeOverlay, layerLut, paintLayer, parseHexColour, rgbaWord } from "../src/lib/overlay";

describe("overlay", () => {
  const probability = new Uint8Array([0, 127, 128, 255]);

  it("parses colours", () => {
    expect(parseHexColour("#ffE600")).toEqual([255, 230, 0]);
    expect(() => parseHexColour("yellow")).toThrow();
  });

  it("paints the overlay layer: colour where vessel, transparent elsewhere", () => {
    const out = new Uint32Array(4);
    paintLayer(probability, layerLut(0.5, "overlay", [255, 0, 0]), out);
    const bytes = new Uint8Array(out.buffer);
    expect([...bytes]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 255, 0, 0, 255, 255, 0, 0, 255]);
  });

  it("paints the mask layer white on opaque black", () => {
    const out = new Uint32Array(4);
    paintLayer(probability, layerLut(0.5, "mask", [255, 0, 0]), out);
    expect([...out]).toEqual([rgbaWord(0, 0, 0), rgbaWord(0, 0, 0), rgbaWord(255, 255, 255), rgbaWord(255, 255, 255)]);
  });

  it("blends vessel pixels towards the colour by the opacity, rounding to nearest", () => {
    const photo = new Uint8Array([100, 100, 100, 255, 10, 20, 30, 255, 100, 150, 200, 255, 0, 0, 0, 255]);
    const out = compositeOverlay(photo, probability, 0.5, [255, 0, 0], 0.6);
    expect([...out.subarray(0, 8)]).toEqual([100, 100, 100, 255, 10, 20, 30, 255]); // below the threshold
    // 100 * 0.4 + 255 * 0.6 = 193; 150 * 0.4 = 60; 200 * 0.4 = 80
    expect([...out.subarray(8, 12)]).toEqual([193, 60, 80, 255]);
    expect([...out.subarray(12, 16)]).toEqual([153, 0, 0, 255]);
    expect([...compositeOverlay(null, probability, 0.5, [255, 0, 0], 1).subarray(0, 4)]).toEqual([0, 0, 0, 255]);
    expect([...compositeOverlay(photo, probability, 0.5, [255, 0, 0], 0).subarray(8, 12)]).toEqual([100, 150, 200, 255]);
    expect(() => compositeOverlay(photo.subarray(4), probability, 0.5, [0, 0, 0], 1)).toThrow(RangeError);
  });
});
