/**
 * The edit layer: one byte per pixel over the model's thresholded mask, {@link KEEP} (the model decides),
 * {@link FORCE_VESSEL} or {@link FORCE_BACKGROUND}. The mask shown, measured, downloaded and saved is
 * `edit == FORCE_VESSEL || (edit == KEEP && probability ≥ cutoff)`, so moving the threshold never undoes an edit.
 * Painting uses one 768-entry lookup table indexed by `(edit << 8) | probability`: one lookup per pixel.
 */
import type { LayerStyle, Rgb } from "./overlay";
import { rgbaWord } from "./overlay";
import { cutoffFor } from "./threshold";

export const KEEP = 0;
export const FORCE_VESSEL = 1;
export const FORCE_BACKGROUND = 2;

/** A pixel rectangle [x0, x1) × [y0, y1). */
export interface Rect {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

export function unionRect(a: Rect | null, b: Rect | null): Rect | null {
  if (!a) return b;
  if (!b) return a;
  return { x0: Math.min(a.x0, b.x0), y0: Math.min(a.y0, b.y0), x1: Math.max(a.x1, b.x1), y1: Math.max(a.y1, b.y1) };
}

export interface EditColours {
  vessel: Rgb;
  added: Rgb;
  removed: Rgb;
}

/**
 * Lookup table for {@link paintComposite}. Overlay: the model's vessels (kept or forced) in `vessel`, vessel the
 * model missed but the user added in `added`, vessel the user removed in `removed`, the rest transparent. Mask:
 * the final mask in white on black.
 */
export function compositeLut(threshold: number, style: LayerStyle, colours: EditColours): Uint32Array {
  const cutoff = cutoffFor(threshold);
  const lut = new Uint32Array(768);
  const white = rgbaWord(255, 255, 255);
  const black = rgbaWord(0, 0, 0);
  const vessel = style === "mask" ? white : rgbaWord(...colours.vessel);
  const none = style === "mask" ? black : 0;
  const added = style === "mask" ? white : rgbaWord(...colours.added);
  const removed = style === "mask" ? black : rgbaWord(...colours.removed);
  for (let v = 0; v < 256; v++) {
    const model = v >= cutoff;
    lut[(KEEP << 8) | v] = model ? vessel : none;
    lut[(FORCE_VESSEL << 8) | v] = model ? vessel : added;
    lut[(FORCE_BACKGROUND << 8) | v] = model ? removed : none;
  }
  return lut;
}

/** Paint the composite of `probability` and `edits` through `lut` into `out` (RGBA words), in `rect` or all. */
export function paintComposite(
  probability: Uint8Array,
  edits: Uint8Array,
  width: number,
  lut: Uint32Array,
  out: Uint32Array,
  rect?: Rect,
): void {
  if (out.length !== probability.length || edits.length !== probability.length) {
    throw new RangeError("layer, edits and probability map differ in size");
  }
  if (!rect) {
    for (let i = 0; i < probability.length; i++) out[i] = lut[(edits[i] << 8) | probability[i]];
    return;
  }
  for (let y = rect.y0; y < rect.y1; y++) {
    const end = y * width + rect.x1;
    for (let i = y * width + rect.x0; i < end; i++) out[i] = lut[(edits[i] << 8) | probability[i]];
  }
}

/**
 * The final mask {0, 255} at `threshold`; with `clip` (a {0, 255} field, e.g. the region of interest) nothing
 * outside it is vessel.
 */
export function composedMask(
  probability: Uint8Array,
  edits: Uint8Array | null,
  threshold: number,
  clip: Uint8Array | null = null,
): Uint8Array {
  const cutoff = cutoffFor(threshold);
  const mask = new Uint8Array(probability.length);
  for (let i = 0; i < probability.length; i++) {
    const e = edits ? edits[i] : KEEP;
    const vessel = e === FORCE_VESSEL || (e === KEEP && probability[i] >= cutoff);
    mask[i] = vessel && (!clip || clip[i]) ? 255 : 0;
  }
  return mask;
}

/** Vessel pixels of the final mask, and how many the edits added to / removed from the model's mask. */
export function editCounts(
  probability: Uint8Array,
  edits: Uint8Array,
  threshold: number,
): { vessel: number; added: number; removed: number } {
  const cutoff = cutoffFor(threshold);
  let vessel = 0;
  let added = 0;
  let removed = 0;
  for (let i = 0; i < probability.length; i++) {
    const model = probability[i] >= cutoff;
    const e = edits[i];
    if (e === FORCE_VESSEL) {
      vessel++;
      if (!model) added++;
    } else if (e === FORCE_BACKGROUND) {
      if (model) removed++;
    } else if (model) vessel++;
  }
  return { vessel, added, removed };
}

/** True when any pixel is forced. */
export function hasEdits(edits: Uint8Array): boolean {
  for (let i = 0; i < edits.length; i++) if (edits[i] !== KEEP) return true;
  return false;
}

/** An edit layer that makes the final mask exactly `mask` (nonzero = vessel) at every threshold. */
export function editsFromMask(mask: Uint8Array): Uint8Array {
  const edits = new Uint8Array(mask.length);
  for (let i = 0; i < mask.length; i++) edits[i] = mask[i] ? FORCE_VESSEL : FORCE_BACKGROUND;
  return edits;
}
