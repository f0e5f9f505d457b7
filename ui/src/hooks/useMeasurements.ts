"use client";
/**
 * The Measurements panel's state: the server's readout for the current photo, threshold and physical scale,
 * fetched debounced with only the latest request's answer shown (`POST /measure` does not run the model).
 */
import { useEffect, useMemo, useRef, useState } from "react";
import { fetchMeasurements, type Readout } from "@/lib/api";
import { latestOnly, type ScaleChoice, scaleParams } from "@/lib/measurements";

/** Slider moves closer together than this send one measurement request. */
export const MEASURE_DEBOUNCE_MS = 150;

/** What is measured: a probability (or mask) PNG, its field PNG, the threshold. */
export interface MeasureSource {
  /** Changes with each photo, so the previous photo's numbers never show beside a new one. */
  key: string;
  png: Uint8Array;
  field: Uint8Array | null;
}

interface MeasureArgs {
  png: Uint8Array;
  field: Uint8Array | null;
  threshold: number;
  scale: Record<string, string>;
}

export function useMeasurements(source: MeasureSource | null, threshold: number) {
  const [scale, setScale] = useState<ScaleChoice>({ kind: "pixels", text: "" });
  const [readout, setReadout] = useState<Readout | null>(null);
  const [measuring, setMeasuring] = useState(false);
  const [measureError, setMeasureError] = useState<string | null>(null);
  const lastKey = useRef<string | null>(null);

  const measurer = useMemo(
    () =>
      latestOnly<MeasureArgs, Readout>(
        MEASURE_DEBOUNCE_MS,
        (a, signal) => fetchMeasurements(a.png, a.field, a.threshold, a.scale, signal),
        (answer) => {
          setReadout(answer);
          setMeasureError(null);
          setMeasuring(false);
        },
        (e) => {
          setMeasureError(e instanceof Error ? e.message : String(e));
          setMeasuring(false);
        },
      ),
    [],
  );
  useEffect(() => () => measurer.cancel(), [measurer]);

  const { params: scaleQuery, error: scaleError } = scaleParams(scale);
  const scaleKey = JSON.stringify(scaleQuery);
  useEffect(() => {
    if (!source) {
      measurer.cancel();
      setReadout(null);
      lastKey.current = null;
      return;
    }
    if (lastKey.current !== source.key) setReadout(null);
    lastKey.current = source.key;
    setMeasuring(true);
    measurer.schedule({ png: source.png, field: source.field, threshold, scale: JSON.parse(scaleKey) });
  }, [source, threshold, scaleKey, measurer]);

  return { readout, measuring, measureError, scale, setScale, scaleError };
}
