/**
 * The UI the app container serves, in Chromium, against the Compose stack that `make docker-test` runs
 * (tests/deploy/test_stack.py starts it with VESSEL_E2E_URL and VESSEL_E2E_CONTAINER_KEY): the page shows the
 * registered model, asks once for the stack's API key, and an uploaded CHASE_DB1 photo comes back as an overlay
 * with its measurements. Skipped in the ordinary end-to-end run (no container key).
 */
import { expect, test } from "@playwright/test";
import { overlayVesselPixels } from "./overlay";
import { baseUrl, CHASE_PHOTO } from "./server";

const KEY = process.env.VESSEL_E2E_CONTAINER_KEY;

test.skip(!KEY, "runs against the Compose stack: make docker-test");

test("the container's UI: key asked once, a photo uploaded, the overlay and measurements shown", async ({ page }) => {
  const consoleErrors: string[] = [];
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));

  await test.step("the page names the registered model", async () => {
    await page.goto(baseUrl() + "/");
    await expect(page.getByTestId("model-info")).toContainText(/vessel-unet v\d+/);
  });

  await test.step("an upload asks for the key; with it the overlay shows", async () => {
    await page.getByTestId("photo-input").setInputFiles(CHASE_PHOTO);
    await expect(page.getByTestId("key-prompt")).toBeVisible();
    await page.getByTestId("api-key").fill(KEY!);
    await page.keyboard.press("Enter");
    await expect(page.getByTestId("key-prompt")).toHaveCount(0);
    await expect(page.getByTestId("vessel-layer")).toBeVisible();
    await expect(page.getByTestId("result-info")).toContainText("999×960");
    const shown = await overlayVesselPixels(page);
    expect(shown.vessel, "vessel pixels drawn on the overlay").toBeGreaterThan(0);
    expect(shown.vessel).toBeLessThan(shown.pixels);
  });

  await test.step("the measurements panel fills in", async () => {
    await expect(page.getByTestId("measurements")).toHaveAttribute("data-state", "ready");
    await expect(page.getByTestId("measure-area_density")).toHaveText(/^\d+\.\d\d %$/);
  });

  // The one refused upload (401 before the key) is the only error the browser may log.
  expect(consoleErrors.filter((e) => !e.includes("401"))).toEqual([]);
});
