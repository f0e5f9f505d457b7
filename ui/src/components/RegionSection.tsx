"use client";
/**
 * The Region of interest section: draw a polygon around the part of the photo to judge (for photos without a
 * camera field, such as slit-lamp photos); prediction, measurements, downloads and the saved annotation are then
 * restricted to it, as to a detected field of view.
 */

interface RegionSectionProps {
  drawing: boolean;
  hasRegion: boolean;
  onDraw: () => void;
  onClear: () => void;
}

export default function RegionSection({ drawing, hasRegion, onDraw, onClear }: RegionSectionProps) {
  return (
    <section aria-labelledby="region-heading">
      <h2 id="region-heading">Region of interest</h2>
      <div className="tools">
        <button type="button" aria-pressed={drawing} onClick={onDraw} data-testid="tool-roi">
          {hasRegion ? "Redraw region" : "Draw region"}
        </button>
        <button type="button" onClick={onClear} disabled={!hasRegion}>
          Clear region
        </button>
      </div>
      <p className="small muted">
        {drawing
          ? "Click the corners; double-click or Enter closes the region (Esc drops it)."
          : hasRegion
            ? "Prediction, measurements, downloads and the saved annotation count only inside the region."
            : "Optional: restrict everything to a region, as to a camera's field of view."}
      </p>
    </section>
  );
}
