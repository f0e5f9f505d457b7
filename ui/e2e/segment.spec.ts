/**
 * The whole UI against a real vessel-serve (see global-setup.ts): upload a CHASE_DB1 photo, see the overlay, move
 * the threshold, download the mask and compare it with the API's own `format=mask`, time re-thresholding a
 * 1624×1232 photo, and refuse a text file. A second test: the Measurements panel shows the API's numbers and
 * follows the slider (debounced), the field of view is outlined and can be hidden, the GeoJSON
 * download equals `format=geojson`, a scale adds µm. Both run in named steps, so a failure names the step that
 * broke. Screenshots and measured timings go to test-results/.
 *
 * Env: VESSEL_DATA_DIR (default ../../shared/data from ui/), VESSEL_E2E_URL (set by the global setup).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { expect, type Page, test } from "@playwright/test";
import { overlayVesselPixels } from "./overlay";
import { baseUrl, CHASE_PHOTO } from "./server";
import { decodePng, firstChannel } from "../src/lib/png";
import { thresholdMask } from "../src/lib/threshold";

const PHOTO = CHASE_PHOTO;

/** Set the threshold slider as a user's input would (React listens to the input event). */
async function setThreshold(page: Page, value: number): Promise<void> {
  await page.getByTestId("threshold").evaluate((el, v) => {
    const input = el as HTMLInputElement;
    Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value")!.set!.call(input, String(v));
    input.dispatchEvent(new Event("input", { bubbles: true }));
  }, value);
  await expect(page.getByTestId("threshold-section")).toHaveAttribute("data-painted-threshold", String(value));
}

async function rethresholdMs(page: Page): Promise<number> {
  return Number(await page.getByTestId("threshold-section").getAttribute("data-rethreshold-ms"));
}

async function apiPng(page: Page, query: string, photo: Buffer, name: string): Promise<Uint8Array> {
  const response = await page.request.post(`${baseUrl()}/predict?${query}`, {
    multipart: { file: { name, mimeType: "image/jpeg", buffer: photo } },
  });
  expect(response.status(), await response.text().catch(() => "")).toBe(200);
  const image = await decodePng(new Uint8Array(await response.body()));
  return firstChannel(image);
}

test("segment a CHASE_DB1 photo, re-threshold, download, and refuse a text file", async ({ page }, testInfo) => {
  const origin = new URL(baseUrl()).origin;
  const outside: string[] = [];
  page.on("request", (r) => {
    const url = r.url();
    if (!url.startsWith(origin) && !url.startsWith("data:") && !url.startsWith("blob:")) outside.push(url);
  });
  const consoleErrors: string[] = [];
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  const photo = readFileSync(PHOTO);

  await test.step("the page loads and names the served model", async () => {
    await page.goto(baseUrl() + "/");
    await expect(page.getByTestId("model-info")).toContainText(/vessel-unet v\d+/);
    await expect(page.getByTestId("device-info")).toHaveText(/^(CPU|GPU) · /);
  });

  await test.step("keyboard-only upload of a CHASE_DB1 photo shows the overlay", async () => {
    // Keyboard only: the first Tab reaches the picker, Enter opens it; upload a real photo and wait for the overlay.
    // Listen for the chooser before any key is pressed: Playwright turns on file-chooser interception
    // asynchronously, and an Enter that wins that race opens a native dialog the test never sees.
    const chooserOpened = page.waitForEvent("filechooser");
    await page.keyboard.press("Tab");
    await expect(page.getByRole("button", { name: "Choose a photo…" })).toBeFocused();
    await page.keyboard.press("Enter");
    const chooser = await chooserOpened;
    await chooser.setFiles(PHOTO);
    await expect(page.getByTestId("vessel-layer")).toBeVisible();
    await expect(page.getByTestId("threshold-section")).toHaveAttribute("data-rethreshold-ms", /\d/);
    await expect(page.getByTestId("threshold-value")).toHaveText("0.50"); // the contract's recommended threshold
    await expect(page.getByTestId("result-info")).toContainText("999×960");
  });

  await test.step("the overlay follows the threshold slider", async () => {
    // The overlay's vessel pixels fall as the threshold rises, and match the count shown.
    const counts: Record<string, number> = {};
    for (const t of [0.3, 0.5, 0.7]) {
      await setThreshold(page, t);
      counts[t] = (await overlayVesselPixels(page)).vessel;
      expect(Number(await page.getByTestId("threshold-section").getAttribute("data-vessel-pixels"))).toBe(counts[t]);
    }
    expect(counts[0.3]).toBeGreaterThan(counts[0.5]);
    expect(counts[0.5]).toBeGreaterThan(counts[0.7]);
    expect(counts[0.7]).toBeGreaterThan(0);
  });

  await test.step("the keyboard moves the slider by one step", async () => {
    // The keyboard moves the slider by one step.
    await page.getByTestId("threshold").focus();
    await page.keyboard.press("ArrowLeft");
    await expect(page.getByTestId("threshold-value")).toHaveText("0.69");
    await page.keyboard.press("ArrowRight");
    await expect(page.getByTestId("threshold-value")).toHaveText("0.70");
  });

  await test.step("the downloaded mask equals the API's format=mask", async () => {
    // Download the mask at 0.70 and compare it with the API's format=mask at the same threshold.
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("button", { name: "Mask PNG" }).click(),
    ]);
    expect(download.suggestedFilename()).toBe("Image_01L.t0.70.mask.png");
    const savedMask = testInfo.outputPath("downloaded-mask.png");
    await download.saveAs(savedMask);
    const browserMask = await decodePng(new Uint8Array(readFileSync(savedMask)));
    expect([browserMask.width, browserMask.height, browserMask.channels]).toEqual([999, 960, 1]);
    const serverMask = await apiPng(page, "format=mask&threshold=0.7", photo, "Image_01L.jpg");
    let differing = 0;
    for (let i = 0; i < serverMask.length; i++) if (serverMask[i] !== browserMask.data[i]) differing++;
    expect(differing, "pixels where the downloaded mask differs from the API's format=mask").toBe(0);
  });

  await test.step("browser re-thresholding equals format=mask off the 8-bit edges", async () => {
    // Off the 8-bit bin edges too: the server thresholds the same 8-bit values (v / 255 ≥ t), so the
    // browser's re-thresholding of the probability PNG equals format=mask at every threshold.
    const probability = await apiPng(page, "format=probability", photo, "Image_01L.jpg");
    for (const t of [0.55, 0.62]) {
      const server = await apiPng(page, `format=mask&threshold=${t}`, photo, "Image_01L.jpg");
      const local = thresholdMask(probability, t);
      let mismatched = 0;
      for (let i = 0; i < local.length; i++) if (local[i] !== server[i]) mismatched++;
      expect(mismatched, `pixels where the browser's mask differs from format=mask at t=${t}`).toBe(0);
    }
  });

  await test.step("the other downloads and the views", async () => {
    // The other downloads.
    for (const [name, suffix] of [["Masked image PNG", ".overlay.png"], ["Outlines SVG", ".vessels.svg"]] as const) {
      const [file] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name }).click()]);
      expect(file.suggestedFilename()).toBe(`Image_01L.t0.70${suffix}`);
      await file.saveAs(testInfo.outputPath(`downloaded${suffix}`));
    }
    const svg = readFileSync(testInfo.outputPath("downloaded.vessels.svg"), "utf8");
    expect(svg).toContain('<image id="photo"');
    expect(svg).toMatch(/<path id="vessels"|<image id="vessels"/);

    await page.screenshot({ path: testInfo.outputPath("overlay.png") });
    await page.getByRole("radio", { name: "Side by side" }).check();
    await page.getByRole("group", { name: /arrow keys pan/ }).focus();
    await page.keyboard.press("1"); // 1:1
    await expect(page.getByTestId("zoom-level")).toHaveText("100%");
    await page.screenshot({ path: testInfo.outputPath("side-by-side-1to1.png") });
    await page.getByRole("radio", { name: "Overlay" }).check();
  });

  await test.step("re-thresholding a 1624×1232 photo takes under 50 ms", async () => {
    // Re-threshold timing on a 1624×1232 photo (the CHASE photo scaled in the browser).
    const large = await page.evaluate(async (bytes) => {
      const bitmap = await createImageBitmap(new Blob([new Uint8Array(bytes)], { type: "image/jpeg" }));
      const canvas = document.createElement("canvas");
      canvas.width = 1624;
      canvas.height = 1232;
      canvas.getContext("2d")!.drawImage(bitmap, 0, 0, 1624, 1232);
      const blob = await new Promise<Blob>((r) => canvas.toBlob((b) => r(b!), "image/jpeg", 0.92));
      return [...new Uint8Array(await blob.arrayBuffer())];
    }, [...photo]);
    await page.getByTestId("photo-input").setInputFiles({ name: "chase-1624x1232.jpg", mimeType: "image/jpeg", buffer: Buffer.from(large) });
    await expect(page.getByTestId("result-info")).toContainText("1624×1232");
    const timings: number[] = [];
    for (let k = 0; k < 20; k++) {
      await setThreshold(page, Number((0.3 + 0.02 * k).toFixed(2)));
      timings.push(await rethresholdMs(page));
    }
    timings.sort((a, b) => a - b);
    const median = timings[timings.length >> 1];
    const report = `re-threshold 1624×1232 in Chromium: median ${median.toFixed(1)} ms, max ${timings[timings.length - 1].toFixed(1)} ms over ${timings.length} slider moves`;
    console.log(`[e2e] ${report}`);
    testInfo.annotations.push({ type: "timing", description: report });
    writeFileSync(testInfo.outputPath("timings.json"), JSON.stringify({ timings, median }, null, 2));
    expect(median).toBeLessThan(50);
  });

  await test.step("files that are not photos are refused with a clear message", async () => {
    // A text file is refused in the browser with a clear message ...
    await page.getByTestId("photo-input").setInputFiles({ name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("not a photo\n") });
    await expect(page.getByTestId("error")).toHaveText("notes.txt is a text/plain file. Choose a PNG, JPEG, TIFF, BMP or WebP photo.");
    // ... and one that only pretends to be a PNG gets the server's own message.
    await page.getByTestId("photo-input").setInputFiles({ name: "fake.png", mimeType: "image/png", buffer: Buffer.from("still not a photo\n") });
    await expect(page.getByTestId("error")).toContainText("The server could not segment fake.png (415): not an image");
    await page.screenshot({ path: testInfo.outputPath("error.png") });
  });

  expect(outside, "requests outside the origin").toEqual([]);
  expect(consoleErrors.filter((e) => !e.includes("415"))).toEqual([]);
});

/** The Measurements panel once it shows the numbers for threshold `t` (no newer request running). */
async function measuredAt(page: Page, t: number): Promise<void> {
  const panel = page.getByTestId("measurements");
  await expect(panel).toHaveAttribute("data-threshold", String(t));
  await expect(panel).toHaveAttribute("data-state", "ready");
}

async function apiJson(page: Page, query: string, photo: Buffer, name: string): Promise<Record<string, unknown>> {
  const response = await page.request.post(`${baseUrl()}/predict?${query}`, {
    multipart: { file: { name, mimeType: "image/jpeg", buffer: photo } },
  });
  expect(response.status(), await response.text().catch(() => "")).toBe(200);
  return (await response.json()) as Record<string, unknown>;
}

test("measurements follow the slider, the field of view is drawn, GeoJSON downloads", async ({ page }, testInfo) => {
  const photo = readFileSync(PHOTO);
  const consoleErrors: string[] = [];
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  const measureRequests: string[] = [];
  page.on("request", (r) => {
    if (new URL(r.url()).pathname === "/measure") measureRequests.push(r.url());
  });

  await test.step("upload a CHASE_DB1 photo", async () => {
    await page.goto(baseUrl() + "/");
    await expect(page.getByTestId("model-info")).toContainText(/vessel-unet v\d+/);
    await page.getByTestId("photo-input").setInputFiles(PHOTO);
    await expect(page.getByTestId("vessel-layer")).toBeVisible();
    await expect(page.getByTestId("threshold-value")).toHaveText("0.50");
  });

  let densityAtHalf = "";
  await test.step("the Measurements panel shows the server's numbers, with units", async () => {
    await measuredAt(page, 0.5);
    const density = page.getByTestId("measure-area_density");
    await expect(density).toHaveText(/^\d+\.\d\d %$/);
    densityAtHalf = (await density.textContent()) ?? "";
    await expect(page.getByTestId("field-info")).toContainText(/⌀ [\d,]+ px · \d+ % of the frame/);
    // The panel's numbers are the API's own for this photo at this threshold (format=json runs the model).
    const api = await apiJson(page, "format=json&threshold=0.5", photo, "Image_01L.jpg");
    const measurements = api.measurements as Record<string, number>;
    const expected = `${(measurements.area_density * 100).toFixed(2)} %`;
    expect(densityAtHalf).toBe(expected);
    for (const key of ["branch_points", "end_points"]) {
      if (key in measurements) {
        await expect(page.getByTestId(`measure-${key}`)).toHaveText(measurements[key].toLocaleString("en-US"));
      }
    }
    const fov = api.fov as { mode: string; diameter_px: number; area_fraction: number };
    expect(fov.mode).toBe("auto");
    expect(fov.area_fraction).toBeGreaterThan(0.5);
    expect(fov.area_fraction).toBeLessThan(0.97); // CHASE_DB1's disc, not the whole frame
  });

  await test.step("the numbers follow the threshold slider, debounced, while the slider stays fast", async () => {
    const before = measureRequests.length;
    const timings: number[] = [];
    for (let k = 0; k <= 20; k++) {
      await setThreshold(page, Number((0.5 - 0.01 * k).toFixed(2)));
      timings.push(await rethresholdMs(page));
    }
    await measuredAt(page, 0.3);
    const density = (await page.getByTestId("measure-area_density").textContent()) ?? "";
    expect(Number.parseFloat(density)).toBeGreaterThan(Number.parseFloat(densityAtHalf));
    const sent = measureRequests.length - before;
    expect(sent, "measurement requests for 21 slider moves").toBeLessThan(21);
    timings.sort((a, b) => a - b);
    expect(timings[timings.length >> 1], "median re-threshold ms while measuring").toBeLessThan(50);
    const report = `${sent} /measure requests for 21 slider moves`;
    console.log(`[e2e] ${report}`);
    testInfo.annotations.push({ type: "measure", description: report });
  });

  await test.step("the field of view is outlined on the overlay and can be hidden", async () => {
    const layer = page.getByTestId("field-layer");
    await expect(layer).toBeVisible();
    const box = await layer.evaluate((svg) => {
      const outline = svg.querySelectorAll("path")[1] as SVGPathElement;
      const b = outline.getBBox();
      return [b.x, b.y, b.x + b.width, b.y + b.height];
    });
    const field = await apiJson(page, "format=json", photo, "Image_01L.jpg");
    const bbox = (field.fov as { bbox: number[] }).bbox;
    for (let i = 0; i < 4; i++) expect(Math.abs(box[i] - bbox[i]), `outline bbox[${i}]`).toBeLessThan(2);
    await page.getByTestId("show-field").uncheck();
    await expect(layer).toHaveCount(0);
    await page.getByTestId("show-field").check();
    await expect(page.getByTestId("field-layer")).toBeVisible();
  });

  await test.step("the GeoJSON download holds the API's polygons at the slider's threshold", async () => {
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("button", { name: "GeoJSON" }).click(),
    ]);
    expect(download.suggestedFilename()).toBe("Image_01L.t0.30.vessels.geojson");
    const saved = testInfo.outputPath("downloaded.vessels.geojson");
    await download.saveAs(saved);
    type Collection = {
      type: string;
      features: { geometry: { type: string; coordinates: number[][][] }; properties: Record<string, unknown> }[];
    };
    const geojson = JSON.parse(readFileSync(saved, "utf8")) as Collection;
    expect(geojson.type).toBe("FeatureCollection");
    expect(geojson.features.length).toBeGreaterThan(0);
    for (const feature of geojson.features) {
      expect(feature.geometry.type).toBe("Polygon");
      for (const ring of feature.geometry.coordinates) {
        for (const [x, y] of ring) {
          expect(x >= 0 && x <= 999 && y >= 0 && y <= 960, `vertex ${x},${y} inside the photo`).toBe(true);
        }
      }
    }
    expect(geojson.features[0].properties.threshold).toBe(0.3);
    const api = (await apiJson(page, "format=geojson&threshold=0.3", photo, "Image_01L.jpg")) as unknown as Collection;
    expect(geojson.features.map((f) => f.geometry)).toEqual(api.features.map((f) => f.geometry));
  });

  await test.step("a physical scale adds µm", async () => {
    await page.getByTestId("scale-kind").selectOption("um_per_pixel");
    await page.getByTestId("scale-value").fill("10");
    await expect(page.getByTestId("field-info")).toContainText("10.00 µm/px");
    await measuredAt(page, 0.3);
    await page.screenshot({ path: testInfo.outputPath("measurements.png") });
  });

  expect(consoleErrors).toEqual([]);
});
