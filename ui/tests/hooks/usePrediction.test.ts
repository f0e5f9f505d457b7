// @vitest-environment happy-dom
import { act, renderHook } from "@testing-library/react";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { ApiError } from "../../src/lib/api";

import { usePrediction as usePredictionWith } from "../../src/hooks/usePrediction";

const segmentPhoto = vi.fn();
const usePrediction = () => usePredictionWith(segmentPhoto);

const jpeg = (name = "eye.jpg") => new File([new Uint8Array(10)], name, { type: "image/jpeg" });
const fakeResult = (id: string) => ({ id, photoUrl: null, photo: null }) as never;

beforeEach(() => {
  segmentPhoto.mockReset();
});

describe("usePrediction", () => {
  it("refuses a file that is not a photo without calling the server", async () => {
    const { result } = renderHook(() => usePrediction());
    await act(() => result.current.segment(new File(["hi"], "notes.txt", { type: "text/plain" })));
    expect(result.current.error).toBe("notes.txt is a text/plain file. Choose a PNG, JPEG, TIFF, BMP or WebP photo.");
    expect(segmentPhoto).not.toHaveBeenCalled();
  });

  it("shows progress, then the result and the notice", async () => {
    segmentPhoto.mockImplementation(async (_f, _d, onProgress: (p: string, f: number | null) => void) => {
      onProgress("segmenting", null);
      return { result: fakeResult("r1"), notice: "no field" };
    });
    const { result } = renderHook(() => usePrediction());
    await act(() => result.current.segment(jpeg()));
    expect(result.current.result).toEqual(fakeResult("r1"));
    expect(result.current.notice).toBe("no field");
    expect(result.current.progress).toBeNull();
    expect(result.current.error).toBeNull();
  });

  it("names the photo and the status in the server's error", async () => {
    segmentPhoto.mockRejectedValue(new ApiError("not an image", 415));
    const { result } = renderHook(() => usePrediction());
    await act(() => result.current.segment(jpeg("fake.png")));
    expect(result.current.error).toBe("The server could not segment fake.png (415): not an image");
  });

  it("a newer photo aborts the one before, whose answer is dropped; cancel says so", async () => {
    const signals: AbortSignal[] = [];
    segmentPhoto.mockImplementation(
      (_f: File, _d: boolean, _p: unknown, signal: AbortSignal) =>
        new Promise((resolve) => {
          signals.push(signal);
          signal.addEventListener("abort", () => resolve(null));
        }),
    );
    const { result } = renderHook(() => usePrediction());
    act(() => void result.current.segment(jpeg("a.jpg")));
    expect(result.current.progress?.fileName).toBe("a.jpg");
    act(() => void result.current.segment(jpeg("b.jpg")));
    expect(signals[0].aborted).toBe(true);
    expect(result.current.progress?.fileName).toBe("b.jpg");
    await act(async () => result.current.cancel());
    expect(signals[1].aborted).toBe(true);
    expect(result.current.progress).toBeNull();
    expect(result.current.notice).toBe("Segmentation cancelled.");
    expect(result.current.result).toBeNull();
  });
});
