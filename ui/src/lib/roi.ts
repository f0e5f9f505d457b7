/** The region of interest: a polygon in pixel coordinates, sent to the API as a GeoJSON Polygon (field `roi`). */
import type { Point } from "./brush";

/** The polygon as GeoJSON Polygon text (the ring closed, coordinates rounded to 0.01 px); null under 3 points. */
export function roiGeoJson(points: readonly Point[]): string | null {
  if (points.length < 3) return null;
  const ring = points.map(([x, y]) => [round(x), round(y)]);
  ring.push([...ring[0]]);
  return JSON.stringify({ type: "Polygon", coordinates: [ring] });
}

function round(v: number): number {
  return Math.round(v * 100) / 100;
}

/** The points clamped into a width × height photo. */
export function clampToImage(points: readonly Point[], width: number, height: number): Point[] {
  return points.map(([x, y]) => [Math.min(width, Math.max(0, x)), Math.min(height, Math.max(0, y))] as const);
}

/** SVG path data of a closed polygon. */
export function polygonPath(points: readonly Point[], close = true): string {
  if (!points.length) return "";
  return points.map(([x, y], i) => `${i ? "L" : "M"}${x} ${y}`).join("") + (close ? "Z" : "");
}
