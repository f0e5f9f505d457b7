import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { mapQuery } from "../src/lib/api";
import { formatNumber, latestOnly, measurementRows, ROW_SPECS, scaleParams } from "../src/lib/measurements";

describe("scaleParams", () => {
  it("sends nothing for pixels or an empty field", () => {
    expect(scaleParams({ kind: "pixels", text: "12" })).toEqual({ params: {}, error: null });
    expect(scaleParams({ kind: "um_per_pixel", text: "  " })).toEqual({ params: {}, error: null });
  });

  it("names the parameter the API expects, accepting a decimal comma", () => {
    expect(scaleParams({ kind: "um_per_pixel", text: "6.5" })).toEqual({ params: { um_per_pixel: "6.5" }, error: null });
    expect(scaleParams({ kind: "fov_degrees", text: "45,5" })).toEqual({ params: { fov_degrees: "45.5" }, error: null });
  });

  it("refuses what the API would refuse, with a message", () => {
    for (const text of ["0", "-3", "abc", "1e9"]) {
      const { params, error } = scaleParams({ kind: "um_per_pixel", text });
      expect(params).toEqual({});
      expect(error).toMatch(/µm per pixel must be a number above 0/);
    }
    expect(scaleParams({ kind: "fov_degrees", text: "250" }).error).toMatch(/at most 200/);
  });

  it("builds the map endpoints' query", () => {
    expect(mapQuery(0.5)).toBe("threshold=0.5");
    expect(mapQuery(0.25, { fov_degrees: "45" })).toBe("threshold=0.25&fov_degrees=45");
  });
});

describe("measurementRows", () => {
  it("formats known keys in the panel's order with units, percentages scaled", () => {
    const rows = measurementRows({ branch_points: 12, area_density: 0.1234, calibre_mean_px: 3.456, fov_area_px: 9 });
    expect(rows.map((r) => r.key)).toEqual(["area_density", "calibre_mean_px", "branch_points"]);
    expect(rows[0]).toMatchObject({ label: "Vessel area density", value: "12.34", unit: "%", physical: null });
    expect(rows[1]).toMatchObject({ value: "3.46", unit: "px", physical: null });
    expect(rows[2]).toMatchObject({ value: "12", unit: "" });
  });

  it("adds the physical value when the server sent it, converting µm to mm where the spec says", () => {
    const rows = measurementRows({
      calibre_mean_px: 7.1,
      calibre_mean_um: 66.74,
      skeleton_length_px: 12345.6,
      skeleton_length_um: 116049.0,
      um_per_pixel: 9.4,
    });
    expect(rows.map((r) => [r.key, r.value, r.physical])).toEqual([
      ["skeleton_length_px", "12,346", "116.05 mm"],
      ["calibre_mean_px", "7.10", "66.7 µm"],
    ]);
    expect(measurementRows({ calibre_mean_px: 7.1, calibre_mean_um: null })[0].physical).toBeNull();
  });

  it("shows null as a dash and appends unknown numeric keys, skipping non-numbers", () => {
    const rows = measurementRows({ tortuosity_arc_chord: null, new_index: 0.5, lacunarity_count: 7, notes: "x", list: [1] });
    expect(rows.map((r) => [r.key, r.value])).toEqual([
      ["tortuosity_arc_chord", "–"],
      ["new_index", "0.500"],
      ["lacunarity_count", "7"],
    ]);
    expect(rows[1].label).toBe("New index");
  });

  it("has one spec per key", () => {
    const keys = ROW_SPECS.flatMap((s) => [s.key, ...(s.physical ? [s.physical.key] : [])]);
    expect(new Set(keys).size).toBe(keys.length);
  });

  it("formats numbers with separators and fixed decimals", () => {
    expect(formatNumber(12345.678, 1)).toBe("12,345.7");
    expect(formatNumber(Number.NaN, 2)).toBe("–");
    expect(formatNumber(undefined, 2)).toBe("–");
  });
});

describe("latestOnly", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("debounces a burst of slider moves into one call with the last value", async () => {
    const calls: number[] = [];
    const results: number[] = [];
    const caller = latestOnly<number, number>(
      150,
      async (t) => {
        calls.push(t);
        return t * 2;
      },
      (r) => results.push(r),
      () => {},
    );
    for (const t of [0.3, 0.31, 0.32, 0.33]) {
      caller.schedule(t);
      await vi.advanceTimersByTimeAsync(50);
    }
    expect(calls).toEqual([]);
    await vi.advanceTimersByTimeAsync(150);
    expect(calls).toEqual([0.33]);
    expect(results).toEqual([0.66]);
  });

  it("aborts the running call when a newer one is scheduled and reports only the newest", async () => {
    const signals: AbortSignal[] = [];
    const resolvers: ((v: string) => void)[] = [];
    const results: string[] = [];
    const errors: unknown[] = [];
    const caller = latestOnly<string, string>(
      10,
      (args, signal) =>
        new Promise<string>((resolve, reject) => {
          signals.push(signal);
          resolvers.push(resolve);
          signal.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")));
        }),
      (r) => results.push(r),
      (e) => errors.push(e),
    );
    caller.schedule("first");
    await vi.advanceTimersByTimeAsync(10);
    caller.schedule("second");
    expect(signals[0].aborted).toBe(true);
    await vi.advanceTimersByTimeAsync(10);
    resolvers[0]("first"); // too late: superseded
    resolvers[1]("second");
    await vi.runAllTimersAsync();
    expect(results).toEqual(["second"]);
    expect(errors).toEqual([]);
  });

  it("reports the latest call's failure, and nothing after cancel", async () => {
    const errors: unknown[] = [];
    const results: number[] = [];
    const caller = latestOnly<number, number>(
      5,
      async (n) => {
        if (n < 0) throw new Error("negative");
        return n;
      },
      (r) => results.push(r),
      (e) => errors.push((e as Error).message),
    );
    caller.schedule(-1);
    await vi.advanceTimersByTimeAsync(5);
    expect(errors).toEqual(["negative"]);
    caller.schedule(1);
    caller.cancel();
    await vi.advanceTimersByTimeAsync(50);
    expect(results).toEqual([]);
  });
});
