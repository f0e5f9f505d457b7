/**
 * Thresholding the 8-bit probability map that `POST /predict?format=probability` returns (v = probability × 255).
 *
 * The rule, shared with the server's `format=mask`: a pixel is vessel when v / 255 ≥ t, compared in float64.
 * For every t that is the same as v ≥ cutoffFor(t), so a whole map is thresholded with one integer comparison
 * per pixel, and the vessel count at any t comes from a 256-bin histogram computed once per prediction.
 */

/** Smallest 8-bit value v with v / 255 ≥ t (float64), 0 for t ≤ 0 and 256 (nothing is vessel) for t > 1. */
export function cutoffFor(threshold: number): number {
  if (Number.isNaN(threshold)) throw new RangeError("threshold is NaN");
  if (threshold <= 0) return 0;
  if (threshold > 1) return 256;
  let k = Math.ceil(threshold * 255);
  // guard against threshold * 255 rounding across an integer: the definition is the float64 comparison itself
  while (k > 0 && (k - 1) / 255 >= threshold) k--;
  while (k <= 255 && k / 255 < threshold) k++;
  return k;
}

/** 256-bin histogram of an 8-bit map. */
export function histogram(values: Uint8Array): Uint32Array {
  const bins = new Uint32Array(256);
  for (let i = 0; i < values.length; i++) bins[values[i]]++;
  return bins;
}

/** Number of pixels with value ≥ `cutoff`, from a {@link histogram}. */
export function countAtOrAbove(bins: Uint32Array, cutoff: number): number {
  let n = 0;
  for (let v = Math.max(0, cutoff); v < 256; v++) n += bins[v];
  return n;
}

/** Fraction of pixels that are vessel at `threshold`, from a {@link histogram} (0 for an empty map). */
export function vesselFraction(bins: Uint32Array, threshold: number): number {
  const total = countAtOrAbove(bins, 0);
  return total ? countAtOrAbove(bins, cutoffFor(threshold)) / total : 0;
}

/** Binary mask {0, 255} of `probability` at `threshold`: the same pixels as the API's `format=mask`. */
export function thresholdMask(probability: Uint8Array, threshold: number): Uint8Array {
  const cutoff = cutoffFor(threshold);
  const mask = new Uint8Array(probability.length);
  for (let i = 0; i < probability.length; i++) mask[i] = probability[i] >= cutoff ? 255 : 0;
  return mask;
}
