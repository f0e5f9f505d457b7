// @vitest-environment happy-dom
import { renderHook } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import type { Editor } from "../../src/hooks/useEditor";
import { editKeyAction, useEditShortcuts } from "../../src/hooks/useEditShortcuts";

function fakeEditor(): Editor {
  return {
    brushSize: 10,
    chooseTool: vi.fn(),
    setBrushSize: vi.fn(),
    undo: vi.fn(),
    redo: vi.fn(),
  } as unknown as Editor;
}

const key = (k: string, mods: Partial<KeyboardEvent> = {}) => ({ key: k, ctrlKey: false, metaKey: false, shiftKey: false, altKey: false, ...mods });

describe("editor shortcuts", () => {
  it("map B, E, L, V, [ ], Ctrl/Cmd+Z and Shift+Ctrl/Cmd+Z", () => {
    const editor = fakeEditor();
    editKeyAction(key("b"), editor)!();
    editKeyAction(key("E", { shiftKey: true }), editor)!();
    editKeyAction(key("l"), editor)!();
    expect(vi.mocked(editor.chooseTool).mock.calls.map((c) => c[0])).toEqual(["brush", "eraser", "lasso"]);
    editKeyAction(key("]"), editor)!();
    editKeyAction(key("["), editor)!();
    expect(vi.mocked(editor.setBrushSize).mock.calls.map((c) => c[0])).toEqual([12, 8]);
    expect(editKeyAction(key("z", { ctrlKey: true }), editor)).toBe(editor.undo);
    expect(editKeyAction(key("z", { metaKey: true }), editor)).toBe(editor.undo);
    expect(editKeyAction(key("Z", { ctrlKey: true, shiftKey: true }), editor)).toBe(editor.redo);
    expect(editKeyAction(key("y", { ctrlKey: true }), editor)).toBe(editor.redo);
    expect(editKeyAction(key("c", { ctrlKey: true }), editor)).toBeNull();
    expect(editKeyAction(key("x"), editor)).toBeNull();
  });

  it("work with a radio or slider focused, not while typing in a text field", () => {
    const editor = fakeEditor();
    renderHook(() => useEditShortcuts(editor, true));
    const radio = document.createElement("input");
    radio.type = "radio";
    const text = document.createElement("input");
    document.body.append(radio, text);
    radio.dispatchEvent(new KeyboardEvent("keydown", { key: "z", ctrlKey: true, bubbles: true }));
    text.dispatchEvent(new KeyboardEvent("keydown", { key: "z", ctrlKey: true, bubbles: true }));
    text.dispatchEvent(new KeyboardEvent("keydown", { key: "b", bubbles: true }));
    expect(editor.undo).toHaveBeenCalledTimes(1);
    expect(editor.chooseTool).not.toHaveBeenCalled();
  });
});
