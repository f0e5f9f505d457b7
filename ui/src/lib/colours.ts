/**
 * The layer colours. Eye photos are red-orange (fundus) or white-pink (sclera, conjunctiva), so the defaults come
 * from the hues opposite: the model's vessels in cyan-blue, and the edits in colours that stand apart from it and
 * from each other: added vessel in green, removed vessel in violet.
 */
export const MASK_COLOUR = "#00c8ff";
export const ADDED_COLOUR = "#33ff44";
export const REMOVED_COLOUR = "#a64dff";

/** Hue of "#rrggbb" in degrees [0, 360). */
export function hueOf(hex: string): number {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255);
  const max = Math.max(r, g, b);
  const d = max - Math.min(r, g, b);
  if (d === 0) return 0;
  const h = max === r ? ((g - b) / d) % 6 : max === g ? (b - r) / d + 2 : (r - g) / d + 4;
  return (h * 60 + 360) % 360;
}

/** Smallest angle between two hues, in degrees [0, 180]. */
export function hueDistance(a: number, b: number): number {
  const d = Math.abs(a - b) % 360;
  return d > 180 ? 360 - d : d;
}
