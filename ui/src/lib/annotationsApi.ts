/**
 * Client for the annotation endpoints: whether the server keeps annotations (and has a worklist), saving the
 * corrected mask with the photo, rasterising a GeoJSON annotation with the server's own reader, the worklist.
 */
import { ApiError, apiFetch, postFiles } from "./api";

export interface AnnotationSettings {
  enabled: boolean;
  count: number;
  worklist: boolean;
}

export type AnnotationStatus = "draft" | "final";

export interface AnnotationSaved {
  id: string;
  version: number;
  count: number;
  vessel_pixels: number;
  added: number;
  removed: number;
  status: AnnotationStatus;
  annotator: string;
}

export interface SaveRequest {
  photo: File;
  /** The edited mask as a PNG of the photo's size (255 = vessel). */
  maskPng: Uint8Array;
  /** The model's thresholded mask as a PNG, so the server counts pixels added and removed. */
  modelMaskPng: Uint8Array | null;
  roi: string | null;
  annotator: string;
  status: AnnotationStatus;
  threshold: number;
  note: string;
}

/** `GET /annotations/settings`; a server without the endpoint keeps no annotations. */
export async function fetchAnnotationSettings(signal?: AbortSignal): Promise<AnnotationSettings> {
  try {
    const response = await apiFetch("/annotations/settings", { signal, headers: { Accept: "application/json" } });
    return (await response.json()) as AnnotationSettings;
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return { enabled: false, count: 0, worklist: false };
    throw e;
  }
}

export async function saveAnnotation(request: SaveRequest, signal?: AbortSignal): Promise<AnnotationSaved> {
  const response = await postFiles(
    "/annotations",
    {
      file: request.photo,
      annotation: request.maskPng,
      model_mask: request.modelMaskPng,
      roi: request.roi,
      annotator: request.annotator,
      status: request.status,
      threshold: String(request.threshold),
      note: request.note.trim() || null,
    },
    signal,
  );
  return (await response.json()) as AnnotationSaved;
}

/** The mask PNG of a GeoJSON annotation on a width × height photo, rasterised by the server's reader. */
export async function rasterizeAnnotation(geojson: Blob, width: number, height: number, signal?: AbortSignal): Promise<Uint8Array> {
  const response = await postFiles(
    "/annotations/rasterize",
    { annotation: new File([geojson], "annotation.geojson", { type: "application/geo+json" }), width: String(width), height: String(height) },
    signal,
  );
  return new Uint8Array(await response.arrayBuffer());
}

/** The next unlabelled photo of the worklist as a File, or null when the worklist is done. */
export async function nextWorklistPhoto(signal?: AbortSignal): Promise<{ file: File; remaining: number } | null> {
  let next: { name: string; remaining: number };
  try {
    next = (await (await apiFetch("/worklist/next", { signal })).json()) as { name: string; remaining: number };
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return null;
    throw e;
  }
  const photo = await apiFetch(`/worklist/photos/${encodeURIComponent(next.name)}`, { signal });
  const blob = await photo.blob();
  return { file: new File([blob], next.name, { type: blob.type || guessType(next.name) }), remaining: next.remaining };
}

function guessType(name: string): string {
  const ext = name.toLowerCase().split(".").pop() ?? "";
  return (
    { jpg: "image/jpeg", jpeg: "image/jpeg", png: "image/png", tif: "image/tiff", tiff: "image/tiff", bmp: "image/bmp", webp: "image/webp" }[ext] ??
    "application/octet-stream"
  );
}
