"use client";
/** Where a photo comes in: a file picker button and a drop target (the whole zone). */
import { type DragEvent, useRef, useState } from "react";
import { ACCEPT_ATTRIBUTE, ACCEPTED_TYPES, formatBytes, MAX_UPLOAD_BYTES } from "@/lib/upload";

interface DropZoneProps {
  onFile: (file: File) => void;
  busy: boolean;
  compact: boolean;
}

export default function DropZone({ onFile, busy, compact }: DropZoneProps) {
  const input = useRef<HTMLInputElement>(null);
  const [over, setOver] = useState(false);
  const types = Object.values(ACCEPTED_TYPES).map((t) => t.label).join(", ");

  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    setOver(false);
    const file = e.dataTransfer.files[0];
    if (file) onFile(file);
  };

  return (
    <div
      className={`dropzone${over ? " over" : ""}${compact ? " compact" : ""}`}
      data-testid="dropzone"
      onDragOver={(e) => {
        e.preventDefault();
        e.dataTransfer.dropEffect = "copy";
        setOver(true);
      }}
      onDragLeave={() => setOver(false)}
      onDrop={onDrop}
    >
      <p className="drop-title">{compact ? "Drop another photo here" : "Drop a fundus or slit-lamp photo here"}</p>
      <button type="button" className="primary" onClick={() => input.current?.click()} aria-describedby="accepted-types">
        {busy ? "Choose another photo…" : "Choose a photo…"}
      </button>
      <input
        ref={input}
        id="photo-input"
        data-testid="photo-input"
        type="file"
        accept={ACCEPT_ATTRIBUTE}
        className="visually-hidden"
        tabIndex={-1}
        aria-label="Photo file"
        onChange={(e) => {
          const file = e.target.files?.[0];
          if (file) onFile(file);
          e.target.value = ""; // choosing the same file again still fires
        }}
      />
      <p id="accepted-types" className="small muted">
        {types}; up to {formatBytes(MAX_UPLOAD_BYTES)}.
      </p>
    </div>
  );
}
