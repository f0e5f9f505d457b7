"use client";
/**
 * Zoomable, pannable view of the photo and the vessel layer: one pane (overlay, mask only) or two panes side by
 * side that share one transform, with the field of view and the region of interest outlined. Wheel zooms around
 * the pointer; drag pans with the pan tool, and with the middle button or space + drag under any tool. Keyboard
 * (viewer focused): arrows pan, + / − zoom, 0 fits, 1 shows 1:1. Editing tools: see usePointerTools.
 */
import { type ReactNode, type RefObject, useRef } from "react";
import type { Tool } from "@/hooks/useEditor";
import { type PointerCallbacks, usePointerTools } from "@/hooks/usePointerTools";
import { useViewTransform, ZOOM_STEP } from "@/hooks/useViewTransform";
import type { Point } from "@/lib/brush";
import { BrushCursor, ShapesLayer } from "./ViewerOverlays";

export type ViewMode = "overlay" | "side" | "mask";

const NO_TOOLS: PointerCallbacks = { onStrokeStart: () => {}, onStrokeMove: () => {}, onStrokeEnd: () => {}, onPolygon: () => {} };

interface ViewerProps {
  width: number;
  height: number;
  view: ViewMode;
  photoUrl: string | null;
  opacity: number;
  layerRef: RefObject<HTMLCanvasElement | null>;
  /** Changes whenever a new image is shown, to fit it anew. */
  imageKey: string;
  /** The field of view's outline (SVG path data in image pixels), or null to draw none. */
  fieldPath?: string | null;
  roi?: readonly Point[] | null;
  tool?: Tool;
  brushSize?: number;
  tools?: PointerCallbacks;
}

const HINTS: Record<Tool, string> = {
  pan: "Drag or arrow keys to pan · wheel or +/− to zoom",
  brush: "Paint vessel · [ ] size · space+drag or middle button pans · wheel zooms",
  eraser: "Erase vessel · [ ] size · space+drag or middle button pans · wheel zooms",
  lasso: "Draw around an area to fill it · space+drag pans",
  roi: "Click the corners of the region · double-click or Enter closes · Esc drops",
};

export default function Viewer(props: ViewerProps) {
  const { width, height, view, photoUrl, opacity, layerRef, imageKey, fieldPath, roi = null } = props;
  const { tool = "pan", brushSize = 1, tools = NO_TOOLS } = props;
  const paneRef = useRef<HTMLDivElement>(null);
  const rootRef = useRef<HTMLDivElement>(null);
  const cursorRef = useRef<HTMLDivElement>(null);
  const { t, tRef, fit, zoomBy, zoomTo, pan, onKey } = useViewTransform(width, height, paneRef, rootRef, `${imageKey}|${view}`);
  const pointer = usePointerTools(tool, tRef, pan, rootRef, tools, cursorRef);

  const stageStyle = { width, height, transform: `translate(${t.x}px, ${t.y}px) scale(${t.scale})` };
  const pixelated = t.scale >= 1 ? " pixelated" : "";
  const photo = (label: string) =>
    photoUrl ? (
      <img className="layer" src={photoUrl} width={width} height={height} alt={label} draggable={false} />
    ) : (
      <div className="layer no-photo" aria-hidden="true" />
    );
  const layer = (
    <canvas
      ref={layerRef}
      className="layer"
      data-testid="vessel-layer"
      width={width}
      height={height}
      style={{ opacity: view === "mask" ? 1 : opacity }}
      aria-label={view === "mask" ? "Vessel mask" : "Vessel overlay"}
      role="img"
    />
  );
  const shapes = (
    <ShapesLayer
      width={width}
      height={height}
      fieldPath={fieldPath ?? null}
      roi={roi}
      draft={pointer.draft}
      draftClosed={tool === "lasso"}
    />
  );
  const cursor = tool === "brush" || tool === "eraser" ? <BrushCursor size={brushSize} cursorRef={cursorRef} /> : null;
  const pane = (key: string, label: string, content: ReactNode, ref?: RefObject<HTMLDivElement | null>) => (
    <div className="pane" key={key} ref={ref}>
      <div className={`stage${pixelated}`} style={stageStyle}>
        {content}
      </div>
      <span className="pane-label">{label}</span>
    </div>
  );

  let panes: ReactNode;
  if (view === "side") {
    panes = [
      pane("photo", "Photo", photo("The uploaded photo"), paneRef),
      pane("overlay", "Vessels", <>{photo("The photo under the vessel overlay")}{layer}{shapes}{cursor}</>),
    ];
  } else if (view === "mask") {
    panes = pane("mask", "Mask", <>{layer}{shapes}{cursor}</>, paneRef);
  } else {
    panes = pane("overlay", "Overlay", <>{photo("The uploaded photo")}{layer}{shapes}{cursor}</>, paneRef);
  }

  return (
    <section className="viewer" aria-label="Result viewer">
      <div className="viewer-toolbar" role="toolbar" aria-label="Zoom">
        <button type="button" onClick={() => zoomBy(1 / ZOOM_STEP)} aria-label="Zoom out">
          −
        </button>
        <output className="zoom-level" aria-live="polite" aria-label="Zoom level" data-testid="zoom-level">
          {Math.round(t.scale * 100)}%
        </output>
        <button type="button" onClick={() => zoomBy(ZOOM_STEP)} aria-label="Zoom in">
          +
        </button>
        <button type="button" onClick={() => zoomTo(1)} title="One image pixel per screen pixel (key 1)">
          1:1
        </button>
        <button type="button" onClick={fit} title="Fit the image in the view (key 0)">
          Fit
        </button>
        <span className="hint">{HINTS[tool]}</span>
      </div>
      <div
        ref={rootRef}
        className={`panes panes-${view === "side" ? 2 : 1} tool-${tool}`}
        data-testid="viewer"
        tabIndex={0}
        role="group"
        aria-label="Image: arrow keys pan, plus and minus zoom, 0 fits, 1 shows one to one"
        onKeyDown={(e) => pointer.onKey(e) || onKey(e)}
        onPointerDown={pointer.onPointerDown}
        onPointerMove={pointer.onPointerMove}
        onPointerUp={pointer.onPointerUp}
        onPointerCancel={pointer.onPointerUp}
        onDoubleClick={pointer.onDoubleClick}
        onAuxClick={(e) => e.preventDefault()}
      >
        {panes}
      </div>
    </section>
  );
}
