// @vitest-environment happy-dom
import { act, renderHook, waitFor } from "@testing-library/react";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { useAnnotations } from "../../src/hooks/useAnnotations";
import { ApiError } from "../../src/lib/api";

const saved = { id: "a".repeat(64), version: 1, count: 4, vessel_pixels: 10, added: 2, removed: 1, status: "final", annotator: "Ana" } as const;

function fakeApi() {
  return {
    fetchAnnotationSettings: vi.fn().mockResolvedValue({ enabled: true, count: 3, worklist: true }),
    saveAnnotation: vi.fn().mockResolvedValue(saved),
    nextWorklistPhoto: vi.fn(),
  };
}

const parts = async () => ({ photo: new File(["x"], "eye.jpg"), maskPng: new Uint8Array([1]), modelMaskPng: null, roi: null, threshold: 0.5 });

beforeEach(() => localStorage.clear());

describe("useAnnotations", () => {
  it("asks the name once and keeps it in localStorage; saves with status and note; shows the id and count", async () => {
    const api = fakeApi();
    const { result } = renderHook(() => useAnnotations(api));
    await waitFor(() => expect(result.current.settings?.count).toBe(3));
    await act(async () => {
      await result.current.save(parts);
    });
    expect(api.saveAnnotation).not.toHaveBeenCalled();
    expect(result.current.error).toMatch(/Enter your name/);
    act(() => {
      result.current.setAnnotator("Ana ");
      result.current.setStatus("final");
      result.current.setNote("fixed the disc");
    });
    expect(localStorage.getItem("vessel-annotator")).toBe("Ana");
    await act(async () => {
      await result.current.save(parts);
    });
    expect(api.saveAnnotation.mock.calls[0][0]).toMatchObject({ annotator: "Ana", status: "final", note: "fixed the disc", threshold: 0.5 });
    expect(result.current.saved?.id).toBe(saved.id);
    expect(result.current.settings?.count).toBe(4);
    const again = renderHook(() => useAnnotations(api));
    await waitFor(() => expect(again.result.current.annotator).toBe("Ana"));
  });

  it("says why a save failed, and that the worklist is done", async () => {
    const api = fakeApi();
    api.saveAnnotation.mockRejectedValue(new ApiError("annotation: 10x10 is not the photo's size", 422));
    api.nextWorklistPhoto.mockResolvedValueOnce({ file: new File(["x"], "b.jpg"), remaining: 2 }).mockResolvedValueOnce(null);
    localStorage.setItem("vessel-annotator", "Ana");
    const { result } = renderHook(() => useAnnotations(api));
    await waitFor(() => expect(result.current.annotator).toBe("Ana"));
    await act(async () => {
      await result.current.save(parts);
    });
    expect(result.current.error).toBe("Saving the annotation failed: annotation: 10x10 is not the photo's size (422)");
    let file: File | null = null;
    await act(async () => {
      file = await result.current.next();
    });
    expect(file!.name).toBe("b.jpg");
    expect(result.current.worklistNote).toBe("2 photos without an annotation left.");
    await act(async () => {
      file = await result.current.next();
    });
    expect(file).toBeNull();
    expect(result.current.worklistNote).toMatch(/worklist is done/);
  });

  it("treats a server that cannot tell as keeping no annotations", async () => {
    const api = fakeApi();
    api.fetchAnnotationSettings.mockRejectedValue(new Error("unreachable"));
    const { result } = renderHook(() => useAnnotations(api));
    await waitFor(() => expect(result.current.settings).toEqual({ enabled: false, count: 0, worklist: false }));
  });
});
