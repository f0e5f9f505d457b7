// @vitest-environment happy-dom
import { act, renderHook } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import type { DownloadInputs } from "../../src/hooks/downloadFiles";
import { useDownloads } from "../../src/hooks/useDownloads";

const inputs = { threshold: 0.5 } as unknown as DownloadInputs;

describe("useDownloads", () => {
  it("builds the file, saves it under its name and passes a notice on", async () => {
    const report = { setError: vi.fn(), setNotice: vi.fn() };
    let finish: (() => void) | undefined;
    const build = vi.fn(
      (kind: string) =>
        new Promise<{ blob: Blob; name: string; notice: string | null }>((resolve) => {
          finish = () => resolve({ blob: new Blob(["x"]), name: `photo.${kind}`, notice: "embedded raster" });
        }),
    );
    const save = vi.fn();
    const { result } = renderHook(() => useDownloads(inputs, report, build, save));
    let done: Promise<void> | undefined;
    act(() => {
      done = result.current.download("svg");
    });
    expect(result.current.busyDownload).toBe("svg");
    await act(async () => {
      finish!();
      await done;
    });
    expect(build).toHaveBeenCalledWith("svg", inputs);
    expect(save).toHaveBeenCalledWith(expect.any(Blob), "photo.svg");
    expect(report.setNotice).toHaveBeenCalledWith("embedded raster");
    expect(result.current.busyDownload).toBeNull();
  });

  it("reports a failure and saves nothing; does nothing without a result", async () => {
    const report = { setError: vi.fn(), setNotice: vi.fn() };
    const save = vi.fn();
    const build = vi.fn().mockRejectedValue(new Error("no canvas"));
    const { result, rerender } = renderHook(({ i }) => useDownloads(i, report, build, save), {
      initialProps: { i: inputs as DownloadInputs | null },
    });
    await act(() => result.current.download("mask"));
    expect(report.setError).toHaveBeenLastCalledWith("The download failed: no canvas");
    expect(save).not.toHaveBeenCalled();
    rerender({ i: null });
    await act(() => result.current.download("mask"));
    expect(build).toHaveBeenCalledTimes(1);
  });
});
