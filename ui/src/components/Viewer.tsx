"use client";
/**
 * Zoomable, pannable view of the photo and the vessel layer: one pane (overlay, mask only) or two panes side by
 * side that share one transform, with the field of view outlined when given. Mouse: wheel zooms around the pointer, drag pans. Keyboard (viewer focused):
 * arrows pan, + / − zoom, 0 fits, 1 shows 1:1.
 */
import { type ReactNode, type RefObject, useCallback, useEffect, useLayoutEffect, useRef, useState } from "react";

export type ViewMode = "overlay" | "side" | "mask";

interface Transform {
  scale: number;
  x: number;
  y: number;
}

const MIN_SCALE = 0.05;
const MAX_SCALE = 16;
const ZOOM_STEP = 1.25;
const PAN_STEP = 60;

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
}

export default function Viewer({ width, height, view, photoUrl, opacity, layerRef, imageKey, fieldPath }: ViewerProps) {
  const paneRef = useRef<HTMLDivElement>(null);
  const rootRef = useRef<HTMLDivElement>(null);
  const [t, setT] = useState<Transform>({ scale: 1, x: 0, y: 0 });
  const drag = useRef<{ id: number; x: number; y: number } | null>(null);

  const paneSize = useCallback(() => {
    const el = paneRef.current;
    return el ? { w: el.clientWidth, h: el.clientHeight } : { w: width, h: height };
  }, [width, height]);

  const fit = useCallback(() => {
    const { w, h } = paneSize();
    const scale = Math.min(w / width, h / height, MAX_SCALE);
    setT({ scale, x: (w - width * scale) / 2, y: (h - height * scale) / 2 });
  }, [paneSize, width, height]);

  /** Zoom to `scale(old)` keeping the image point under pane point (cx, cy) in place (default: pane center). */
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
  const zoomBy = useCallback(
    (factor: number, cx?: number, cy?: number) => zoom((s) => s * factor, cx, cy),
    [zoom],
  );
  const zoomTo = useCallback((scale: number) => zoom(() => scale), [zoom]);

  const pan = (dx: number, dy: number) => setT((old) => ({ ...old, x: old.x + dx, y: old.y + dy }));

  // Fit each new image, and when the view changes the pane size.
  useLayoutEffect(() => fit(), [imageKey, view, fit]);

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
  }, [zoomBy]);

  const onKeyDown = (e: React.KeyboardEvent) => {
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
    if (action && !e.ctrlKey && !e.metaKey && !e.altKey) {
      e.preventDefault();
      action();
    }
  };

  const onPointerDown = (e: React.PointerEvent) => {
    if (e.button !== 0) return;
    drag.current = { id: e.pointerId, x: e.clientX, y: e.clientY };
    (e.currentTarget as HTMLElement).setPointerCapture(e.pointerId);
  };
  const onPointerMove = (e: React.PointerEvent) => {
    const d = drag.current;
    if (!d || d.id !== e.pointerId) return;
    pan(e.clientX - d.x, e.clientY - d.y);
    drag.current = { id: d.id, x: e.clientX, y: e.clientY };
  };
  const onPointerUp = (e: React.PointerEvent) => {
    if (drag.current?.id === e.pointerId) drag.current = null;
  };

  const stageStyle = {
    width,
    height,
    transform: `translate(${t.x}px, ${t.y}px) scale(${t.scale})`,
  };
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
  // Outside the field is dimmed and the edge dashed; the stroke keeps its screen width at any zoom.
  const field = fieldPath ? (
    <svg
      className="layer field-layer"
      data-testid="field-layer"
      viewBox={`0 0 ${width} ${height}`}
      width={width}
      height={height}
      role="img"
      aria-label="Field of view"
    >
      <path d={`M0 0H${width}V${height}H0Z${fieldPath}`} fill="rgba(0, 0, 0, 0.35)" fillRule="evenodd" />
      <path
        d={fieldPath}
        fill="none"
        stroke="#5cb6ff"
        strokeWidth={2}
        strokeDasharray="8 6"
        vectorEffect="non-scaling-stroke"
      />
    </svg>
  ) : null;
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
      pane("overlay", "Vessels", <>{photo("The photo under the vessel overlay")}{layer}{field}</>),
    ];
  } else if (view === "mask") {
    panes = pane("mask", "Mask", <>{layer}{field}</>, paneRef);
  } else {
    panes = pane("overlay", "Overlay", <>{photo("The uploaded photo")}{layer}{field}</>, paneRef);
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
        <span className="hint">Drag or arrow keys to pan · wheel or +/− to zoom</span>
      </div>
      <div
        ref={rootRef}
        className={`panes panes-${view === "side" ? 2 : 1}`}
        tabIndex={0}
        role="group"
        aria-label="Image: arrow keys pan, plus and minus zoom, 0 fits, 1 shows one to one"
        onKeyDown={onKeyDown}
        onPointerDown={onPointerDown}
        onPointerMove={onPointerMove}
        onPointerUp={onPointerUp}
        onPointerCancel={onPointerUp}
      >
        {panes}
      </div>
    </section>
  );
}
