"use client";
/**
 * Paints the vessel layer canvas whenever the map, threshold, colour or view changes, and times it (slider input →
 * layer painted): the time goes to `data-rethreshold-ms` / `data-painted-threshold` on the element behind
 * `timingRef` (for tests) and into `timingText`.
 */
import { type RefObject, useLayoutEffect, useRef } from "react";
import type { ViewMode } from "@/components/Viewer";
import { layerLut, paintLayer, parseHexColour } from "@/lib/overlay";
import type { Result } from "@/lib/result";

export interface VesselLayerInputs {
  result: Result | null;
  threshold: number;
  colour: string;
  view: ViewMode;
  inputAt: RefObject<number | null>;
}

export function useVesselLayer({ result, threshold, colour, view, inputAt }: VesselLayerInputs) {
  const layerRef = useRef<HTMLCanvasElement>(null);
  const timingRef = useRef<HTMLElement>(null);
  const timingText = useRef<HTMLSpanElement>(null);
  const pixelsRef = useRef<ImageData | null>(null);

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
    const style = view === "mask" ? "mask" : "overlay";
    paintLayer(result.probability, layerLut(threshold, style, parseHexColour(colour)), new Uint32Array(pixels.data.buffer));
    ctx.putImageData(pixels, 0, 0);
    const ms = performance.now() - started;
    timingRef.current?.setAttribute("data-rethreshold-ms", ms.toFixed(2));
    timingRef.current?.setAttribute("data-painted-threshold", String(threshold));
    if (timingText.current) timingText.current.textContent = `${ms.toFixed(1)} ms`;
  }, [result, threshold, colour, view, inputAt]);

  return { layerRef, timingRef, timingText };
}
