"use client";
/** The View section: overlay, side by side or mask only, and the field-of-view outline switch. */
import type { ViewMode } from "./Viewer";

interface ViewSectionProps {
  view: ViewMode;
  onView: (view: ViewMode) => void;
  showField: boolean;
  onShowField: (show: boolean) => void;
  hasField: boolean;
}

const VIEWS = [
  ["overlay", "Overlay"],
  ["side", "Side by side"],
  ["mask", "Mask only"],
] as const;

export default function ViewSection({ view, onView, showField, onShowField, hasField }: ViewSectionProps) {
  return (
    <section aria-labelledby="view-heading">
      <h2 id="view-heading">View</h2>
      <div className="segmented" role="radiogroup" aria-labelledby="view-heading">
        {VIEWS.map(([value, label]) => (
          <label key={value} className={view === value ? "checked" : ""}>
            <input type="radio" name="view" value={value} checked={view === value} onChange={() => onView(value)} />
            {label}
          </label>
        ))}
      </div>
      <label className="check">
        <input
          type="checkbox"
          data-testid="show-field"
          checked={showField}
          onChange={(e) => onShowField(e.target.checked)}
          disabled={!hasField}
        />
        Field of view outline
      </label>
    </section>
  );
}
