"use client";
/**
 * The editor's keys, anywhere on the page except while typing in a text field: B brush, E eraser, L lasso, V pan,
 * [ and ] brush size, Ctrl/Cmd+Z undo, Shift+Ctrl/Cmd+Z (or Ctrl+Y) redo.
 */
import { useEffect, useRef } from "react";
import type { Editor } from "./useEditor";

export function editKeyAction(e: Pick<KeyboardEvent, "key" | "ctrlKey" | "metaKey" | "shiftKey" | "altKey">, editor: Editor): (() => void) | null {
  const mod = e.ctrlKey || e.metaKey;
  const key = e.key.toLowerCase();
  if (mod && !e.altKey) {
    if (key === "z") return e.shiftKey ? editor.redo : editor.undo;
    if (key === "y" && !e.shiftKey) return editor.redo;
    return null;
  }
  if (e.altKey) return null;
  const step = Math.max(1, Math.round(editor.brushSize * 0.2));
  const actions: Record<string, () => void> = {
    b: () => editor.chooseTool("brush"),
    e: () => editor.chooseTool("eraser"),
    l: () => editor.chooseTool("lasso"),
    v: () => editor.chooseTool("pan"),
    "[": () => editor.setBrushSize(editor.brushSize - step),
    "]": () => editor.setBrushSize(editor.brushSize + step),
  };
  return actions[key] ?? null;
}

/** Fields where keys are typed text (a radio, checkbox, slider or button keeps the shortcuts). */
const TYPING = "textarea, select, [contenteditable], input:not([type=radio]):not([type=checkbox]):not([type=range]):not([type=button]):not([type=color]):not([type=file])";

export function useEditShortcuts(editor: Editor, enabled: boolean): void {
  const current = useRef(editor);
  current.current = editor;
  useEffect(() => {
    if (!enabled) return;
    const onKey = (e: KeyboardEvent) => {
      const target = e.target as HTMLElement | null;
      if (target?.closest?.(TYPING)) return;
      const action = editKeyAction(e, current.current);
      if (!action) return;
      e.preventDefault();
      action();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [enabled]);
}
