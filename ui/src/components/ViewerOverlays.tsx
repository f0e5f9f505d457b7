"use client";
/**
 * What the viewer draws over the image, in image coordinates: the field of view (outside dimmed, edge dashed), the
 * region of interest, the polygon being drawn, and the brush outline that follows the pointer.
 */
import type { RefObject } from "react";
import type { Point } from "@/lib/brush";
import { polygonPath } from "@/lib/roi";

interface OverlayProps {
  width: number;
  height: number;
  fieldPath: string | null;
  roi: readonly Point[] | null;
  draft: readonly Point[];
  draftClosed: boolean;
}

export function ShapesLayer({ width, height, fieldPath, roi, draft, draftClosed }: OverlayProps) {
  if (!fieldPath && !roi && !draft.length) return null;
  // Strokes keep their screen width at any zoom.
  return (
    <svg
      className="layer field-layer"
      viewBox={`0 0 ${width} ${height}`}
      width={width}
      height={height}
      role="img"
      aria-label="Field of view and region of interest"
    >
      {fieldPath && (
        <g data-testid="field-layer">
          <path d={`M0 0H${width}V${height}H0Z${fieldPath}`} fill="rgba(0, 0, 0, 0.35)" fillRule="evenodd" />
          <path d={fieldPath} fill="none" stroke="#5cb6ff" strokeWidth={2} strokeDasharray="8 6" vectorEffect="non-scaling-stroke" />
        </g>
      )}
      {roi && (
        <path
          data-testid="roi-outline"
          d={polygonPath(roi)}
          fill="none"
          stroke="#ffffff"
          strokeWidth={2}
          strokeDasharray="4 4"
          vectorEffect="non-scaling-stroke"
        />
      )}
      {draft.length > 0 && (
        <path
          data-testid="polygon-draft"
          d={polygonPath(draft, draftClosed)}
          fill="rgba(255, 255, 255, 0.15)"
          stroke="#ffffff"
          strokeWidth={1.5}
          vectorEffect="non-scaling-stroke"
        />
      )}
    </svg>
  );
}

/** The brush outline: a circle of the brush's diameter in image pixels, moved by the pointer handler. */
export function BrushCursor({ size, cursorRef }: { size: number; cursorRef: RefObject<HTMLDivElement | null> }) {
  return (
    <div ref={cursorRef} className="brush-cursor-anchor" aria-hidden="true">
      <div
        className="brush-cursor"
        data-testid="brush-cursor"
        style={{ width: size, height: size, marginLeft: -size / 2, marginTop: -size / 2 }}
      />
    </div>
  );
}
