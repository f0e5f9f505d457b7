import { describe, expect, it } from "vitest";
import { COORD_SCALE, contourSvg, contoursToPathData, traceContours } from "../src/lib/contours";

/** Area enclosed by a polygon (shoelace), signed, in pixels². */
function area(polygon: Int32Array): number {
  let s = 0;
  const n = polygon.length / 2;
  for (let k = 0; k < n; k++) {
    const [x0, y0] = [polygon[2 * k], polygon[2 * k + 1]];
    const [x1, y1] = [polygon[(2 * ((k + 1) % n))], polygon[2 * ((k + 1) % n) + 1]];
    s += x0 * y1 - x1 * y0;
  }
  return s / 2 / COORD_SCALE ** 2;
}

function map(rows: number[][]): [Uint8Array, number, number] {
  return [new Uint8Array(rows.flat()), rows[0].length, rows.length];
}

describe("traceContours", () => {
  it("outlines a single pixel as a diamond through the half-way points", () => {
    const [p, w, h] = map([
      [0, 0, 0],
      [0, 255, 0],
      [0, 0, 0],
    ]);
    const { polygons, vertexCount, truncated } = traceContours(p, w, h, 0.5);
    expect(truncated).toBe(false);
    expect(polygons).toHaveLength(1);
    expect(vertexCount).toBe(4);
    // level 127.5 between 0 and 255: half-way, so the diamond's corners are 0.5 px from the pixel center (1.5, 1.5)
    const points = new Set<string>();
    for (let k = 0; k < 8; k += 2) points.add(`${polygons[0][k] / COORD_SCALE},${polygons[0][k + 1] / COORD_SCALE}`);
    expect(points).toEqual(new Set(["1.5,1", "2,1.5", "1.5,2", "1,1.5"]));
    expect(Math.abs(area(polygons[0]))).toBeCloseTo(0.5, 6);
  });

  it("closes outlines at the border and merges straight runs", () => {
    const [p, w, h] = map([
      [255, 255, 255, 255],
      [255, 255, 255, 255],
      [0, 0, 0, 0],
    ]);
    const { polygons } = traceContours(p, w, h, 0.5);
    expect(polygons).toHaveLength(1);
    // a rectangle: 4 straight sides need 4 corner-cutting points each side of each corner at most
    expect(polygons[0].length / 2).toBeLessThanOrEqual(8);
    expect(Math.abs(area(polygons[0]))).toBeGreaterThan(6);
  });

  it("traces a hole in the opposite sense to its outer boundary", () => {
    const [p, w, h] = map([
      [255, 255, 255, 255, 255],
      [255, 0, 0, 0, 255],
      [255, 0, 0, 0, 255],
      [255, 255, 255, 255, 255],
    ]);
    const { polygons } = traceContours(p, w, h, 0.5);
    expect(polygons).toHaveLength(2);
    const areas = polygons.map(area).sort((a, b) => Math.abs(b) - Math.abs(a));
    expect(Math.sign(areas[0])).toBe(-Math.sign(areas[1]));
    expect(Math.abs(areas[0])).toBeGreaterThan(Math.abs(areas[1]));
  });

  it("joins or splits a saddle by the mean of the cell", () => {
    const joined = traceContours(...map([
      [255, 100],
      [100, 255],
    ]), 0.5); // mean 177.5 >= 127.5: one outline around both pixels
    expect(joined.polygons).toHaveLength(1);
    const split = traceContours(...map([
      [200, 0],
      [0, 200],
    ]), 0.5); // mean 100 < 127.5: two separate outlines
    expect(split.polygons).toHaveLength(2);
  });

  it("follows the threshold: nothing above 1, everything at 0", () => {
    const [p, w, h] = map([
      [10, 20],
      [30, 40],
    ]);
    expect(traceContours(p, w, h, 1).polygons).toHaveLength(0);
    const all = traceContours(p, w, h, 0);
    expect(all.polygons).toHaveLength(1);
    expect(traceContours(p, w, h, 25 / 255).polygons).toHaveLength(1);
  });

  it("stops and flags truncation past maxVertices", () => {
    const checker = new Uint8Array(20 * 20).map((_, i) => ((i % 20) + Math.floor(i / 20)) % 4 === 0 ? 255 : 0);
    const result = traceContours(checker, 20, 20, 0.5, 10);
    expect(result.truncated).toBe(true);
    expect(result.vertexCount).toBeGreaterThan(10);
  });
});

describe("contourSvg", () => {
  const [p, w, h] = map([
    [0, 0, 0],
    [0, 255, 0],
    [0, 0, 0],
  ]);

  it("writes the photo and one evenodd path", () => {
    const contours = traceContours(p, w, h, 0.5);
    expect(contoursToPathData(contours.polygons)).toMatch(/^M[\d.]+ [\d.]+L([\d.]+ ){5}[\d.]+Z$/);
    const svg = contourSvg({ width: w, height: h, photoHref: "data:image/png;base64,AAAA", contours, colour: "#ffe600",
      opacity: 0.6, threshold: 0.5, title: "a <test> & more" });
    expect(svg).toContain('viewBox="0 0 3 3"');
    expect(svg).toContain('<image id="photo" x="0" y="0" width="3" height="3" href="data:image/png;base64,AAAA"/>');
    expect(svg).toContain('fill-rule="evenodd"');
    expect(svg).toContain("a &#60;test&#62; &#38; more");
    expect(svg.match(/<path /g)).toHaveLength(1);
  });

  it("falls back to a raster layer when truncated, and says so", () => {
    const contours = { ...traceContours(p, w, h, 0.5), truncated: true };
    const svg = contourSvg({ width: w, height: h, photoHref: null, contours, rasterHref: "data:image/png;base64,BBBB",
      colour: "#ffe600", opacity: 0.6, threshold: 0.5, title: "t" });
    expect(svg).not.toContain("<path");
    expect(svg).toContain('<image id="vessels"');
    expect(svg).toContain("embedded as a PNG layer");
    expect(svg).toContain('<rect id="photo"');
    expect(() => contourSvg({ width: w, height: h, photoHref: null, contours, colour: "#fff", opacity: 1, threshold: 0.5,
      title: "t" })).toThrow();
  });
});
