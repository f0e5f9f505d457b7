/**
 * Rasterising the brush and the lasso onto the edit layer. A brush of size d covers the pixels whose centres lie
 * within d / 2 of the pointer's path (a capsule per pointer move, so fast moves leave no gaps); a lasso (or any
 * polygon) covers the pixels whose centres lie inside it (even-odd rule), the convention of the region of interest.
 */
import type { Rect } from "./editLayer";

export type Point = readonly [number, number];

export const MIN_BRUSH = 1;
export const MAX_BRUSH = 64;

export function clampBrush(size: number): number {
  return Math.min(MAX_BRUSH, Math.max(MIN_BRUSH, Math.round(size)));
}

/** The pixels a segment of the brush can touch, clipped to the image; null when outside it. */
export function segmentRect(a: Point, b: Point, size: number, width: number, height: number): Rect | null {
  const r = size / 2;
  const x0 = Math.max(0, Math.floor(Math.min(a[0], b[0]) - r));
  const y0 = Math.max(0, Math.floor(Math.min(a[1], b[1]) - r));
  const x1 = Math.min(width, Math.ceil(Math.max(a[0], b[0]) + r) + 1);
  const y1 = Math.min(height, Math.ceil(Math.max(a[1], b[1]) + r) + 1);
  return x0 < x1 && y0 < y1 ? { x0, y0, x1, y1 } : null;
}

/**
 * Sets `value` on the pixels within `size / 2` of the segment a→b (image coordinates, pixel (x, y) spanning
 * [x, x+1) × [y, y+1)); a size-1 brush on a pixel centre sets that one pixel. Returns the rectangle examined.
 */
export function paintSegment(
  layer: Uint8Array,
  width: number,
  height: number,
  a: Point,
  b: Point,
  size: number,
  value: number,
): Rect | null {
  const rect = segmentRect(a, b, size, width, height);
  if (!rect) return null;
  const r = size / 2;
  const r2 = r * r;
  const [ax, ay] = a;
  const dx = b[0] - ax;
  const dy = b[1] - ay;
  const len2 = dx * dx + dy * dy;
  for (let y = rect.y0; y < rect.y1; y++) {
    const py = y + 0.5 - ay;
    const row = y * width;
    for (let x = rect.x0; x < rect.x1; x++) {
      const px = x + 0.5 - ax;
      const t = len2 > 0 ? Math.min(1, Math.max(0, (px * dx + py * dy) / len2)) : 0;
      const ex = px - t * dx;
      const ey = py - t * dy;
      if (ex * ex + ey * ey <= r2) layer[row + x] = value;
    }
  }
  return rect;
}

/**
 * Sets `value` on the pixels whose centres are inside `polygon` (even-odd), by scanlines. Returns the
 * rectangle examined, or null for fewer than three points or a polygon outside the image.
 */
export function fillPolygon(layer: Uint8Array, width: number, height: number, polygon: Point[], value: number): Rect | null {
  if (polygon.length < 3) return null;
  let minY = Infinity;
  let maxY = -Infinity;
  let minX = Infinity;
  let maxX = -Infinity;
  for (const [x, y] of polygon) {
    minY = Math.min(minY, y);
    maxY = Math.max(maxY, y);
    minX = Math.min(minX, x);
    maxX = Math.max(maxX, x);
  }
  const y0 = Math.max(0, Math.floor(minY));
  const y1 = Math.min(height, Math.ceil(maxY) + 1);
  const rect = { x0: Math.max(0, Math.floor(minX)), y0, x1: Math.min(width, Math.ceil(maxX) + 1), y1 };
  if (rect.x0 >= rect.x1 || y0 >= y1) return null;
  const crossings: number[] = [];
  for (let y = y0; y < y1; y++) {
    const cy = y + 0.5;
    crossings.length = 0;
    for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
      const [xi, yi] = polygon[i];
      const [xj, yj] = polygon[j];
      if (yi > cy !== yj > cy) crossings.push(xi + ((cy - yi) / (yj - yi)) * (xj - xi));
    }
    crossings.sort((p, q) => p - q);
    for (let k = 0; k + 1 < crossings.length; k += 2) {
      // pixel x is inside when its centre x + 0.5 lies in [left, right)
      const from = Math.max(0, Math.ceil(crossings[k] - 0.5));
      const to = Math.min(width, Math.ceil(crossings[k + 1] - 0.5));
      if (to > from) layer.fill(value, y * width + from, y * width + to);
    }
  }
  return rect;
}
