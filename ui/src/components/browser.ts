/** Browser-only helpers: decoding the API's PNG, reading photo pixels, saving files. */
import { decodePng, firstChannel, PngError } from "@/lib/png";

/** The probability map (one 8-bit value per pixel) from the API's PNG bytes, exactly as encoded. */
export async function decodeProbability(png: Uint8Array): Promise<{ width: number; height: number; values: Uint8Array }> {
  try {
    const image = await decodePng(png);
    return { width: image.width, height: image.height, values: firstChannel(image) };
  } catch (error) {
    if (!(error instanceof PngError)) throw error;
    // A PNG variant our decoder does not read (16-bit, interlaced): let the browser decode it, unmanaged.
    const bitmap = await createImageBitmap(new Blob([png as BlobPart], { type: "image/png" }), {
      colorSpaceConversion: "none",
      premultiplyAlpha: "none",
    });
    const rgba = bitmapPixels(bitmap);
    const values = new Uint8Array(bitmap.width * bitmap.height);
    for (let i = 0; i < values.length; i++) values[i] = rgba[4 * i];
    return { width: bitmap.width, height: bitmap.height, values };
  }
}

/** RGBA pixels of a decoded image. */
export function bitmapPixels(bitmap: ImageBitmap): Uint8ClampedArray {
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  if (!ctx) throw new Error("this browser has no 2D canvas");
  ctx.drawImage(bitmap, 0, 0);
  return ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
}

/** RGBA pixels as a PNG blob (the browser's encoder). */
export function rgbaToPng(rgba: Uint8ClampedArray, width: number, height: number): Promise<Blob> {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  if (!ctx) throw new Error("this browser has no 2D canvas");
  ctx.putImageData(new ImageData(rgba as Uint8ClampedArray<ArrayBuffer>, width, height), 0, 0);
  return new Promise((resolve, reject) =>
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("could not encode the PNG"))), "image/png"),
  );
}

export function blobToDataUrl(blob: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result as string);
    reader.onerror = () => reject(reader.error ?? new Error("could not read the file"));
    reader.readAsDataURL(blob);
  });
}

/** Offer `blob` as a download named `fileName`. */
export function saveBlob(blob: Blob, fileName: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = fileName;
  a.style.display = "none";
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 30_000);
}
