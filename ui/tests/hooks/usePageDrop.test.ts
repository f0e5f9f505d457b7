// @vitest-environment happy-dom
import { renderHook } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import { usePageDrop } from "../../src/hooks/usePageDrop";

function drop(file: File | null, takenByZone = false): Event {
  const event = new Event("drop", { cancelable: true }) as Event & { dataTransfer: unknown };
  Object.defineProperty(event, "dataTransfer", { value: { files: file ? [file] : [] } });
  if (takenByZone) event.preventDefault();
  window.dispatchEvent(event);
  return event;
}

describe("usePageDrop", () => {
  it("hands a photo dropped on the page to onFile, but not one the drop zone took", () => {
    const onFile = vi.fn();
    const { unmount } = renderHook(() => usePageDrop(onFile));
    const file = new File(["x"], "eye.jpg", { type: "image/jpeg" });
    expect(drop(file).defaultPrevented).toBe(true);
    drop(file, true);
    expect(onFile).toHaveBeenCalledTimes(1);
    unmount();
    drop(file);
    expect(onFile).toHaveBeenCalledTimes(1);
  });
});
