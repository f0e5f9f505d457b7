import { describe, expect, it } from "vitest";

import { deviceLabel } from "../src/lib/device";

describe("deviceLabel", () => {
  it("names the GPU, its precision and the memory in use", () => {
    const { label, title } = deviceLabel(
      { type: "cuda", name: "NVIDIA H200", memory_total_mib: 143771, memory_reserved_mib: 2048 },
      "torch",
      "fp16",
    );
    expect(label).toBe("GPU · NVIDIA H200 · fp16");
    expect(title).toBe("NVIDIA H200, torch, fp16, 2.0 of 140 GiB in use");
  });

  it("names the CPU backend and keeps the CPU model for the tooltip", () => {
    const { label, title } = deviceLabel({ type: "cpu", name: "Intel Xeon", threads: 2 }, "onnx", "fp32");
    expect(label).toBe("CPU · onnx");
    expect(title).toBe("Intel Xeon, 2 threads, onnx, fp32");
  });

  it("falls back to the backend alone for a server that does not report its device", () => {
    expect(deviceLabel(undefined, "onnx", undefined)).toEqual({ label: "backend onnx", title: "" });
    expect(deviceLabel(undefined, undefined, undefined).label).toBe("");
  });
});
