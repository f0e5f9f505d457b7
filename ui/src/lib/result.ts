/** What the page holds about one segmented photo, and the names its downloads take. */
import type { PredictPhase } from "./api";

export interface Result {
  id: string;
  file: File;
  width: number;
  height: number;
  probability: Uint8Array;
  /** The probability PNG as the server sent it (sent back to /measure and /geojson). */
  probabilityPng: Uint8Array;
  /** The field of view PNG ({0, 255}) from `/predict?format=fov`, and its outline as SVG path data. */
  fieldPng: Uint8Array | null;
  fieldPath: string | null;
  /** The field decoded ({0, 255} per pixel), or null. */
  field: Uint8Array | null;
  /** The region of interest the prediction was restricted to (GeoJSON Polygon text), or null. */
  roi: string | null;
  bins: Uint32Array;
  photo: ImageBitmap | null;
  photoUrl: string | null;
  photoNote: string | null;
  modelName: string | null;
  modelVersion: string | null;
  inferenceMs: number | null;
  totalMs: number;
}

export type Progress = { fileName: string; phase: PredictPhase | "decoding"; fraction: number | null };

export const PHASE_TEXT: Record<Progress["phase"], string> = {
  uploading: "Uploading",
  segmenting: "Segmenting vessels",
  downloading: "Receiving the probability map",
  decoding: "Preparing the overlay",
};

/** The file name without its extension ("photo" when nothing is left). */
export function stem(name: string): string {
  return name.replace(/\.[^.]+$/, "") || "photo";
}
