import { afterEach, describe, expect, it, vi } from "vitest";
import { AccessState } from "../src/lib/access";
import { type Answer, retryAfterSeconds, withAccess } from "../src/lib/retry";

function memoryStorage() {
  const data = new Map<string, string>();
  return {
    getItem: (k: string) => data.get(k) ?? null,
    setItem: (k: string, v: string) => void data.set(k, v),
    removeItem: (k: string) => void data.delete(k),
  };
}

const ok: Answer = { status: 200, retryAfter: null, detail: "" };
const busy = (after: string | null): Answer => ({ status: 503, retryAfter: after, detail: "server busy" });
const refused: Answer = { status: 401, retryAfter: null, detail: "missing or wrong API key" };

afterEach(() => vi.useRealTimers());

describe("retryAfterSeconds", () => {
  it("reads delta-seconds and HTTP dates, and nothing else", () => {
    expect(retryAfterSeconds("5")).toBe(5);
    expect(retryAfterSeconds(" 0 ")).toBe(0);
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(retryAfterSeconds("Thu, 01 Jan 2026 00:00:07 GMT", now)).toBe(7);
    expect(retryAfterSeconds("Wed, 31 Dec 2025 23:00:00 GMT", now)).toBe(0);
    expect(retryAfterSeconds(null)).toBeNull();
    expect(retryAfterSeconds("soon")).toBeNull();
    expect(retryAfterSeconds("-3")).toBeNull();
  });
});

describe("withAccess: 503", () => {
  it("retries after Retry-After, counting the wait down second by second", async () => {
    vi.useFakeTimers();
    const state = new AccessState(memoryStorage());
    const seen: (number | null)[] = [];
    state.subscribe(() => seen.push(state.getSnapshot().busy?.secondsLeft ?? null));
    const attempt = vi.fn().mockResolvedValueOnce(busy("3")).mockResolvedValueOnce(ok);
    const done = withAccess(state, attempt);
    await vi.advanceTimersByTimeAsync(2999);
    expect(attempt).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(await done).toBe(ok);
    expect(attempt).toHaveBeenCalledTimes(2);
    expect(seen).toEqual([3, 2, 1, null]);
  });

  it("gives up after maxRetries and returns the last 503", async () => {
    vi.useFakeTimers();
    const state = new AccessState(memoryStorage());
    const attempt = vi.fn().mockResolvedValue(busy("1"));
    const done = withAccess(state, attempt, { policy: { maxRetries: 2 } });
    await vi.advanceTimersByTimeAsync(10_000);
    expect((await done).status).toBe(503);
    expect(attempt).toHaveBeenCalledTimes(3);
    expect(state.getSnapshot().busy).toBeNull();
  });

  it("caps a long Retry-After and does not retry a 503 without one, or when told not to", async () => {
    vi.useFakeTimers();
    const state = new AccessState(memoryStorage());
    const capped = vi.fn().mockResolvedValueOnce(busy("3600")).mockResolvedValueOnce(ok);
    const done = withAccess(state, capped, { policy: { maxWaitS: 2 } });
    await vi.advanceTimersByTimeAsync(2000);
    expect(await done).toBe(ok);
    const plain = vi.fn().mockResolvedValue(busy(null));
    expect((await withAccess(state, plain)).status).toBe(503);
    expect(plain).toHaveBeenCalledTimes(1);
    const model = vi.fn().mockResolvedValue(busy("5"));
    expect((await withAccess(state, model, { policy: { retryBusy: false } })).status).toBe(503);
    expect(model).toHaveBeenCalledTimes(1);
  });

  it("stops waiting when the request is cancelled", async () => {
    vi.useFakeTimers();
    const state = new AccessState(memoryStorage());
    const controller = new AbortController();
    const done = withAccess(state, vi.fn().mockResolvedValue(busy("5")), { signal: controller.signal });
    const rejected = expect(done).rejects.toThrow("Request cancelled");
    await vi.advanceTimersByTimeAsync(1500);
    controller.abort();
    await rejected;
    expect(state.getSnapshot().busy).toBeNull();
  });
});

describe("withAccess: API key", () => {
  it("asks once for requests refused together, keeps the key and sends it", async () => {
    const storage = memoryStorage();
    const state = new AccessState(storage);
    const sent: Record<string, string>[] = [];
    const attempt = async (headers: Record<string, string>) => {
      sent.push(headers);
      return headers["X-API-Key"] === "s3cret" ? ok : refused;
    };
    const first = withAccess(state, attempt);
    const second = withAccess(state, attempt);
    await vi.waitFor(() => expect(state.getSnapshot().keyRequest).not.toBeNull());
    expect(state.getSnapshot().keyRequest).toEqual({ reason: "missing", detail: "missing or wrong API key" });
    state.answerKey(" s3cret ");
    expect(await first).toBe(ok);
    expect(await second).toBe(ok);
    expect(storage.getItem("vessel-api-key")).toBe("s3cret");
    expect(await withAccess(state, attempt)).toBe(ok);
    expect(sent.at(-1)).toEqual({ "X-API-Key": "s3cret" });
    expect(sent.filter((h) => !h["X-API-Key"])).toHaveLength(2);
  });

  it("says when the key sent was refused, and returns the 401 when the user declines", async () => {
    const storage = memoryStorage();
    storage.setItem("vessel-api-key", "old");
    const state = new AccessState(storage);
    const done = withAccess(state, async () => refused);
    await vi.waitFor(() => expect(state.getSnapshot().keyRequest?.reason).toBe("wrong"));
    state.answerKey(null);
    expect((await done).status).toBe(401);
    expect(state.getSnapshot().keyRequest).toBeNull();
  });
});
