import { describe, expect, it } from "vitest";
import { clampBrush, fillPolygon, paintSegment } from "../src/lib/brush";
import { clampToImage, polygonPath, roiGeoJson } from "../src/lib/roi";

function count(layer: Uint8Array, value = 1): number {
  let n = 0;
  for (const v of layer) if (v === value) n++;
  return n;
}

describe("brush", () => {
  it("a size-1 brush on a pixel centre sets that one pixel", () => {
    const layer = new Uint8Array(25);
    paintSegment(layer, 5, 5, [2.5, 3.5], [2.5, 3.5], 1, 1);
    expect(count(layer)).toBe(1);
    expect(layer[3 * 5 + 2]).toBe(1);
  });

  it("a disc covers about π r² pixels", () => {
    const layer = new Uint8Array(100 * 100);
    paintSegment(layer, 100, 100, [50, 50], [50, 50], 40, 1);
    expect(Math.abs(count(layer) - Math.PI * 400) / (Math.PI * 400)).toBeLessThan(0.02);
  });

  it("a fast move leaves no gap: the segment is covered end to end", () => {
    const layer = new Uint8Array(200 * 20);
    paintSegment(layer, 200, 20, [5.5, 10.5], [190.5, 10.5], 3, 2);
    for (let x = 5; x <= 190; x++) expect(layer[10 * 200 + x]).toBe(2);
    expect(count(layer, 2)).toBe(186 * 3 + 2 * 3); // three rows along, and a column of three past each end
  });

  it("clips at the image's edges", () => {
    const layer = new Uint8Array(10 * 10);
    expect(paintSegment(layer, 10, 10, [-50, -50], [-40, -40], 8, 1)).toBeNull();
    const rect = paintSegment(layer, 10, 10, [0, 0], [0, 0], 6, 1);
    expect(rect).toEqual({ x0: 0, y0: 0, x1: 4, y1: 4 });
    expect(count(layer)).toBeGreaterThan(0);
  });

  it("keeps the size in 1–64", () => {
    expect([clampBrush(0), clampBrush(12.4), clampBrush(500)]).toEqual([1, 12, 64]);
  });
});

describe("lasso fill", () => {
  it("fills the pixels whose centres are inside", () => {
    const layer = new Uint8Array(10 * 10);
    fillPolygon(layer, 10, 10, [[2, 2], [6, 2], [6, 5], [2, 5]], 1);
    expect(count(layer)).toBe(12);
    expect(layer[2 * 10 + 2]).toBe(1);
    expect(layer[5 * 10 + 2]).toBe(0);
  });

  it("uses the even-odd rule and clips to the image", () => {
    const layer = new Uint8Array(20 * 20);
    // a bow tie: two triangles, the crossing point shared
    fillPolygon(layer, 20, 20, [[0, 0], [10, 10], [0, 20], [0, 0]], 1);
    const left = count(layer);
    expect(left).toBeGreaterThan(40);
    const wide = new Uint8Array(10 * 10);
    fillPolygon(wide, 10, 10, [[-5, -5], [50, -5], [50, 50], [-5, 50]], 1);
    expect(count(wide)).toBe(100);
    expect(fillPolygon(wide, 10, 10, [[0, 0], [1, 1]], 2)).toBeNull();
  });
});

describe("region of interest", () => {
  it("is a closed GeoJSON Polygon in pixel coordinates", () => {
    expect(JSON.parse(roiGeoJson([[1, 2], [30.333, 2], [30, 40]])!)).toEqual({
      type: "Polygon",
      coordinates: [[[1, 2], [30.33, 2], [30, 40], [1, 2]]],
    });
    expect(roiGeoJson([[1, 2], [3, 4]])).toBeNull();
    expect(clampToImage([[-3, 5], [12, 200]], 10, 100)).toEqual([[0, 5], [10, 100]]);
    expect(polygonPath([[0, 0], [4, 0], [4, 3]])).toBe("M0 0L4 0L4 3Z");
  });
});
