/** Client for the vessel-serve API (same origin): model info and the probability map of a photo. */

import type { components } from "@/api/schema";
import { access } from "@/lib/access";
import type { DeviceInfo } from "@/lib/device";
import { type Answer, type RetryPolicy, withAccess } from "@/lib/retry";

/** The API's JSON bodies, generated from its OpenAPI schema (`npm run api:types`; never edit schema.d.ts). */
type Schemas = components["schemas"];

/** The contract as the UI reads it (the schema leaves it an open object). */
export interface ModelContractInfo {
  threshold: number;
  size: [number, number];
  encoder: string;
  mode: "resize" | "tiles";
  dataset: string;
  [key: string]: unknown;
}

/** `GET /model`, with its contract and device in the detail the UI reads. */
export type ModelInfo = Omit<Schemas["ModelInfo"], "contract" | "device"> & {
  contract: ModelContractInfo;
  device?: DeviceInfo;
};

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

/**
 * `fetch` under the page's rules (the API key, 503 retried after `Retry-After`: see {@link withAccess}); rejects
 * with {@link ApiError} carrying the server's message for a final answer that is not 2xx.
 */
export async function apiFetch(url: string, init: RequestInit = {}, policy?: Partial<RetryPolicy>): Promise<Response> {
  const answer = await withAccess(
    access,
    async (headers): Promise<Answer & { response: Response }> => {
      const response = await fetch(url, { ...init, headers: { ...(init.headers as Record<string, string>), ...headers } });
      if (response.ok) return { status: response.status, retryAfter: null, detail: "", response };
      const text = await response.text();
      return {
        status: response.status,
        retryAfter: response.headers.get("Retry-After"),
        detail: detailMessage(parseJson(text), response.status, response.statusText),
        response,
      };
    },
    { signal: init.signal ?? undefined, policy },
  );
  if (!answer.response.ok) throw new ApiError(answer.detail, answer.status);
  return answer.response;
}

export async function fetchModel(signal?: AbortSignal): Promise<ModelInfo> {
  // A 503 here means the model is still loading: useModelInfo retries on its own schedule and says so.
  const response = await apiFetch("/model", { signal, headers: { Accept: "application/json" } }, { retryBusy: false });
  return (await response.json()) as ModelInfo;
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
export async function predictProbability(
  file: Blob,
  onProgress: (phase: PredictPhase, fraction: number | null) => void,
  signal?: AbortSignal,
  roi: string | null = null,
): Promise<Prediction> {
  const form = new FormData();
  form.append("file", file, (file as File).name ?? "photo");
  if (roi) form.append("roi", roi);
  const answer = await withAccess(access, (headers) => sendPredict(form, headers, onProgress, signal), { signal });
  const { xhr, bytes } = answer;
  if (answer.status < 200 || answer.status >= 300) throw new ApiError(answer.detail, answer.status);
  const ms = Number.parseFloat(xhr.getResponseHeader("X-Inference-Time-Ms") ?? "");
  return {
    png: bytes,
    modelName: xhr.getResponseHeader("X-Model-Name"),
    modelVersion: xhr.getResponseHeader("X-Model-Version"),
    inferenceMs: Number.isFinite(ms) ? ms : null,
  };
}

/** One `POST /predict?format=probability` attempt. */
function sendPredict(
  form: FormData,
  headers: Record<string, string>,
  onProgress: (phase: PredictPhase, fraction: number | null) => void,
  signal?: AbortSignal,
): Promise<Answer & { xhr: XMLHttpRequest; bytes: Uint8Array }> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new DOMException("Prediction cancelled", "AbortError"));
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/predict?format=probability");
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.responseType = "arraybuffer";
    xhr.upload.onprogress = (e) => onProgress("uploading", e.lengthComputable ? e.loaded / e.total : null);
    xhr.upload.onload = () => onProgress("segmenting", null);
    xhr.onprogress = (e) => onProgress("downloading", e.lengthComputable ? e.loaded / e.total : null);
    xhr.onerror = () => reject(new Error("Could not reach the server. Is vessel-serve running?"));
    xhr.onabort = () => reject(new DOMException("Prediction cancelled", "AbortError"));
    xhr.onload = () => {
      const bytes = new Uint8Array(xhr.response as ArrayBuffer);
      const ok = xhr.status >= 200 && xhr.status < 300;
      const detail = ok ? "" : detailMessage(parseJson(new TextDecoder().decode(bytes)), xhr.status, xhr.statusText);
      resolve({ status: xhr.status, retryAfter: xhr.getResponseHeader("Retry-After"), detail, xhr, bytes });
    };
    signal?.addEventListener("abort", () => xhr.abort(), { once: true });
    xhr.send(form);
  });
}

/** Where the measurements counted: the detected (or uploaded) field of view, or the whole frame. */
export type FieldInfo = Schemas["FieldOfView"];

/** The physical scale the measurements used. */
export type ScaleInfo = Schemas["PhysicalScaleInfo"];

/** What `POST /measure` (and `POST /predict?format=json`) return about a mask inside its field. */
export type Readout = Schemas["Readout"];

/** `POST` of a multipart form: blobs and PNG bytes as files, strings as plain fields; null fields are left out. */
export async function postFiles(
  url: string,
  files: Record<string, Blob | Uint8Array | string | null>,
  signal?: AbortSignal,
): Promise<Response> {
  const form = new FormData();
  for (const [name, value] of Object.entries(files)) {
    if (value === null) continue;
    if (typeof value === "string") {
      form.append(name, value);
      continue;
    }
    const blob = value instanceof Blob ? value : new Blob([value as BlobPart], { type: "image/png" });
    form.append(name, blob, value instanceof File ? value.name : `${name}.png`);
  }
  return apiFetch(url, { method: "POST", body: form, signal });
}

/** The photo's field of view as the server detects it: `POST /predict?format=fov`, a {0, 255} PNG (no model run). */
export async function fetchField(photo: Blob, signal?: AbortSignal, roi: string | null = null): Promise<Uint8Array> {
  const response = await postFiles("/predict?format=fov", { file: photo, roi }, signal);
  return new Uint8Array(await response.arrayBuffer());
}

/** Query string of the map endpoints: the threshold and the optional physical scale. */
export function mapQuery(threshold: number, scale: Record<string, string> = {}): string {
  return new URLSearchParams({ threshold: String(threshold), ...scale }).toString();
}

/**
 * Measurements of the probability PNG (as `/predict` sent it) at `threshold`, inside the field PNG:
 * `POST /measure`, which thresholds exactly like the browser and does not run the model.
 */
export async function fetchMeasurements(
  probabilityPng: Uint8Array,
  fieldPng: Uint8Array | null,
  threshold: number,
  scale: Record<string, string>,
  signal?: AbortSignal,
  roi: string | null = null,
): Promise<Readout> {
  const response = await postFiles(
    `/measure?${mapQuery(threshold, scale)}`,
    { file: probabilityPng, fov: fieldPng, roi },
    signal,
  );
  return (await response.json()) as Readout;
}

/** The vessel regions at `threshold` as GeoJSON text (`POST /geojson`: Polygons with holes, pixel coordinates). */
export async function fetchGeoJson(
  probabilityPng: Uint8Array,
  fieldPng: Uint8Array | null,
  threshold: number,
  signal?: AbortSignal,
  roi: string | null = null,
): Promise<Blob> {
  const response = await postFiles(`/geojson?${mapQuery(threshold)}`, { file: probabilityPng, fov: fieldPng, roi }, signal);
  return new Blob([await response.arrayBuffer()], { type: "application/geo+json" });
}
