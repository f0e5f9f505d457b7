"use client";
/**
 * The annotation editor's state: the edit layer of the photo (forced vessel / forced background over the model's
 * mask), its undo history, the tool and brush size. Pointer work mutates the layer in place and reports the
 * rectangle it changed to `onDirty` (the painter repaints just that); React state changes only when a stroke ends,
 * so painting costs no render per pointer move.
 */
import { useCallback, useMemo, useRef, useState } from "react";
import { clampBrush, fillPolygon, paintSegment, type Point, segmentRect } from "@/lib/brush";
import { FORCE_BACKGROUND, FORCE_VESSEL, hasEdits, type Rect, unionRect } from "@/lib/editLayer";
import { EditHistory } from "@/lib/history";

export type Tool = "pan" | "brush" | "eraser" | "lasso" | "roi";

export const DEFAULT_BRUSH = 8;

export interface EditLayer {
  /** Changes identity only when a new photo (or an opened annotation) replaces the layer. */
  edits: Uint8Array;
  width: number;
  height: number;
  history: EditHistory;
  /** The photo the layer belongs to. */
  photo: unknown;
}

export function useEditor(onDirty: (rect: Rect) => void) {
  const [tool, setTool] = useState<Tool>("pan");
  const [brushSize, setBrushSizeState] = useState(DEFAULT_BRUSH);
  /** What the lasso fills: the brush's kind last chosen. */
  const [lassoValue, setLassoValue] = useState(FORCE_VESSEL);
  const [layer, setLayer] = useState<EditLayer | null>(null);
  /** Bumped after each committed change (stroke, fill, undo, redo). */
  const [version, setVersion] = useState(0);
  const stroke = useRef<{ last: Point; value: number } | null>(null);
  const dirty = useRef(onDirty);
  dirty.current = onDirty;

  /** A fresh, empty layer for a width × height `photo`, or `edits` (e.g. an opened annotation). */
  const reset = useCallback((width: number, height: number, edits?: Uint8Array, photo?: unknown) => {
    const data = edits ?? new Uint8Array(width * height);
    setLayer({ edits: data, width, height, history: new EditHistory(data, width, height), photo });
    setVersion((v) => v + 1);
  }, []);

  const chooseTool = useCallback((next: Tool) => {
    setTool(next);
    if (next === "brush") setLassoValue(FORCE_VESSEL);
    if (next === "eraser") setLassoValue(FORCE_BACKGROUND);
  }, []);

  const setBrushSize = useCallback((size: number) => setBrushSizeState(clampBrush(size)), []);

  const paintTo = useCallback(
    (to: Point) => {
      const s = stroke.current;
      if (!s || !layer) return;
      const from = s.last;
      s.last = to;
      const rect = segmentRect(from, to, brushSize, layer.width, layer.height);
      if (!rect) return;
      layer.history.touch(rect);
      paintSegment(layer.edits, layer.width, layer.height, from, to, brushSize, s.value);
      dirty.current(rect);
    },
    [layer, brushSize],
  );

  const strokeStart = useCallback(
    (at: Point) => {
      if (!layer || (tool !== "brush" && tool !== "eraser")) return;
      layer.history.begin();
      stroke.current = { last: at, value: tool === "brush" ? FORCE_VESSEL : FORCE_BACKGROUND };
      paintTo(at);
    },
    [layer, tool, paintTo],
  );

  const strokeEnd = useCallback(() => {
    if (!stroke.current || !layer) return;
    stroke.current = null;
    if (layer.history.commit()) setVersion((v) => v + 1);
  }, [layer]);

  /** Fills `polygon` (image coordinates) with the lasso's kind, as one undo step. */
  const fill = useCallback(
    (polygon: Point[]) => {
      if (!layer || polygon.length < 3) return;
      layer.history.begin();
      let rect: Rect | null = null;
      for (const [x, y] of polygon) rect = unionRect(rect, { x0: Math.floor(x), y0: Math.floor(y), x1: Math.ceil(x) + 1, y1: Math.ceil(y) + 1 });
      if (rect) layer.history.touch(rect);
      const changed = fillPolygon(layer.edits, layer.width, layer.height, polygon, lassoValue);
      if (changed) dirty.current(changed);
      if (layer.history.commit()) setVersion((v) => v + 1);
    },
    [layer, lassoValue],
  );

  const undo = useCallback(() => {
    const rect = layer?.history.undo();
    if (rect) {
      dirty.current(rect);
      setVersion((v) => v + 1);
    }
  }, [layer]);

  const redo = useCallback(() => {
    const rect = layer?.history.redo();
    if (rect) {
      dirty.current(rect);
      setVersion((v) => v + 1);
    }
  }, [layer]);

  // Whether any pixel is forced, recomputed once per committed change (not per pointer move).
  const edited = useMemo(() => (layer ? hasEdits(layer.edits) : false), [layer, version]); // eslint-disable-line react-hooks/exhaustive-deps

  return {
    tool,
    chooseTool,
    brushSize,
    setBrushSize,
    lassoValue,
    layer,
    version,
    edited,
    canUndo: !!layer?.history.canUndo,
    canRedo: !!layer?.history.canRedo,
    reset,
    strokeStart,
    strokeMove: paintTo,
    strokeEnd,
    fill,
    undo,
    redo,
  };
}

export type Editor = ReturnType<typeof useEditor>;
