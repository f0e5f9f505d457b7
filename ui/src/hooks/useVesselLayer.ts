"use client";
/**
 * Paints the vessel layer canvas: the model's mask at the threshold composed with the edit layer (added and
 * removed vessel in their own colours in the overlay views; the final mask in white in "mask only"). A full repaint
 * follows the map, threshold, colour, view or a new edit layer, and is timed (slider input → layer painted): the
 * time goes to `data-rethreshold-ms` / `data-painted-threshold` on the element behind `timingRef` (for tests) and
 * into `timingText`. Edits repaint just the rectangle they changed ({@link paintRect}).
 */
import { type RefObject, useCallback, useLayoutEffect, useRef } from "react";
import type { ViewMode } from "@/components/Viewer";
import { ADDED_COLOUR, REMOVED_COLOUR } from "@/lib/colours";
import { compositeLut, paintComposite, type Rect } from "@/lib/editLayer";
import { parseHexColour } from "@/lib/overlay";
import type { Result } from "@/lib/result";

export interface VesselLayerInputs {
  result: Result | null;
  /** The edit layer of this photo (same size), or null. */
  edits: Uint8Array | null;
  threshold: number;
  colour: string;
  view: ViewMode;
  inputAt: RefObject<number | null>;
}

const EDIT_COLOURS = { added: parseHexColour(ADDED_COLOUR), removed: parseHexColour(REMOVED_COLOUR) };

export function useVesselLayer({ result, edits, threshold, colour, view, inputAt }: VesselLayerInputs) {
  const layerRef = useRef<HTMLCanvasElement>(null);
  const timingRef = useRef<HTMLElement>(null);
  const timingText = useRef<HTMLSpanElement>(null);
  const pixelsRef = useRef<ImageData | null>(null);
  const state = useRef<{ lut: Uint32Array; edits: Uint8Array; result: Result } | null>(null);

  useLayoutEffect(() => {
    const canvas = layerRef.current;
    if (!result || !canvas) return;
    const started = inputAt.current ?? performance.now();
    inputAt.current = null;
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    let pixels = pixelsRef.current;
    if (!pixels || pixels.width !== result.width || pixels.height !== result.height) {
      pixels = ctx.createImageData(result.width, result.height);
      pixelsRef.current = pixels;
    }
    const layerEdits = edits && edits.length === result.probability.length ? edits : new Uint8Array(result.probability.length);
    const style = view === "mask" ? "mask" : "overlay";
    const lut = compositeLut(threshold, style, { vessel: parseHexColour(colour), ...EDIT_COLOURS });
    state.current = { lut, edits: layerEdits, result };
    paintComposite(result.probability, layerEdits, result.width, lut, new Uint32Array(pixels.data.buffer));
    ctx.putImageData(pixels, 0, 0);
    const ms = performance.now() - started;
    timingRef.current?.setAttribute("data-rethreshold-ms", ms.toFixed(2));
    timingRef.current?.setAttribute("data-painted-threshold", String(threshold));
    if (timingText.current) timingText.current.textContent = `${ms.toFixed(1)} ms`;
  }, [result, edits, threshold, colour, view, inputAt]);

  /** Repaints `rect` after the edit layer changed there. */
  const paintRect = useCallback((rect: Rect) => {
    const s = state.current;
    const pixels = pixelsRef.current;
    const ctx = layerRef.current?.getContext("2d");
    if (!s || !pixels || !ctx) return;
    const { result } = s;
    paintComposite(result.probability, s.edits, result.width, s.lut, new Uint32Array(pixels.data.buffer), rect);
    ctx.putImageData(pixels, 0, 0, rect.x0, rect.y0, rect.x1 - rect.x0, rect.y1 - rect.y0);
  }, []);

  return { layerRef, timingRef, timingText, paintRect };
}
