"use client";
/**
 * What the pointer does over the viewer. Pan tool, middle button or space + drag: pan. Brush and eraser: strokes in
 * image coordinates, each move timed (the handler's time, written to `data-paint-ms-*` on the viewer root when the
 * stroke ends, for the performance test). Lasso: a freehand polygon filled on release. Region of interest: a click
 * per vertex; double-click, Enter or a click on the first vertex closes it; Escape drops it.
 */
import { type RefObject, useCallback, useEffect, useRef, useState } from "react";
import type { Point } from "@/lib/brush";
import type { Tool } from "./useEditor";
import type { Transform } from "./useViewTransform";

export interface PointerCallbacks {
  onStrokeStart: (at: Point) => void;
  onStrokeMove: (at: Point) => void;
  onStrokeEnd: () => void;
  onPolygon: (points: Point[], kind: "lasso" | "roi") => void;
}

/** Screen pixels within which a click closes the region on its first vertex. */
const CLOSE_PX = 8;

export function usePointerTools(
  tool: Tool,
  tRef: RefObject<Transform>,
  pan: (dx: number, dy: number) => void,
  rootRef: RefObject<HTMLDivElement | null>,
  callbacks: PointerCallbacks,
  cursorRef: RefObject<HTMLDivElement | null>,
) {
  const [draft, setDraft] = useState<Point[]>([]);
  const draftRef = useRef<Point[]>([]);
  const drag = useRef<{ id: number; x: number; y: number; mode: "pan" | "stroke" | "lasso" } | null>(null);
  const space = useRef(false);
  const timings = useRef<number[]>([]);
  const cb = useRef(callbacks);
  cb.current = callbacks;

  const updateDraft = (points: Point[]) => {
    draftRef.current = points;
    setDraft(points);
  };

  useEffect(() => {
    const down = (e: KeyboardEvent) => {
      if (e.key === " " && !(e.target as HTMLElement)?.closest?.("input, textarea, select, button")) {
        space.current = true;
        if (rootRef.current?.contains(e.target as Node) || e.target === document.body) e.preventDefault();
      }
    };
    const up = (e: KeyboardEvent) => {
      if (e.key === " ") space.current = false;
    };
    window.addEventListener("keydown", down);
    window.addEventListener("keyup", up);
    return () => {
      window.removeEventListener("keydown", down);
      window.removeEventListener("keyup", up);
    };
  }, [rootRef]);

  // A half-drawn polygon is dropped when the tool changes.
  useEffect(() => updateDraft([]), [tool]);

  const imagePoint = (e: React.PointerEvent | React.MouseEvent): Point => {
    const pane = (e.target as HTMLElement).closest(".pane") ?? rootRef.current!;
    const rect = pane.getBoundingClientRect();
    const t = tRef.current;
    return [(e.clientX - rect.left - t.x) / t.scale, (e.clientY - rect.top - t.y) / t.scale];
  };

  const moveCursor = (at: Point) => {
    const el = cursorRef.current;
    if (el) el.style.transform = `translate(${at[0]}px, ${at[1]}px)`;
  };

  const closeRegion = useCallback(() => {
    // a double-click adds its point twice: drop repeated vertices
    const points = draftRef.current.filter((p, i, all) => i === 0 || Math.hypot(p[0] - all[i - 1][0], p[1] - all[i - 1][1]) > 0.5);
    if (points.length >= 3) cb.current.onPolygon(points, "roi");
    updateDraft([]);
  }, []);

  const onPointerDown = (e: React.PointerEvent) => {
    const panning = e.button === 1 || (e.button === 0 && (space.current || tool === "pan"));
    if (!panning && e.button !== 0) return;
    const at = imagePoint(e);
    if (!panning && tool === "roi") {
      const first = draftRef.current[0];
      const s = tRef.current.scale;
      if (first && draftRef.current.length >= 3 && Math.hypot((at[0] - first[0]) * s, (at[1] - first[1]) * s) < CLOSE_PX) {
        closeRegion();
      } else {
        updateDraft([...draftRef.current, at]);
      }
      return;
    }
    const mode = panning ? "pan" : tool === "lasso" ? "lasso" : "stroke";
    e.preventDefault();
    drag.current = { id: e.pointerId, x: e.clientX, y: e.clientY, mode };
    try {
      (e.currentTarget as HTMLElement).setPointerCapture(e.pointerId);
    } catch {
      // a pointer the browser no longer tracks (synthetic events in tests): the drag works without capture
    }
    if (mode === "stroke") {
      timings.current = [];
      cb.current.onStrokeStart(at);
    } else if (mode === "lasso") updateDraft([at]);
  };

  const onPointerMove = (e: React.PointerEvent) => {
    const d = drag.current;
    if (!d || d.id !== e.pointerId) {
      if (tool === "brush" || tool === "eraser") moveCursor(imagePoint(e));
      return;
    }
    if (d.mode === "pan") {
      pan(e.clientX - d.x, e.clientY - d.y);
      drag.current = { ...d, x: e.clientX, y: e.clientY };
      return;
    }
    const at = imagePoint(e);
    if (d.mode === "lasso") {
      draftRef.current = [...draftRef.current, at];
      setDraft(draftRef.current);
      return;
    }
    const started = performance.now();
    cb.current.onStrokeMove(at);
    timings.current.push(performance.now() - started);
    moveCursor(at);
  };

  const onPointerUp = (e: React.PointerEvent) => {
    const d = drag.current;
    if (!d || d.id !== e.pointerId) return;
    drag.current = null;
    if (d.mode === "stroke") {
      cb.current.onStrokeEnd();
      reportTimings(rootRef.current, timings.current);
    } else if (d.mode === "lasso") {
      cb.current.onPolygon(draftRef.current, "lasso");
      updateDraft([]);
    }
  };

  const onDoubleClick = () => {
    if (tool === "roi") closeRegion();
  };

  /** Enter closes the region, Escape drops the draft; returns true when the key was used. */
  const onKey = (e: React.KeyboardEvent): boolean => {
    if (tool !== "roi" && tool !== "lasso") return false;
    if (e.key === "Enter" && tool === "roi") closeRegion();
    else if (e.key === "Escape") updateDraft([]);
    else return false;
    e.preventDefault();
    return true;
  };

  return { draft, onPointerDown, onPointerMove, onPointerUp, onDoubleClick, onKey };
}

function reportTimings(root: HTMLElement | null, samples: number[]): void {
  if (!root || !samples.length) return;
  const sorted = [...samples].sort((a, b) => a - b);
  root.setAttribute("data-paint-moves", String(sorted.length));
  root.setAttribute("data-paint-ms-p50", sorted[sorted.length >> 1].toFixed(3));
  root.setAttribute("data-paint-ms-p95", sorted[Math.floor(sorted.length * 0.95)].toFixed(3));
  root.setAttribute("data-paint-ms-max", sorted[sorted.length - 1].toFixed(3));
}
