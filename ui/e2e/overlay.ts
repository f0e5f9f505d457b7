/** What the page's overlay shows, read back from its canvas (helpers for the end-to-end specs). */
import type { Page } from "@playwright/test";

/** Pixels the vessel layer canvas actually shows as vessel (non-transparent), and the canvas's pixel count. */
export function overlayVesselPixels(page: Page): Promise<{ vessel: number; pixels: number }> {
  return page.getByTestId("vessel-layer").evaluate((el) => {
    const canvas = el as HTMLCanvasElement;
    const data = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height).data;
    let vessel = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) vessel++;
    return { vessel, pixels: canvas.width * canvas.height };
  });
}
