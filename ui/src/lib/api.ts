/** Client for the vessel-serve API (same origin): model info and the probability map of a photo. */

import type { DeviceInfo } from "@/lib/device";

export interface ModelContractInfo {
  threshold: number;
  size: [number, number];
  encoder: string;
  mode: "resize" | "tiles";
  dataset: string;
  [key: string]: unknown;
}

export interface ModelInfo {
  name: string;
  version: string;
  alias: string | null;
  uri?: string;
  run_id?: string;
  backend?: string;
  precision?: string;
  device?: DeviceInfo;
  load_seconds?: number;
  metrics?: Record<string, number>;
  contract: ModelContractInfo;
}

/** An API answer that was not a success; `message` is the server's `detail` when it sent one. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** The server's `{"detail": …}` as one readable line (FastAPI validation errors are a list of objects). */
export function detailMessage(body: unknown, status: number, statusText = ""): string {
  const detail = (body as { detail?: unknown } | null)?.detail;
  if (typeof detail === "string" && detail) return detail;
  if (Array.isArray(detail)) {
    const parts = detail.map((d) =>
      typeof d === "object" && d && "msg" in d
        ? `${Array.isArray((d as { loc?: unknown }).loc) ? (d as { loc: unknown[] }).loc.join(".") + ": " : ""}${(d as { msg: unknown }).msg}`
        : JSON.stringify(d),
    );
    if (parts.length) return parts.join("; ");
  }
  return `The server answered ${status}${statusText ? ` ${statusText}` : ""}.`;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

export async function fetchModel(signal?: AbortSignal): Promise<ModelInfo> {
  const response = await fetch("/model", { signal, headers: { Accept: "application/json" } });
  const text = await response.text();
  if (!response.ok) throw new ApiError(detailMessage(parseJson(text), response.status, response.statusText), response.status);
  return parseJson(text) as ModelInfo;
}

export interface Prediction {
  /** The probability PNG exactly as the server sent it. */
  png: Uint8Array;
  modelName: string | null;
  modelVersion: string | null;
  inferenceMs: number | null;
}

export type PredictPhase = "uploading" | "segmenting" | "downloading";

/**
 * `POST /predict?format=probability` with the photo. XMLHttpRequest rather than fetch for upload progress.
 * `onProgress(phase, fraction)` gets a fraction in [0, 1] or null when unknown. Rejects with {@link ApiError}
 * (server's message) or an Error for network failures; `signal` aborts with a DOMException "AbortError".
 */
export function predictProbability(
  file: Blob,
  onProgress: (phase: PredictPhase, fraction: number | null) => void,
  signal?: AbortSignal,
): Promise<Prediction> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/predict?format=probability");
    xhr.responseType = "arraybuffer";
    xhr.upload.onprogress = (e) => onProgress("uploading", e.lengthComputable ? e.loaded / e.total : null);
    xhr.upload.onload = () => onProgress("segmenting", null);
    xhr.onprogress = (e) => onProgress("downloading", e.lengthComputable ? e.loaded / e.total : null);
    xhr.onerror = () => reject(new Error("Could not reach the server. Is vessel-serve running?"));
    xhr.onabort = () => reject(new DOMException("Prediction cancelled", "AbortError"));
    xhr.onload = () => {
      const bytes = new Uint8Array(xhr.response as ArrayBuffer);
      if (xhr.status < 200 || xhr.status >= 300) {
        const body = parseJson(new TextDecoder().decode(bytes));
        reject(new ApiError(detailMessage(body, xhr.status, xhr.statusText), xhr.status));
        return;
      }
      const ms = Number.parseFloat(xhr.getResponseHeader("X-Inference-Time-Ms") ?? "");
      resolve({
        png: bytes,
        modelName: xhr.getResponseHeader("X-Model-Name"),
        modelVersion: xhr.getResponseHeader("X-Model-Version"),
        inferenceMs: Number.isFinite(ms) ? ms : null,
      });
    };
    signal?.addEventListener("abort", () => xhr.abort(), { once: true });
    const form = new FormData();
    form.append("file", file, (file as File).name ?? "photo");
    xhr.send(form);
  });
}
