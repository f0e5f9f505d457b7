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

/** What is measured: a probability (or mask) PNG at a threshold, inside a field PNG and region of interest. */
export interface MeasureSource {
  /** Changes with each photo, so the previous photo's numbers never show beside a new one. */
  key: string;
  /** The PNG to send for the slider's threshold, and the threshold to send with it (an edited mask is {0, 255}). */
  png: (threshold: number) => Uint8Array | Promise<{ png: Uint8Array; threshold: number }>;
  field: Uint8Array | null;
  roi: string | null;
}

interface MeasureArgs {
  source: MeasureSource;
  threshold: number;
  scale: Record<string, string>;
}

async function measure({ source, threshold, scale }: MeasureArgs, signal: AbortSignal): Promise<Readout> {
  const prepared = await source.png(threshold);
  const [png, sent] = prepared instanceof Uint8Array ? [prepared, threshold] : [prepared.png, prepared.threshold];
  const readout = await fetchMeasurements(png, source.field, sent, scale, signal, source.roi);
  return { ...readout, threshold }; // the numbers belong to the slider's threshold, whatever was sent
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
        measure,
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
    measurer.schedule({ source, threshold, scale: JSON.parse(scaleKey) });
  }, [source, threshold, scaleKey, measurer]);

  return { readout, measuring, measureError, scale, setScale, scaleError };
}
