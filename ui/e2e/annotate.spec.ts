/**
 * The annotation loop in the page, against a server that keeps annotations (VESSEL_ANNOTATIONS_DIR, set by the
 * global setup): open a CHASE_DB1 photo, paint a stroke, erase along another, erase a region with the lasso, undo
 * that last step, save as final; the page's mask (the "Mask only" canvas and the Mask PNG download) is then
 * compared pixel for pixel with the saved annotation: its GeoJSON (GET /annotations/{id}) rasterised by the
 * server's own reader (POST /annotations/rasterize), the pixels training will see.
 *
 * Env: VESSEL_DATA_DIR (default ../../shared/data from ui/), VESSEL_E2E_URL (set by the global setup).
 */
import { readFileSync } from "node:fs";
import { expect, type Page, test } from "@playwright/test";
import { baseUrl, CHASE_PHOTO } from "./server";
import { decodePng, firstChannel } from "../src/lib/png";

const PHOTO = CHASE_PHOTO;

/** A drag along image-relative points (fractions of the viewer's box), as a user's pointer would move. */
async function drag(page: Page, points: [number, number][], steps = 12): Promise<void> {
  const box = (await page.getByTestId("viewer").boundingBox())!;
  const at = ([fx, fy]: [number, number]) => [box.x + fx * box.width, box.y + fy * box.height] as const;
  await page.mouse.move(...at(points[0]));
  await page.mouse.down();
  for (let k = 1; k < points.length; k++) await page.mouse.move(...at(points[k]), { steps });
  await page.mouse.up();
}

async function editVersion(page: Page): Promise<number> {
  return Number(await page.getByTestId("edit-section").getAttribute("data-edit-version"));
}

/** The "Mask only" canvas as {0, 255} per pixel (white = vessel). */
function canvasMask(page: Page): Promise<number[]> {
  return page.getByTestId("vessel-layer").evaluate((el) => {
    const canvas = el as HTMLCanvasElement;
    const data = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height).data;
    const out: number[] = new Array(canvas.width * canvas.height);
    for (let i = 0; i < out.length; i++) out[i] = data[i * 4] > 127 ? 255 : 0;
    return out;
  });
}

function differing(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if ((a[i] > 0) !== (b[i] > 0)) n++;
  return n;
}

test("paint, erase, undo, save: the saved annotation rasterises to exactly the mask the page shows", async ({ page }, testInfo) => {
  const settings = (await (await page.request.get(`${baseUrl()}/annotations/settings`)).json().catch(() => null)) as {
    enabled?: boolean;
    count?: number;
  } | null;
  test.skip(!settings?.enabled, "the server keeps no annotations (no VESSEL_ANNOTATIONS_DIR, or no annotation routes)");
  const consoleErrors: string[] = [];
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));

  await test.step("open a photo", async () => {
    await page.goto(baseUrl() + "/");
    await page.getByTestId("photo-input").setInputFiles(PHOTO);
    await expect(page.getByTestId("vessel-layer")).toBeVisible();
    await expect(page.getByTestId("save-annotation")).toBeVisible();
  });

  let afterStroke = 0;
  await test.step("paint a stroke (B) and erase along another (E), the brush size set with ] and [", async () => {
    await page.keyboard.press("b");
    await expect(page.getByTestId("tool-brush")).toHaveAttribute("aria-pressed", "true");
    for (let k = 0; k < 4; k++) await page.keyboard.press("]");
    await page.keyboard.press("[");
    const size = Number.parseInt((await page.getByTestId("brush-size-value").textContent()) ?? "");
    expect(size).toBeGreaterThan(8);
    await drag(page, [[0.3, 0.35], [0.5, 0.45], [0.7, 0.4]]);
    await expect.poll(() => editVersion(page)).toBeGreaterThan(0);
    await expect(page.getByTestId("edit-counts")).toContainText(/[1-9][\d,]* px added/);
    await page.keyboard.press("e");
    await drag(page, [[0.5, 0.2], [0.5, 0.8]]); // across the stroke and the model's vessels
    afterStroke = await editVersion(page);
    await expect(page.getByTestId("edit-section")).toHaveAttribute("data-undo-steps", "2");
  });

  let beforeLasso: number[] = [];
  await test.step("erase a region with the lasso, then undo that one step (Ctrl+Z)", async () => {
    await page.getByRole("radio", { name: "Mask only" }).check();
    beforeLasso = await canvasMask(page);
    await page.keyboard.press("l");
    await drag(page, [[0.15, 0.6], [0.35, 0.6], [0.35, 0.9], [0.15, 0.9], [0.15, 0.6]], 4);
    await expect(page.getByTestId("edit-section")).toHaveAttribute("data-undo-steps", "3");
    expect(differing(await canvasMask(page), beforeLasso)).toBeGreaterThan(0);
    await page.keyboard.press("Control+z");
    await expect(page.getByTestId("edit-section")).toHaveAttribute("data-undo-steps", "2");
    expect(differing(await canvasMask(page), beforeLasso), "pixels changed after undoing the lasso").toBe(0);
    expect(await editVersion(page)).toBeGreaterThan(afterStroke);
  });

  let shown: number[] = [];
  await test.step("the Mask PNG download is the mask the page shows", async () => {
    shown = await canvasMask(page);
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Mask PNG" }).click()]);
    expect(download.suggestedFilename()).toBe("Image_01L.t0.50.edited.mask.png");
    await download.saveAs(testInfo.outputPath("edited.mask.png"));
    const png = await decodePng(new Uint8Array(readFileSync(testInfo.outputPath("edited.mask.png"))));
    expect(differing(firstChannel(png), shown)).toBe(0);
    await page.screenshot({ path: testInfo.outputPath("edited-mask.png") });
  });

  let id = "";
  await test.step("save as final, with the annotator's name kept in this browser", async () => {
    await page.getByTestId("annotator").fill("e2e annotator");
    await page.getByTestId("annotation-status").selectOption("final");
    await page.getByRole("button", { name: "Save annotation" }).click();
    const saved = page.getByTestId("saved-info");
    await expect(saved).toContainText("(final)");
    id = (await saved.getAttribute("data-annotation-id")) ?? "";
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    await expect(page.getByTestId("annotation-count")).toContainText(`holds ${(settings!.count ?? 0) + 1} annotation`);
    expect(await page.evaluate(() => localStorage.getItem("vessel-annotator"))).toBe("e2e annotator");
  });

  await test.step("GET /annotations/{id} rasterised by the server's reader equals the page's mask", async () => {
    const geojson = await page.request.get(`${baseUrl()}/annotations/${id}`);
    expect(geojson.status()).toBe(200);
    const body = await geojson.body();
    const raster = await page.request.post(`${baseUrl()}/annotations/rasterize`, {
      multipart: {
        annotation: { name: "saved.geojson", mimeType: "application/geo+json", buffer: body },
        width: "999",
        height: "960",
      },
    });
    expect(raster.status(), await raster.text().catch(() => "")).toBe(200);
    const mask = firstChannel(await decodePng(new Uint8Array(await raster.body())));
    expect(mask.length).toBe(shown.length);
    expect(differing(mask, shown), "pixels where the saved annotation differs from the page's mask").toBe(0);
  });

  await test.step("opening the saved GeoJSON gives the same mask back", async () => {
    await page.reload();
    await page.getByTestId("photo-input").setInputFiles(PHOTO);
    await expect(page.getByTestId("vessel-layer")).toBeVisible();
    await expect(page.getByTestId("annotator")).toHaveValue("e2e annotator");
    const body = await (await page.request.get(`${baseUrl()}/annotations/${id}`)).body();
    await page.getByTestId("annotation-input").setInputFiles({ name: "saved.geojson", mimeType: "application/geo+json", buffer: body });
    await expect(page.getByTestId("edit-counts")).toBeVisible();
    await page.getByRole("radio", { name: "Mask only" }).check();
    await expect.poll(async () => differing(await canvasMask(page), shown)).toBe(0);
    // the opened mask is kept whatever the threshold
    await page.getByTestId("threshold").evaluate((el) => {
      const input = el as HTMLInputElement;
      Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value")!.set!.call(input, "0.8");
      input.dispatchEvent(new Event("input", { bubbles: true }));
    });
    await expect(page.getByTestId("threshold-section")).toHaveAttribute("data-painted-threshold", "0.8");
    expect(differing(await canvasMask(page), shown)).toBe(0);
  });

  expect(consoleErrors).toEqual([]);
});

test("a region of interest restricts the prediction, the measurements and the downloads", async ({ page }, testInfo) => {
  const settings = await page.request.get(`${baseUrl()}/annotations/settings`);
  test.skip(settings.status() !== 200, "the server does not take a region of interest (no annotation routes)");
  await page.goto(baseUrl() + "/");
  await page.getByTestId("photo-input").setInputFiles(PHOTO);
  await expect(page.getByTestId("measurements")).toHaveAttribute("data-state", "ready");
  const wholeField = (await page.getByTestId("field-info").textContent()) ?? "";

  await page.getByTestId("tool-roi").click();
  const box = (await page.getByTestId("viewer").boundingBox())!;
  // the photo is fitted in the viewer: a square in its middle third
  const corners: [number, number][] = [[0.4, 0.35], [0.6, 0.35], [0.6, 0.65], [0.4, 0.65]];
  for (const [fx, fy] of corners) await page.mouse.click(box.x + fx * box.width, box.y + fy * box.height);
  await expect(page.getByTestId("polygon-draft")).toBeVisible();
  await page.keyboard.press("Enter");
  await expect(page.getByTestId("roi-outline")).toBeVisible();
  await expect(page.getByTestId("measurements")).toHaveAttribute("data-state", "ready");
  await expect(page.getByTestId("field-info")).not.toHaveText(wholeField);
  const share = Number(/(\d+) % of the frame/.exec((await page.getByTestId("field-info").textContent()) ?? "")?.[1]);
  expect(share).toBeLessThan(10);
  // the field the server returned for the prediction (/predict?format=fov with the roi) is the region's square
  const outline = await page.getByTestId("field-layer").evaluate((g) => {
    const b = (g.querySelectorAll("path")[1] as SVGPathElement).getBBox();
    return [b.width, b.height];
  });
  expect(outline[0]).toBeGreaterThan(50);
  expect(outline[0]).toBeLessThan(999 / 2);
  expect(outline[1]).toBeLessThan(960 / 2);

  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Mask PNG" }).click()]);
  await download.saveAs(testInfo.outputPath("roi.mask.png"));
  const mask = await decodePng(new Uint8Array(readFileSync(testInfo.outputPath("roi.mask.png"))));
  // nothing is vessel in the photo's left quarter, far outside the region
  let outside = 0;
  for (let y = 0; y < mask.height; y++) for (let x = 0; x < mask.width / 4; x++) if (mask.data[y * mask.width + x]) outside++;
  expect(outside).toBe(0);
  await page.screenshot({ path: testInfo.outputPath("roi.png") });
});
