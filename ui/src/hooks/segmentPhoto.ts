/**
 * One photo through the server: the probability map (`/predict?format=probability`) and, beside it, the field of
 * view (`/predict?format=fov`, no model run), both inside the region of interest when one is given, decoded into a
 * {@link Result} with the photo for display.
 */
import { fetchField, predictProbability, type PredictPhase } from "@/lib/api";
import { contoursToPathData, traceContours } from "@/lib/contours";
import type { Result } from "@/lib/result";
import { histogram } from "@/lib/threshold";
import { decodeProbability } from "@/components/browser";

export interface Segmented {
  result: Result;
  /** A note for the user (e.g. the field of view is missing), or null. */
  notice: string | null;
}

/**
 * Segments `file`; `displayable` says whether this browser can decode it for display. Resolves null when aborted
 * meanwhile (its bitmap released); rejects with the API's error otherwise.
 */
export async function segmentPhoto(
  file: File,
  displayable: boolean,
  onProgress: (phase: PredictPhase | "decoding", fraction: number | null) => void,
  signal: AbortSignal,
  roi: string | null = null,
): Promise<Segmented | null> {
  const started = performance.now();
  const photoPromise = displayable ? createImageBitmap(file).catch(() => null) : Promise.resolve(null);
  // The field needs no model: asked beside the prediction; without it measurements use the whole frame.
  const fieldPromise = fetchField(file, signal, roi).catch((e: unknown) => e);
  const prediction = await predictProbability(file, onProgress, signal, roi);
  onProgress("decoding", null);
  const map = await decodeProbability(prediction.png);
  let photo = await photoPromise;
  let photoNote: string | null = null;
  const fieldAnswer = await fieldPromise;
  let fieldPng: Uint8Array | null = null;
  let fieldPath: string | null = null;
  let fieldValues: Uint8Array | null = null;
  if (fieldAnswer instanceof Uint8Array) {
    const field = await decodeProbability(fieldAnswer);
    if (field.width === map.width && field.height === map.height) {
      fieldPng = fieldAnswer;
      fieldValues = field.values;
      fieldPath = contoursToPathData(traceContours(field.values, field.width, field.height, 0.5).polygons);
    }
  }
  const notice = fieldPng ? null : "The server did not return the field of view: measurements use the whole frame.";
  if (!displayable) {
    photoNote = "This browser cannot display TIFF photos: the vessels are shown on black, and the masked-image " +
      "and SVG downloads use a black background.";
  } else if (!photo) {
    photoNote = "The browser could not decode this photo for display: the vessels are shown on black.";
  } else if (photo.width !== map.width || photo.height !== map.height) {
    photoNote = `The photo decodes to ${photo.width}×${photo.height} here but the server segmented it at ` +
      `${map.width}×${map.height}; the vessels are shown on black.`;
    photo.close();
    photo = null;
  }
  if (signal.aborted) {
    photo?.close();
    return null;
  }
  return {
    notice,
    result: {
      id: `${file.name}-${started}`,
      file,
      width: map.width,
      height: map.height,
      probability: map.values,
      probabilityPng: prediction.png,
      fieldPng,
      fieldPath,
      field: fieldValues,
      roi,
      bins: histogram(map.values),
      photo,
      photoUrl: photo ? URL.createObjectURL(file) : null,
      photoNote,
      modelName: prediction.modelName,
      modelVersion: prediction.modelVersion,
      inferenceMs: prediction.inferenceMs,
      totalMs: performance.now() - started,
    },
  };
}
