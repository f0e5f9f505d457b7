/**
 * Painting the vessel layer and compositing it over the photo.
 *
 * The live view paints one 32-bit word per pixel through a 256-entry lookup table (probability value → RGBA), so a
 * re-threshold is a single pass over the map; opacity is left to CSS so that moving the opacity slider costs
 * nothing. {@link compositeOverlay} bakes the same blend (photo × (1 − a) + colour × a) into pixels for downloads.
 */
import { cutoffFor } from "./threshold";

export type Rgb = readonly [number, number, number];

/** What the vessel layer shows: the colour over transparency (for the overlay) or white on black (mask only). */
export type LayerStyle = "overlay" | "mask";

/** "#rrggbb" → [r, g, b]; throws on anything else. */
export function parseHexColour(hex: string): Rgb {
  const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex);
  if (!m) throw new Error(`not a #rrggbb colour: ${hex}`);
  return [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16)];
}

/** An RGBA pixel as the little-endian 32-bit word that a Uint32Array view of ImageData holds. */
export function rgbaWord(r: number, g: number, b: number, a = 255): number {
  return ((a << 24) | (b << 16) | (g << 8) | r) >>> 0;
}

/** Lookup table from probability value (0–255) to the layer's RGBA word at `threshold`. */
export function layerLut(threshold: number, style: LayerStyle, colour: Rgb): Uint32Array {
  const cutoff = cutoffFor(threshold);
  const vessel = style === "mask" ? rgbaWord(255, 255, 255) : rgbaWord(...colour);
  const background = style === "mask" ? rgbaWord(0, 0, 0) : 0;
  const lut = new Uint32Array(256);
  for (let v = 0; v < 256; v++) lut[v] = v >= cutoff ? vessel : background;
  return lut;
}

/** Paint `probability` through `lut` into `out` (a Uint32Array view of RGBA pixels of the same length). */
export function paintLayer(probability: Uint8Array, lut: Uint32Array, out: Uint32Array): void {
  if (out.length !== probability.length) throw new RangeError("layer and probability map differ in size");
  for (let i = 0; i < probability.length; i++) out[i] = lut[probability[i]];
}

/**
 * The photo (RGBA, or null for a photo the browser cannot decode: black is used) with vessel pixels blended
 * towards `colour` by `opacity` (0–1), rounded to the nearest integer. Returns opaque RGBA.
 */
export function compositeOverlay(
  photo: Uint8Array | Uint8ClampedArray | null,
  probability: Uint8Array,
  threshold: number,
  colour: Rgb,
  opacity: number,
): Uint8ClampedArray {
  const n = probability.length;
  if (photo && photo.length !== n * 4) throw new RangeError("photo and probability map differ in size");
  const cutoff = cutoffFor(threshold);
  const a = Math.min(1, Math.max(0, opacity));
  const out = new Uint8ClampedArray(n * 4);
  for (let i = 0, j = 0; i < n; i++, j += 4) {
    const vessel = probability[i] >= cutoff;
    for (let c = 0; c < 3; c++) {
      const base = photo ? photo[j + c] : 0;
      out[j + c] = vessel ? Math.round(base * (1 - a) + colour[c] * a) : base;
    }
    out[j + 3] = 255;
  }
  return out;
}
