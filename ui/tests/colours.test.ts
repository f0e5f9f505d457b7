import { describe, expect, it } from "vitest";
import { ADDED_COLOUR, hueDistance, hueOf, MASK_COLOUR, REMOVED_COLOUR } from "../src/lib/colours";

// Typical backgrounds: a CHASE_DB1 fundus (red-orange) and a white-pink sclera.
const FUNDUS = "#b4461e";
const SCLERA = "#f2d6d0";

describe("layer colours", () => {
  it("reads hues", () => {
    expect(hueOf("#ff0000")).toBe(0);
    expect(hueOf("#00ff00")).toBe(120);
    expect(hueOf("#0000ff")).toBe(240);
    expect(hueDistance(350, 10)).toBe(20);
  });

  it("stand far from the fundus and sclera hues, and apart from each other", () => {
    for (const colour of [MASK_COLOUR, ADDED_COLOUR, REMOVED_COLOUR]) {
      for (const ground of [FUNDUS, SCLERA]) {
        expect(hueDistance(hueOf(colour), hueOf(ground)), `${colour} on ${ground}`).toBeGreaterThanOrEqual(90);
      }
    }
    const layers = [MASK_COLOUR, ADDED_COLOUR, REMOVED_COLOUR].map(hueOf);
    for (let i = 0; i < 3; i++) {
      for (let j = i + 1; j < 3; j++) expect(hueDistance(layers[i], layers[j])).toBeGreaterThanOrEqual(60);
    }
  });
});
