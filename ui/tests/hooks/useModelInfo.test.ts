// @vitest-environment happy-dom
import { act, renderHook } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { MODEL_RETRY_LOADING_MS, useModelInfo } from "../../src/hooks/useModelInfo";

const MODEL = { name: "vessel-unet", version: "3", contract: { threshold: 0.45 } };

function answer(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

describe("useModelInfo", () => {
  it("retries while the model loads (503), then reports it and its threshold", async () => {
    vi.useFakeTimers();
    const fetch = vi
      .fn()
      .mockResolvedValueOnce(answer(503, { detail: "the model is still loading" }))
      .mockResolvedValueOnce(answer(200, MODEL));
    vi.stubGlobal("fetch", fetch);
    const onContract = vi.fn();
    const { result } = renderHook(() => useModelInfo(onContract));
    await act(async () => {
      await vi.advanceTimersByTimeAsync(0);
    });
    expect(result.current.model).toBeNull();
    expect(result.current.modelError).toBe("the model is still loading");
    await act(async () => {
      await vi.advanceTimersByTimeAsync(MODEL_RETRY_LOADING_MS);
    });
    expect(fetch).toHaveBeenCalledTimes(2);
    expect(result.current.model?.name).toBe("vessel-unet");
    expect(result.current.modelError).toBeNull();
    expect(onContract).toHaveBeenCalledWith(0.45);
  });

  it("stops retrying once unmounted", async () => {
    vi.useFakeTimers();
    const fetch = vi.fn().mockResolvedValue(answer(503, { detail: "loading" }));
    vi.stubGlobal("fetch", fetch);
    const { unmount } = renderHook(() => useModelInfo());
    await act(async () => {
      await vi.advanceTimersByTimeAsync(0);
    });
    unmount();
    await vi.advanceTimersByTimeAsync(MODEL_RETRY_LOADING_MS * 3);
    expect(fetch).toHaveBeenCalledTimes(1);
  });
});
