"use client";
/**
 * How the vessel layer is shown: the threshold (with the time of the last slider input, for the re-threshold
 * timing, and whether the user has touched it, so a late model answer does not move it), colour, opacity, view and
 * the field-of-view outline.
 */
import { useCallback, useRef, useState } from "react";
import type { ViewMode } from "@/components/Viewer";
import { MASK_COLOUR } from "@/lib/colours";

export const DEFAULT_THRESHOLD = 0.5;
export const DEFAULT_COLOUR = MASK_COLOUR;
export const DEFAULT_OPACITY = 0.6;

export function useLayerSettings() {
  const [threshold, setThresholdState] = useState(DEFAULT_THRESHOLD);
  const [colour, setColour] = useState(DEFAULT_COLOUR);
  const [opacity, setOpacity] = useState(DEFAULT_OPACITY);
  const [view, setView] = useState<ViewMode>("overlay");
  const [showField, setShowField] = useState(true);
  const touched = useRef(false);
  /** performance.now() of the last slider input, consumed by the painter to time the re-threshold. */
  const inputAt = useRef<number | null>(null);

  /** The user moved the threshold. */
  const setThreshold = useCallback((value: number) => {
    touched.current = true;
    inputAt.current = performance.now();
    setThresholdState(value);
  }, []);

  /** The model's recommended threshold arrived: used unless the user has already chosen one. */
  const adoptRecommended = useCallback((value: number) => {
    if (!touched.current) setThresholdState(value);
  }, []);

  return {
    threshold,
    setThreshold,
    adoptRecommended,
    inputAt,
    colour,
    setColour,
    opacity,
    setOpacity,
    view,
    setView,
    showField,
    setShowField,
  };
}

export type LayerSettings = ReturnType<typeof useLayerSettings>;
