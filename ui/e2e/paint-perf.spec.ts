/**
 * Painting on an 8 MP photo (HRF, 3504×2336) in Chromium: the time per pointer move of the brush (the page's own
 * handler time: edit layer, undo tiles, repaint of the changed rectangle) over 100 strokes, the pointer moves per
 * second Playwright manages to deliver, the JS heap after the 100 strokes (after a forced GC) and the undo
 * history's bytes; then one stroke of 300 moves dispatched in the page, one per animation frame, timing the frames
 * (move handled, layer composited and drawn: at 60 Hz a frame that keeps up takes ~16.7 ms). A measurement, not a default test: it runs only with VESSEL_E2E_PERF=1 and writes
 * test-results/…/paint-8mp.json; it fails when the median move exceeds 16 ms.
 *
 *   VESSEL_E2E_PERF=1 npm run test:e2e -- paint-perf
 *
 * Env: VESSEL_DATA_DIR (default ../../shared/data from ui/), VESSEL_E2E_URL (set by the global setup).
 */
import { readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { expect, test } from "@playwright/test";
import { DATA_DIR } from "./server";

const HRF = path.join(DATA_DIR, "HRF", "test", "images");
const STROKES = 100;
const MOVES_PER_STROKE = 30;

test("brush on a 3504×2336 photo: time per pointer move and memory after 100 strokes", async ({ page }, testInfo) => {
  test.skip(!process.env.VESSEL_E2E_PERF, "a measurement: set VESSEL_E2E_PERF=1 to run it");
  test.setTimeout(600_000);
  const photo = path.join(HRF, readdirSync(HRF).sort()[0]);
  await page.goto(process.env.VESSEL_E2E_URL + "/");
  await page.getByTestId("photo-input").setInputFiles(photo);
  await expect(page.getByTestId("result-info")).toContainText("3504×2336", { timeout: 300_000 });
  await page.keyboard.press("b");
  await page.getByTestId("brush-size").fill("32");
  const viewer = page.getByTestId("viewer");
  const box = (await viewer.boundingBox())!;

  const p50: number[] = [];
  const p95: number[] = [];
  const max: number[] = [];
  let moves = 0;
  let wallMs = 0;
  for (let k = 0; k < STROKES; k++) {
    // strokes across the photo at varied angles, alternating brush and eraser
    if (k % 2 === 1) await page.keyboard.press("e");
    else await page.keyboard.press("b");
    const a = (k * 37) % 100;
    const x0 = box.x + box.width * (0.1 + 0.008 * a);
    const y0 = box.y + box.height * (0.15 + 0.007 * ((k * 53) % 100));
    const x1 = box.x + box.width * (0.9 - 0.008 * a);
    const y1 = box.y + box.height * (0.85 - 0.007 * ((k * 29) % 100));
    await page.mouse.move(x0, y0);
    await page.mouse.down();
    const started = Date.now();
    await page.mouse.move(x1, y1, { steps: MOVES_PER_STROKE });
    wallMs += Date.now() - started;
    await page.mouse.up();
    const attrs = await viewer.evaluate((el) => ["p50", "p95", "max", "moves"].map((k) => Number(el.getAttribute(k === "moves" ? "data-paint-moves" : `data-paint-ms-${k}`))));
    p50.push(attrs[0]);
    p95.push(attrs[1]);
    max.push(attrs[2]);
    moves += attrs[3];
  }
  await expect(page.getByTestId("edit-section")).toHaveAttribute("data-undo-steps", String(STROKES));
  const historyBytes = Number(await page.getByTestId("edit-section").getAttribute("data-history-bytes"));
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("HeapProfiler.collectGarbage");
  const heap = (await cdp.send("Runtime.getHeapUsage")) as { usedSize: number; totalSize: number; backingStorageSize?: number };
  const metrics = (await cdp.send("Performance.enable").then(() => cdp.send("Performance.getMetrics"))) as { metrics: { name: string; value: number }[] };
  const jsHeapUsed = metrics.metrics.find((m) => m.name === "JSHeapUsedSize")?.value ?? null;
  const frames = await viewer.evaluate(async (el) => {
    const r = el.getBoundingClientRect();
    const fire = (type: string, x: number, y: number) =>
      el.dispatchEvent(new PointerEvent(type, { bubbles: true, pointerId: 1, button: 0, buttons: 1, clientX: x, clientY: y, isPrimary: true }));
    const frame = () => new Promise<number>((resolve) => requestAnimationFrame(resolve));
    fire("pointerdown", r.left + r.width * 0.1, r.top + r.height * 0.5);
    let last = await frame();
    const intervals: number[] = [];
    for (let i = 1; i <= 300; i++) {
      const f = i / 300;
      fire("pointermove", r.left + r.width * (0.1 + 0.8 * f), r.top + r.height * (0.5 + 0.3 * Math.sin(f * 12)));
      const now = await frame();
      intervals.push(now - last);
      last = now;
    }
    fire("pointerup", r.right - r.width * 0.1, r.top + r.height * 0.5);
    return intervals.sort((a, b) => a - b);
  });
  const sorted = (xs: number[]) => [...xs].sort((x, y) => x - y);
  const median = (xs: number[]) => sorted(xs)[xs.length >> 1];
  const report = {
    photo: path.basename(photo),
    strokes: STROKES,
    moves,
    brush_px: 32,
    move_ms_median_of_stroke_medians: median(p50),
    move_ms_median_of_stroke_p95: median(p95),
    move_ms_max: Math.max(...max),
    playwright_moves_per_s: (STROKES * MOVES_PER_STROKE) / (wallMs / 1000),
    frame_ms_median_while_painting: frames[frames.length >> 1],
    frame_ms_p95_while_painting: frames[Math.floor(frames.length * 0.95)],
    undo_history_mb: historyBytes / 2 ** 20,
    js_heap_used_mb: heap.usedSize / 2 ** 20,
    js_heap_total_mb: heap.totalSize / 2 ** 20,
    array_buffers_mb: heap.backingStorageSize !== undefined ? heap.backingStorageSize / 2 ** 20 : null,
    performance_js_heap_used_mb: jsHeapUsed !== null ? jsHeapUsed / 2 ** 20 : null,
  };
  console.log(`[perf] ${JSON.stringify(report)}`);
  writeFileSync(testInfo.outputPath("paint-8mp.json"), JSON.stringify(report, null, 2));
  testInfo.annotations.push({ type: "paint-8mp", description: JSON.stringify(report) });
  expect(report.move_ms_median_of_stroke_medians).toBeLessThan(16);
});
