/**
 * Undo/redo for the edit layer that stores only the tiles an edit changed (old and new bytes of each changed
 * tile), never copies of the whole layer: a brush stroke on an 8 MP photo costs a few tiles. Bounded by steps and
 * by bytes; the oldest steps go first.
 */
import type { Rect } from "./editLayer";

export interface HistoryLimits {
  /** Side of the square tiles (px). */
  tile: number;
  maxSteps: number;
  maxBytes: number;
}

export const DEFAULT_LIMITS: HistoryLimits = { tile: 64, maxSteps: 200, maxBytes: 256 * 1024 * 1024 };

interface TileChange {
  index: number;
  before: Uint8Array;
  after: Uint8Array;
}

interface Step {
  tiles: TileChange[];
  bytes: number;
}

export class EditHistory {
  private readonly limits: HistoryLimits;
  private readonly cols: number;
  private undoStack: Step[] = [];
  private redoStack: Step[] = [];
  private pending: Map<number, Uint8Array> | null = null;
  private bytesHeld = 0;

  constructor(
    private readonly layer: Uint8Array,
    private readonly width: number,
    private readonly height: number,
    limits: Partial<HistoryLimits> = {},
  ) {
    if (layer.length !== width * height) throw new RangeError("layer size is not width × height");
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    this.cols = Math.ceil(width / this.limits.tile);
  }

  get canUndo(): boolean {
    return this.undoStack.length > 0;
  }
  get canRedo(): boolean {
    return this.redoStack.length > 0;
  }
  get steps(): number {
    return this.undoStack.length;
  }
  /** Bytes held by undo and redo steps together. */
  get bytes(): number {
    return this.bytesHeld;
  }

  /** Starts an edit; every change until {@link commit} is one step. */
  begin(): void {
    this.pending = new Map();
  }

  /** Call before changing pixels in `rect`: keeps the old bytes of each tile it touches, once per edit. */
  touch(rect: Rect): void {
    if (!this.pending) throw new Error("touch() outside begin()/commit()");
    const t = this.limits.tile;
    const tx0 = Math.max(0, Math.floor(rect.x0 / t));
    const ty0 = Math.max(0, Math.floor(rect.y0 / t));
    const tx1 = Math.min(this.cols - 1, Math.floor((rect.x1 - 1) / t));
    const ty1 = Math.min(Math.ceil(this.height / t) - 1, Math.floor((rect.y1 - 1) / t));
    for (let ty = ty0; ty <= ty1; ty++) {
      for (let tx = tx0; tx <= tx1; tx++) {
        const index = ty * this.cols + tx;
        if (!this.pending.has(index)) this.pending.set(index, this.readTile(index));
      }
    }
  }

  /** Ends the edit; returns false (and records nothing) when it changed no pixel. */
  commit(): boolean {
    const pending = this.pending;
    this.pending = null;
    if (!pending) return false;
    const tiles: TileChange[] = [];
    let bytes = 0;
    for (const [index, before] of pending) {
      const after = this.readTile(index);
      if (!equal(before, after)) {
        tiles.push({ index, before, after });
        bytes += before.length + after.length;
      }
    }
    if (!tiles.length) return false;
    for (const step of this.redoStack) this.bytesHeld -= step.bytes;
    this.redoStack = [];
    this.undoStack.push({ tiles, bytes });
    this.bytesHeld += bytes;
    while (
      this.undoStack.length > 1 &&
      (this.undoStack.length > this.limits.maxSteps || this.bytesHeld > this.limits.maxBytes)
    ) {
      this.bytesHeld -= this.undoStack.shift()!.bytes;
    }
    return true;
  }

  /** Undoes the last step; returns the rectangle it changed, or null when there is nothing to undo. */
  undo(): Rect | null {
    const step = this.undoStack.pop();
    if (!step) return null;
    this.redoStack.push(step);
    return this.apply(step, "before");
  }

  redo(): Rect | null {
    const step = this.redoStack.pop();
    if (!step) return null;
    this.undoStack.push(step);
    return this.apply(step, "after");
  }

  clear(): void {
    this.undoStack = [];
    this.redoStack = [];
    this.pending = null;
    this.bytesHeld = 0;
  }

  private tileRect(index: number): Rect {
    const t = this.limits.tile;
    const x0 = (index % this.cols) * t;
    const y0 = Math.floor(index / this.cols) * t;
    return { x0, y0, x1: Math.min(this.width, x0 + t), y1: Math.min(this.height, y0 + t) };
  }

  private readTile(index: number): Uint8Array {
    const r = this.tileRect(index);
    const w = r.x1 - r.x0;
    const out = new Uint8Array(w * (r.y1 - r.y0));
    for (let y = r.y0; y < r.y1; y++) out.set(this.layer.subarray(y * this.width + r.x0, y * this.width + r.x1), (y - r.y0) * w);
    return out;
  }

  private apply(step: Step, side: "before" | "after"): Rect {
    let dirty: Rect | null = null;
    for (const change of step.tiles) {
      const r = this.tileRect(change.index);
      const w = r.x1 - r.x0;
      const data = change[side];
      for (let y = r.y0; y < r.y1; y++) this.layer.set(data.subarray((y - r.y0) * w, (y - r.y0 + 1) * w), y * this.width + r.x0);
      dirty = dirty
        ? { x0: Math.min(dirty.x0, r.x0), y0: Math.min(dirty.y0, r.y0), x1: Math.max(dirty.x1, r.x1), y1: Math.max(dirty.y1, r.y1) }
        : r;
    }
    return dirty!;
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
