// @vitest-environment happy-dom
import { act, renderHook } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { DEFAULT_THRESHOLD, useLayerSettings } from "../../src/hooks/useLayerSettings";

describe("useLayerSettings", () => {
  it("adopts the model's recommended threshold until the user moves the slider", () => {
    const { result } = renderHook(() => useLayerSettings());
    expect(result.current.threshold).toBe(DEFAULT_THRESHOLD);
    act(() => result.current.adoptRecommended(0.42));
    expect(result.current.threshold).toBe(0.42);
    expect(result.current.inputAt.current).toBeNull(); // not a user input: nothing to time
    act(() => result.current.setThreshold(0.7));
    expect(result.current.threshold).toBe(0.7);
    expect(result.current.inputAt.current).toEqual(expect.any(Number));
    act(() => result.current.adoptRecommended(0.3));
    expect(result.current.threshold).toBe(0.7);
  });

  it("keeps colour, opacity, view and the field switch", () => {
    const { result } = renderHook(() => useLayerSettings());
    act(() => {
      result.current.setColour("#00ff00");
      result.current.setOpacity(0.25);
      result.current.setView("mask");
      result.current.setShowField(false);
    });
    expect([result.current.colour, result.current.opacity, result.current.view, result.current.showField]).toEqual([
      "#00ff00",
      0.25,
      "mask",
      false,
    ]);
  });
});
