"use client";
/**
 * The Edit section: tools (view/pan, brush, eraser, lasso), brush size, undo/redo, and what the edits changed.
 * Edits are a layer over the model's mask, so the threshold can still move without losing them.
 */
import type { Editor, Tool } from "@/hooks/useEditor";
import { MAX_BRUSH, MIN_BRUSH } from "@/lib/brush";
import { ADDED_COLOUR, REMOVED_COLOUR } from "@/lib/colours";
import { FORCE_VESSEL } from "@/lib/editLayer";

interface EditSectionProps {
  editor: Editor;
  counts: { added: number; removed: number } | null;
}

const TOOLS: [Tool, string, string][] = [
  ["pan", "View", "V"],
  ["brush", "Brush", "B"],
  ["eraser", "Eraser", "E"],
  ["lasso", "Lasso", "L"],
];

export default function EditSection({ editor, counts }: EditSectionProps) {
  return (
    <section
      aria-labelledby="edit-heading"
      data-testid="edit-section"
      data-edit-version={editor.version}
      data-undo-steps={editor.layer?.history.steps ?? 0}
      data-history-bytes={editor.layer?.history.bytes ?? 0}
    >
      <h2 id="edit-heading">Edit</h2>
      <div className="tools" role="toolbar" aria-label="Editing tools">
        {TOOLS.map(([tool, label, key]) => (
          <button
            key={tool}
            type="button"
            aria-pressed={editor.tool === tool}
            onClick={() => editor.chooseTool(tool)}
            title={`${label} (${key})`}
            data-testid={`tool-${tool}`}
          >
            {label}
          </button>
        ))}
      </div>
      <div className="field">
        <label htmlFor="brush-size">Brush</label>
        <input
          id="brush-size"
          data-testid="brush-size"
          type="range"
          min={MIN_BRUSH}
          max={MAX_BRUSH}
          step={1}
          value={editor.brushSize}
          onChange={(e) => editor.setBrushSize(Number(e.target.value))}
          aria-label="Brush size in image pixels ([ and ])"
        />
        <output htmlFor="brush-size" className="value" data-testid="brush-size-value">
          {editor.brushSize} px
        </output>
      </div>
      <div className="tools">
        <button type="button" onClick={editor.undo} disabled={!editor.canUndo} title="Undo (Ctrl/Cmd+Z)">
          Undo
        </button>
        <button type="button" onClick={editor.redo} disabled={!editor.canRedo} title="Redo (Shift+Ctrl/Cmd+Z)">
          Redo
        </button>
      </div>
      <p className="small muted">
        {editor.tool === "lasso" ? `The lasso ${editor.lassoValue === FORCE_VESSEL ? "adds vessel" : "erases"} (as the brush or eraser last chosen). ` : ""}
        Edits are a layer over the model&apos;s mask: moving the threshold keeps them.
      </p>
      {counts && (
        <p className="small" data-testid="edit-counts">
          <span className="swatch" style={{ background: ADDED_COLOUR }} />
          {counts.added.toLocaleString("en-US")} px added · <span className="swatch" style={{ background: REMOVED_COLOUR }} />
          {counts.removed.toLocaleString("en-US")} px removed
        </p>
      )}
    </section>
  );
}
