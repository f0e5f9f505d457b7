"use client";
/**
 * The viewer's zoom and pan (one transform shared by all panes): fit, zoom around a point, pan; the wheel zooms
 * around the pointer; keyboard: arrows pan, + / − zoom, 0 fits, 1 shows 1:1.
 */
import { type RefObject, useCallback, useEffect, useLayoutEffect, useRef, useState } from "react";

export interface Transform {
  scale: number;
  x: number;
  y: number;
}

const MIN_SCALE = 0.05;
const MAX_SCALE = 32;
export const ZOOM_STEP = 1.25;
const PAN_STEP = 60;

export function useViewTransform(
  width: number,
  height: number,
  paneRef: RefObject<HTMLDivElement | null>,
  rootRef: RefObject<HTMLDivElement | null>,
  fitKey: string,
) {
  const [t, setT] = useState<Transform>({ scale: 1, x: 0, y: 0 });
  const tRef = useRef(t);
  tRef.current = t;

  const paneSize = useCallback(() => {
    const el = paneRef.current;
    return el ? { w: el.clientWidth, h: el.clientHeight } : { w: width, h: height };
  }, [paneRef, width, height]);

  const fit = useCallback(() => {
    const { w, h } = paneSize();
    const scale = Math.min(w / width, h / height, MAX_SCALE);
    setT({ scale, x: (w - width * scale) / 2, y: (h - height * scale) / 2 });
  }, [paneSize, width, height]);

  /** Zoom to `scaleOf(old)` keeping the image point under pane point (cx, cy) in place (default: pane centre). */
  const zoom = useCallback(
    (scaleOf: (old: number) => number, cx?: number, cy?: number) => {
      const { w, h } = paneSize();
      const px = cx ?? w / 2;
      const py = cy ?? h / 2;
      setT((old) => {
        const s = Math.min(MAX_SCALE, Math.max(MIN_SCALE, scaleOf(old.scale)));
        return { scale: s, x: px - ((px - old.x) * s) / old.scale, y: py - ((py - old.y) * s) / old.scale };
      });
    },
    [paneSize],
  );
  const zoomBy = useCallback((factor: number, cx?: number, cy?: number) => zoom((s) => s * factor, cx, cy), [zoom]);
  const zoomTo = useCallback((scale: number) => zoom(() => scale), [zoom]);
  const pan = useCallback((dx: number, dy: number) => setT((old) => ({ ...old, x: old.x + dx, y: old.y + dy })), []);

  // Fit each new image, and when the view changes the pane size.
  useLayoutEffect(() => fit(), [fitKey, fit]);

  useEffect(() => {
    const el = rootRef.current;
    if (!el) return;
    const onWheel = (e: WheelEvent) => {
      e.preventDefault();
      const pane = (e.target as HTMLElement).closest(".pane");
      const rect = (pane ?? el).getBoundingClientRect();
      zoomBy(e.deltaY < 0 ? ZOOM_STEP : 1 / ZOOM_STEP, e.clientX - rect.left, e.clientY - rect.top);
    };
    el.addEventListener("wheel", onWheel, { passive: false });
    return () => el.removeEventListener("wheel", onWheel);
  }, [rootRef, zoomBy]);

  /** Keyboard navigation; returns true when the key was used. */
  const onKey = useCallback(
    (e: React.KeyboardEvent): boolean => {
      const actions: Record<string, () => void> = {
        ArrowLeft: () => pan(PAN_STEP, 0),
        ArrowRight: () => pan(-PAN_STEP, 0),
        ArrowUp: () => pan(0, PAN_STEP),
        ArrowDown: () => pan(0, -PAN_STEP),
        "+": () => zoomBy(ZOOM_STEP),
        "=": () => zoomBy(ZOOM_STEP),
        "-": () => zoomBy(1 / ZOOM_STEP),
        "0": fit,
        "1": () => zoomTo(1),
      };
      const action = actions[e.key];
      if (!action || e.ctrlKey || e.metaKey || e.altKey) return false;
      e.preventDefault();
      action();
      return true;
    },
    [pan, zoomBy, zoomTo, fit],
  );

  return { t, tRef, fit, zoomBy, zoomTo, pan, onKey };
}
