/** What the served model runs on, as the header shows it (from `GET /model`'s device, backend and precision). */

export interface DeviceInfo {
  type: "cpu" | "cuda";
  name?: string;
  threads?: number;
  memory_total_mib?: number;
  memory_allocated_mib?: number;
  memory_reserved_mib?: number;
}

/** A short label ("GPU · NVIDIA H200 · fp16", "CPU · onnx") and a longer tooltip with the memory in use. */
export function deviceLabel(
  device: DeviceInfo | undefined,
  backend: string | undefined,
  precision: string | undefined,
): { label: string; title: string } {
  if (!device) return { label: backend ? `backend ${backend}` : "", title: "" };
  if (device.type === "cuda") {
    const parts = ["GPU", device.name ?? "CUDA", precision ?? "fp32"];
    const used = device.memory_reserved_mib ?? device.memory_allocated_mib;
    const memory =
      used !== undefined && device.memory_total_mib
        ? `${(used / 1024).toFixed(1)} of ${(device.memory_total_mib / 1024).toFixed(0)} GiB in use`
        : "";
    return { label: parts.join(" · "), title: [device.name, backend, precision, memory].filter(Boolean).join(", ") };
  }
  const threads = device.threads ? `${device.threads} threads` : "";
  return {
    label: ["CPU", backend ?? "torch"].join(" · "),
    title: [device.name, threads, backend, precision].filter(Boolean).join(", "),
  };
}
