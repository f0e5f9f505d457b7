"use client";
/** The Photo section: the drop zone, the prediction's progress with Cancel, the error and notices. */
import type { ReactNode } from "react";
import { PHASE_TEXT, type Progress } from "@/lib/result";
import DropZone from "./DropZone";

interface PhotoSectionProps {
  onFile: (file: File) => void;
  progress: Progress | null;
  onCancel: () => void;
  error: string | null;
  notice: string | null;
  compact: boolean;
  children?: ReactNode;
}

export default function PhotoSection({ onFile, progress, onCancel, error, notice, compact, children }: PhotoSectionProps) {
  return (
    <section aria-labelledby="photo-heading">
      <h2 id="photo-heading">Photo</h2>
      <DropZone onFile={onFile} busy={!!progress} compact={compact} />
      {progress && (
        <div className="progress" role="status" aria-live="polite" data-testid="progress">
          <div>
            {PHASE_TEXT[progress.phase]} <span className="muted">{progress.fileName}</span>…
          </div>
          <progress max={1} value={progress.fraction ?? undefined} aria-label={PHASE_TEXT[progress.phase]} />
          <button type="button" onClick={onCancel}>
            Cancel
          </button>
        </div>
      )}
      {children}
      <div role="alert" className={error ? "error" : "visually-hidden"} data-testid="error">
        {error}
      </div>
      {notice && (
        <p className="notice" role="status">
          {notice}
        </p>
      )}
    </section>
  );
}
