/**
 * A server with VESSEL_API_KEY set (a second vessel-serve on the same registered model): the page asks for the key
 * when the server refuses the upload, once for all the requests refused together, says when a key is wrong, keeps
 * the right one for the tab only (sessionStorage) and sends it as X-API-Key with every request; the overlay and
 * the measurements then show.
 */
import { expect, test } from "@playwright/test";
import { CHASE_PHOTO, type RunningServer, startSecondServer } from "./server";

const PHOTO = CHASE_PHOTO;
const KEY = "e2e-key-7f3a";

let server: RunningServer;

test.beforeAll(async ({}, testInfo) => {
  server = await startSecondServer({ VESSEL_API_KEY: KEY }, testInfo.outputPath("server-with-key.log"));
});

test.afterAll(async () => {
  await server?.stop();
});

test("with an API key: the page asks for it once, keeps it for the tab and sends it", async ({ page, browser }) => {
  const sentKeys: (string | null)[] = [];
  page.on("request", (r) => {
    if (r.method() === "POST") sentKeys.push(r.headers()["x-api-key"] ?? null);
  });
  const consoleErrors: string[] = [];
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));

  await test.step("an upload without the key brings up one prompt", async () => {
    await page.goto(server.url + "/");
    await expect(page.getByTestId("model-info")).toContainText(/vessel-unet v\d+/);
    await page.getByTestId("photo-input").setInputFiles(PHOTO);
    await expect(page.getByTestId("key-prompt")).toBeVisible();
    await expect(page.getByTestId("key-prompt")).toContainText("This server needs an API key");
    await expect(page.getByTestId("key-prompt")).toContainText("X-API-Key");
    await expect(page.getByTestId("key-prompt")).toHaveCount(1);
  });

  await test.step("a wrong key is refused and the prompt says so", async () => {
    await page.getByTestId("api-key").fill("not-the-key");
    await page.getByRole("button", { name: "Use key" }).click();
    await expect(page.getByTestId("key-prompt")).toContainText("That API key was refused");
  });

  await test.step("the right key: the overlay and the measurements show", async () => {
    await page.getByTestId("api-key").fill(KEY);
    await page.keyboard.press("Enter");
    await expect(page.getByTestId("key-prompt")).toHaveCount(0);
    await expect(page.getByTestId("vessel-layer")).toBeVisible();
    await expect(page.getByTestId("result-info")).toContainText("999×960");
    await expect(page.getByTestId("measurements")).toHaveAttribute("data-state", "ready");
    await expect(page.getByTestId("measure-area_density")).toHaveText(/^\d+\.\d\d %$/);
    expect(await page.evaluate(() => sessionStorage.getItem("vessel-api-key"))).toBe(KEY);
    expect(await page.evaluate(() => localStorage.length)).toBe(0);
  });

  await test.step("every later request carries the key, with no second prompt", async () => {
    const before = sentKeys.length;
    await page.getByTestId("threshold").focus();
    await page.keyboard.press("ArrowLeft");
    await expect(page.getByTestId("measurements")).toHaveAttribute("data-threshold", "0.49");
    await expect(page.getByTestId("measurements")).toHaveAttribute("data-state", "ready");
    await page.reload();
    await page.getByTestId("photo-input").setInputFiles(PHOTO);
    await expect(page.getByTestId("vessel-layer")).toBeVisible();
    await expect(page.getByTestId("key-prompt")).toHaveCount(0);
    const later = sentKeys.slice(before);
    expect(later.length).toBeGreaterThan(2);
    expect(later.every((k) => k === KEY), `keys sent: ${JSON.stringify(later)}`).toBe(true);
  });

  await test.step("another tab's session does not have it", async () => {
    const other = await browser.newPage();
    await other.goto(server.url + "/");
    expect(await other.evaluate(() => sessionStorage.getItem("vessel-api-key"))).toBeNull();
    await other.close();
  });

  // The refused attempts are logged by the browser as failed requests (401); nothing else may be.
  expect(consoleErrors.filter((e) => !e.includes("401"))).toEqual([]);
});
