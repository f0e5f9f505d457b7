// @vitest-environment happy-dom
import { act, renderHook } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { MEASURE_DEBOUNCE_MS, type MeasureSource, useMeasurements } from "../../src/hooks/useMeasurements";

afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

function readoutFor(url: string) {
  const threshold = Number(new URL(url, "http://x").searchParams.get("threshold"));
  return new Response(JSON.stringify({ threshold, measurements: { area_density: threshold / 10 }, fov: { mode: "none" } }), {
    status: 200,
  });
}

const photo = (key: string): MeasureSource => ({ key, png: () => new Uint8Array([1, 2, 3]), field: null, roi: null });

describe("useMeasurements", () => {
  it("sends one debounced request for quick slider moves and shows only the latest answer", async () => {
    vi.useFakeTimers();
    const fetch = vi.fn(async (url: string) => readoutFor(url));
    vi.stubGlobal("fetch", fetch);
    const source = photo("a");
    const { result, rerender } = renderHook(({ t }) => useMeasurements(source, t), { initialProps: { t: 0.5 } });
    expect(result.current.measuring).toBe(true);
    rerender({ t: 0.4 });
    rerender({ t: 0.3 });
    await act(async () => {
      await vi.advanceTimersByTimeAsync(MEASURE_DEBOUNCE_MS + 1);
    });
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(String(fetch.mock.calls[0][0])).toContain("threshold=0.3");
    expect(result.current.measuring).toBe(false);
    expect((result.current.readout as unknown as { threshold: number }).threshold).toBe(0.3);
  });

  it("clears the numbers of the previous photo and passes the scale on", async () => {
    vi.useFakeTimers();
    const fetch = vi.fn(async (url: string) => readoutFor(url));
    vi.stubGlobal("fetch", fetch);
    const { result, rerender } = renderHook(({ s }) => useMeasurements(s, 0.5), { initialProps: { s: photo("a") } });
    await act(async () => {
      await vi.advanceTimersByTimeAsync(MEASURE_DEBOUNCE_MS + 1);
    });
    expect(result.current.readout).not.toBeNull();
    rerender({ s: photo("b") });
    expect(result.current.readout).toBeNull();
    act(() => result.current.setScale({ kind: "um_per_pixel", text: "10" }));
    await act(async () => {
      await vi.advanceTimersByTimeAsync(MEASURE_DEBOUNCE_MS + 1);
    });
    expect(String(fetch.mock.calls.at(-1)![0])).toContain("um_per_pixel=10");
    act(() => result.current.setScale({ kind: "um_per_pixel", text: "-1" }));
    expect(result.current.scaleError).toMatch(/µm per pixel must be a number/);
  });

  it("measures an edited mask: sends its PNG and threshold, reports the slider's threshold", async () => {
    vi.useFakeTimers();
    const fetch = vi.fn(async (url: string) => readoutFor(url));
    vi.stubGlobal("fetch", fetch);
    const edited: MeasureSource = {
      key: "a",
      png: async () => ({ png: new Uint8Array([9]), threshold: 0.5 }),
      field: null,
      roi: '{"type":"Polygon","coordinates":[[[0,0],[4,0],[4,4],[0,0]]]}',
    };
    const { result } = renderHook(() => useMeasurements(edited, 0));
    await act(async () => {
      await vi.advanceTimersByTimeAsync(MEASURE_DEBOUNCE_MS + 1);
    });
    expect(String(fetch.mock.calls[0][0])).toContain("threshold=0.5");
    const form = (fetch.mock.calls[0] as unknown as [string, RequestInit])[1].body as FormData;
    expect(form.get("roi")).toBe(edited.roi);
    expect(result.current.readout?.threshold).toBe(0);
  });

  it("reports a failed request and clears everything without a photo", async () => {
    vi.useFakeTimers();
    vi.stubGlobal("fetch", vi.fn(async () => new Response(JSON.stringify({ detail: "broken PNG" }), { status: 400 })));
    const { result, rerender } = renderHook(({ s }) => useMeasurements(s, 0.5), {
      initialProps: { s: photo("a") as MeasureSource | null },
    });
    await act(async () => {
      await vi.advanceTimersByTimeAsync(MEASURE_DEBOUNCE_MS + 1);
    });
    expect(result.current.measureError).toBe("broken PNG");
    rerender({ s: null });
    expect(result.current.readout).toBeNull();
  });
});
