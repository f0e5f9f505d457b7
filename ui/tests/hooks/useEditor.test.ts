// @vitest-environment happy-dom
import { act, renderHook } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import { useEditor } from "../../src/hooks/useEditor";
import { FORCE_BACKGROUND, FORCE_VESSEL, KEEP } from "../../src/lib/editLayer";

function setup() {
  const dirty = vi.fn();
  const hook = renderHook(() => useEditor(dirty));
  act(() => hook.result.current.reset(40, 30, undefined, "photo"));
  return { dirty, hook };
}

describe("useEditor", () => {
  it("a brush stroke forces vessel along its path, repaints only what it touched, and is one undo step", () => {
    const { dirty, hook } = setup();
    const editor = () => hook.result.current;
    act(() => editor().chooseTool("brush"));
    act(() => editor().setBrushSize(3));
    act(() => editor().strokeStart([5.5, 10.5]));
    act(() => editor().strokeMove([20.5, 10.5]));
    expect(editor().version).toBe(1); // no render per move: the version moves when the stroke ends
    act(() => editor().strokeEnd());
    expect(editor().version).toBe(2);
    const edits = editor().layer!.edits;
    for (let x = 5; x <= 20; x++) expect(edits[10 * 40 + x]).toBe(FORCE_VESSEL);
    expect(edits[0]).toBe(KEEP);
    for (const [rect] of dirty.mock.calls) expect((rect.x1 - rect.x0) * (rect.y1 - rect.y0)).toBeLessThan(40 * 30);
    expect(editor().edited).toBe(true);
    expect(editor().canUndo).toBe(true);
    act(() => editor().undo());
    expect(editor().layer!.edits.every((v) => v === KEEP)).toBe(true);
    expect(editor().canRedo).toBe(true);
    act(() => editor().redo());
    expect(editor().layer!.edits[10 * 40 + 12]).toBe(FORCE_VESSEL);
  });

  it("the eraser forces background; the lasso fills with the kind last chosen", () => {
    const { hook } = setup();
    const editor = () => hook.result.current;
    act(() => editor().chooseTool("eraser"));
    act(() => editor().strokeStart([2.5, 2.5]));
    act(() => editor().strokeEnd());
    expect(editor().layer!.edits[2 * 40 + 2]).toBe(FORCE_BACKGROUND);
    act(() => editor().chooseTool("lasso"));
    act(() => editor().fill([[10, 10], [20, 10], [20, 20], [10, 20]]));
    expect(editor().layer!.edits[15 * 40 + 15]).toBe(FORCE_BACKGROUND);
    act(() => editor().chooseTool("brush"));
    act(() => editor().chooseTool("lasso"));
    act(() => editor().fill([[25, 10], [35, 10], [35, 20], [25, 20]]));
    expect(editor().layer!.edits[15 * 40 + 30]).toBe(FORCE_VESSEL);
    expect(editor().layer!.history.steps).toBe(3);
  });

  it("ignores strokes with the pan tool, and keeps the brush in 1–64 px", () => {
    const { hook } = setup();
    const editor = () => hook.result.current;
    act(() => editor().strokeStart([5, 5]));
    act(() => editor().strokeEnd());
    expect(editor().edited).toBe(false);
    act(() => editor().setBrushSize(500));
    expect(editor().brushSize).toBe(64);
    act(() => editor().setBrushSize(0));
    expect(editor().brushSize).toBe(1);
  });
});
