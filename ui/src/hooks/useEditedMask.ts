"use client";
/**
 * The photo's mask as the user has it: the model's at the threshold with the edit layer over it. Keeps one edit
 * layer per photo (a new photo starts empty; a new prediction of the same photo, e.g. inside a region, keeps it),
 * and gives what follows the edited mask: the vessel count and added/removed pixels, the Measurements source, the
 * layer for downloads, opening an existing annotation as the starting mask, and the save request.
 */
import { useCallback, useEffect, useMemo, useState } from "react";
import { rasterizeAnnotation } from "@/lib/annotationsApi";
import { ApiError } from "@/lib/api";
import { editCounts, editsFromMask } from "@/lib/editLayer";
import { encodePng } from "@/lib/png";
import type { Result } from "@/lib/result";
import { countAtOrAbove, cutoffFor } from "@/lib/threshold";
import { decodeProbability } from "@/components/browser";
import { finalMask, maskThreshold } from "./downloadFiles";
import type { Editor } from "./useEditor";
import type { MeasureSource } from "./useMeasurements";

function maskPng(result: Result, data: Uint8Array): Promise<Uint8Array> {
  return encodePng({ width: result.width, height: result.height, channels: 1, data });
}

export function useEditedMask(result: Result | null, editor: Editor, threshold: number) {
  const [openError, setOpenError] = useState<string | null>(null);
  const { layer, reset, edited, version } = editor;

  // One layer per photo: a new file (or size) starts a fresh one.
  useEffect(() => {
    if (!result) return;
    if (!layer || layer.width !== result.width || layer.height !== result.height || layer.photo !== result.file) {
      reset(result.width, result.height, undefined, result.file);
    }
  }, [result, layer, reset]);

  const ready = !!result && !!layer && layer.photo === result.file && layer.width === result.width && layer.height === result.height;
  const edits = ready && edited ? layer!.edits : null;

  const counts = useMemo(
    () => (result && edits ? editCounts(result.probability, edits, threshold) : null),
    [result, edits, threshold, version], // eslint-disable-line react-hooks/exhaustive-deps
  );
  const vesselPixels = useMemo(
    () => (counts ? counts.vessel : result ? countAtOrAbove(result.bins, cutoffFor(threshold)) : 0),
    [counts, result, threshold],
  );

  const source = useMemo<MeasureSource | null>(() => {
    if (!result) return null;
    const png = edits
      ? async (t: number) => ({ png: await maskPng(result, finalMask(result, edits, t)), threshold: maskThreshold(t) })
      : () => result.probabilityPng;
    return { key: result.id, png, field: result.fieldPng, roi: result.roi };
  }, [result, edits, version]); // eslint-disable-line react-hooks/exhaustive-deps

  /** Opens a GeoJSON (rasterised by the server's reader) or a mask PNG of the photo's size as the starting mask. */
  const openAnnotation = useCallback(
    async (file: File) => {
      setOpenError(null);
      if (!result) return;
      try {
        const isPng = file.type === "image/png" || /\.png$/i.test(file.name);
        const png = isPng ? new Uint8Array(await file.arrayBuffer()) : await rasterizeAnnotation(file, result.width, result.height);
        // any PNG a browser reads (1-bit label masks too), nonzero = vessel
        const image = await decodeProbability(png);
        if (image.width !== result.width || image.height !== result.height) {
          throw new Error(`it is ${image.width}×${image.height}, the photo ${result.width}×${result.height}`);
        }
        reset(result.width, result.height, editsFromMask(image.values), result.file);
      } catch (e) {
        const why = e instanceof ApiError ? `${e.message} (${e.status})` : e instanceof Error ? e.message : String(e);
        setOpenError(`Could not open ${file.name}: ${why}`);
      }
    },
    [result, reset],
  );

  /** The parts of a save request that come from the photo and its masks. */
  const saveParts = useCallback(async () => {
    if (!result) throw new Error("no photo");
    return {
      photo: result.file,
      maskPng: await maskPng(result, finalMask(result, edits, threshold)),
      modelMaskPng: await maskPng(result, finalMask(result, null, threshold)),
      roi: result.roi,
      threshold,
    };
  }, [result, edits, threshold]);

  return { edits, counts, vesselPixels, source, openAnnotation, openError, saveParts };
}
