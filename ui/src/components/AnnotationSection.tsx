"use client";
/**
 * The Annotation section: open an existing annotation (GeoJSON or mask PNG) as the starting mask; save the edited
 * mask (annotator's name asked once and kept in this browser; draft or final; a note) when the server keeps
 * annotations, with the saved id and how many annotations the folder holds; the next photo of the worklist.
 */
import { useRef } from "react";
import type { Annotations } from "@/hooks/useAnnotations";

interface AnnotationSectionProps {
  annotations: Annotations;
  onOpen: (file: File) => void;
  onSave: () => void;
  onNext: () => void;
  openError: string | null;
}

export default function AnnotationSection({ annotations: a, onOpen, onSave, onNext, openError }: AnnotationSectionProps) {
  const input = useRef<HTMLInputElement>(null);
  const enabled = !!a.settings?.enabled;
  return (
    <section aria-labelledby="annotation-heading" data-testid="annotation-section">
      <h2 id="annotation-heading">Annotation</h2>
      <button type="button" onClick={() => input.current?.click()}>
        Open annotation…
      </button>
      <input
        ref={input}
        type="file"
        accept=".geojson,.json,application/geo+json,application/json,image/png"
        data-testid="annotation-input"
        hidden
        onChange={(e) => {
          const file = e.target.files?.[0];
          e.target.value = "";
          if (file) onOpen(file);
        }}
      />
      {openError && (
        <p className="error small" role="alert" data-testid="open-error">
          {openError}
        </p>
      )}
      {enabled && (
        <div className="save" data-testid="save-annotation">
          <div className="field">
            <label htmlFor="annotator">Annotator</label>
            <input
              id="annotator"
              data-testid="annotator"
              value={a.annotator}
              placeholder="Your name (kept in this browser)"
              onChange={(e) => a.setAnnotator(e.target.value)}
            />
          </div>
          <div className="field">
            <label htmlFor="annotation-status">Status</label>
            <select id="annotation-status" data-testid="annotation-status" value={a.status} onChange={(e) => a.setStatus(e.target.value as "draft" | "final")}>
              <option value="draft">Draft</option>
              <option value="final">Final</option>
            </select>
          </div>
          <div className="field">
            <label htmlFor="annotation-note">Note</label>
            <input id="annotation-note" value={a.note} onChange={(e) => a.setNote(e.target.value)} placeholder="optional" />
          </div>
          <button type="button" className="primary" onClick={onSave} disabled={a.saving || !a.annotator.trim()}>
            {a.saving ? "Saving…" : "Save annotation"}
          </button>
          {a.saved && (
            <p className="small" role="status" data-testid="saved-info" data-annotation-id={a.saved.id}>
              Saved <code title={a.saved.id}>{a.saved.id.slice(0, 12)}…</code> version {a.saved.version} ({a.saved.status}) ·{" "}
              {a.saved.added.toLocaleString("en-US")} px added, {a.saved.removed.toLocaleString("en-US")} px removed
            </p>
          )}
          <p className="small muted" data-testid="annotation-count">
            The server holds {a.settings!.count.toLocaleString("en-US")} annotation{a.settings!.count === 1 ? "" : "s"}.
          </p>
          {a.error && (
            <p className="error small" role="alert">
              {a.error}
            </p>
          )}
        </div>
      )}
      {enabled && a.settings?.worklist && (
        <>
          <button type="button" onClick={onNext} data-testid="next-photo">
            Next photo
          </button>
          {a.worklistNote && <p className="small muted">{a.worklistNote}</p>}
        </>
      )}
    </section>
  );
}
