/**
 * The files the Download section offers, built in the browser from the map at the slider's threshold, or from the
 * edited mask when the user edited it (the GeoJSON by `POST /geojson`, which thresholds the same PNG): mask PNG,
 * masked photo PNG, outline SVG.
 */
import { fetchGeoJson } from "@/lib/api";
import { contourSvg, traceContours } from "@/lib/contours";
import { compositeOverlay, layerLut, paintLayer, parseHexColour } from "@/lib/overlay";
import { encodePng } from "@/lib/png";
import { type Result, stem } from "@/lib/result";
import { composedMask } from "@/lib/editLayer";
import { bitmapPixels, blobToDataUrl, rgbaToPng } from "@/components/browser";

export type DownloadKind = "mask" | "overlay" | "svg" | "geojson";

export interface DownloadInputs {
  result: Result;
  threshold: number;
  colour: string;
  opacity: number;
  /** The model's name and version for the SVG's title when the prediction did not say. */
  modelName: string | null;
  modelVersion: string | null;
  /** The edit layer when the user edited the mask (the files then follow the edited mask), else null. */
  edits: Uint8Array | null;
}

/** The threshold that keeps a {0, 255} mask as it is on the server (v / 255 ≥ t): any t in (0, 1]. */
export function maskThreshold(threshold: number): number {
  return threshold > 0 ? threshold : 0.5;
}

/** The final mask {0, 255}: the model's at the threshold with the edits, and nothing outside a region of interest. */
export function finalMask(result: Result, edits: Uint8Array | null, threshold: number): Uint8Array {
  return composedMask(result.probability, edits, threshold, result.roi ? result.field : null);
}

export interface DownloadFile {
  blob: Blob;
  name: string;
  /** Something the user should know about the file (e.g. the SVG embeds a raster), or null. */
  notice: string | null;
}

export function downloadBase(result: Result, threshold: number): string {
  return `${stem(result.file.name)}.t${threshold.toFixed(2)}`;
}

export async function buildDownload(kind: DownloadKind, inputs: DownloadInputs): Promise<DownloadFile> {
  const { result, threshold, colour, opacity, edits } = inputs;
  const { width: w, height: h } = result;
  const base = downloadBase(result, threshold) + (edits ? ".edited" : "");
  // An edited mask is {0, 255}: thresholded at 0.5 it is itself.
  const mask = finalMask(result, edits, threshold);
  const [values, t] = edits ? [mask, 0.5] : [result.probability, threshold];
  if (kind === "geojson") {
    const png = edits ? await encodePng({ width: w, height: h, channels: 1, data: mask }) : result.probabilityPng;
    const geojson = await fetchGeoJson(png, result.fieldPng, edits ? maskThreshold(threshold) : threshold, undefined, result.roi);
    return { blob: geojson, name: `${base}.vessels.geojson`, notice: null };
  }
  if (kind === "mask") {
    const png = await encodePng({ width: w, height: h, channels: 1, data: mask });
    return { blob: new Blob([png as BlobPart], { type: "image/png" }), name: `${base}.mask.png`, notice: null };
  }
  if (kind === "overlay") {
    const photo = result.photo ? bitmapPixels(result.photo) : null;
    const rgba = compositeOverlay(photo, values, t, parseHexColour(colour), opacity);
    return { blob: await rgbaToPng(rgba, w, h), name: `${base}.overlay.png`, notice: null };
  }
  const contours = traceContours(values, w, h, t);
  let rasterHref: string | null = null;
  let notice: string | null = null;
  if (contours.truncated) {
    const rgba = new Uint8ClampedArray(w * h * 4);
    paintLayer(values, layerLut(t, "overlay", parseHexColour(colour)), new Uint32Array(rgba.buffer));
    rasterHref = await blobToDataUrl(await rgbaToPng(rgba, w, h));
    notice =
      `The vessel outlines need over ${contours.vertexCount.toLocaleString()} points, too many for a usable ` +
      "SVG: the SVG embeds the vessels as a PNG layer over the photo instead.";
  }
  let photoHref: string | null = null;
  if (result.photo) {
    const keep = ["image/png", "image/jpeg"].includes(result.file.type);
    photoHref = await blobToDataUrl(keep ? result.file : await rgbaToPng(bitmapPixels(result.photo), w, h));
  }
  const version = result.modelVersion ?? inputs.modelVersion ?? "?";
  const svg = contourSvg({
    width: w,
    height: h,
    photoHref,
    contours,
    rasterHref,
    colour,
    opacity,
    threshold,
    title: `Vessels of ${result.file.name}, ${result.modelName ?? inputs.modelName ?? "model"} v${version}`,
  });
  return { blob: new Blob([svg], { type: "image/svg+xml" }), name: `${base}.vessels.svg`, notice };
}
