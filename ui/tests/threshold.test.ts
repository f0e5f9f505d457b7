import { describe, expect, it } from "vitest";
import { countAtOrAbove, cutoffFor, histogram, thresholdMask, vesselFraction } from "../src/lib/threshold";

describe("cutoffFor", () => {
  it("is the smallest v with v / 255 >= t, for every slider step and finer", () => {
    for (let n = 0; n <= 10000; n++) {
      const t = Number((n / 10000).toFixed(4)); // slider values parse like this
      const k = cutoffFor(t);
      if (k <= 255) expect(k / 255 >= t).toBe(true);
      if (k > 0) expect((k - 1) / 255 >= t).toBe(false);
    }
  });

  it("handles exact multiples, float noise and the ends", () => {
    expect(cutoffFor(0.2)).toBe(51);
    expect(cutoffFor(0.5)).toBe(128);
    expect(cutoffFor(0)).toBe(0);
    expect(cutoffFor(-1)).toBe(0);
    expect(cutoffFor(1)).toBe(255);
    expect(cutoffFor(1.01)).toBe(256);
    expect(cutoffFor(51 / 255)).toBe(51);
    expect(() => cutoffFor(Number.NaN)).toThrow(RangeError);
  });
});

describe("thresholdMask and fractions", () => {
  const probability = new Uint8Array([0, 50, 127, 128, 200, 255]);

  it("marks v >= cutoff as 255", () => {
    expect([...thresholdMask(probability, 0.5)]).toEqual([0, 0, 0, 255, 255, 255]);
    expect([...thresholdMask(probability, 0)]).toEqual([255, 255, 255, 255, 255, 255]);
    expect([...thresholdMask(probability, 1)]).toEqual([0, 0, 0, 0, 0, 255]);
    expect([...thresholdMask(probability, 50 / 255)]).toEqual([0, 255, 255, 255, 255, 255]);
  });

  it("counts from the histogram exactly as the mask does", () => {
    const bins = histogram(probability);
    expect(countAtOrAbove(bins, 0)).toBe(6);
    for (const t of [0, 0.1, 0.2, 0.5, 0.51, 0.99, 1]) {
      const inMask = thresholdMask(probability, t).filter((v) => v === 255).length;
      expect(vesselFraction(bins, t)).toBeCloseTo(inMask / 6, 12);
    }
    expect(vesselFraction(histogram(new Uint8Array(0)), 0.5)).toBe(0);
  });
});
