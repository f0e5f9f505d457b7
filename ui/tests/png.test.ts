import { deflateSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { crc32, decodePng, encodePng, firstChannel, PngError } from "../src/lib/png";

describe("png", () => {
  it("computes the standard CRC-32", () => {
    expect(crc32(new TextEncoder().encode("123456789")) ^ 0xffffffff).toBe(0xcbf43926 | 0);
  });

  it("round-trips gray and RGBA images", async () => {
    const gray = { width: 3, height: 2, channels: 1 as const, data: new Uint8Array([0, 1, 2, 253, 254, 255]) };
    expect(await decodePng(await encodePng(gray))).toEqual(gray);
    const rgba = { width: 2, height: 1, channels: 4 as const, data: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]) };
    expect(await decodePng(await encodePng(rgba))).toEqual(rgba);
  });

  it("undoes every PNG filter type", async () => {
    // a 2x5 gray image, row r filtered with type r (0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth)
    const pixels = [
      [10, 200],
      [30, 20],
      [250, 5],
      [7, 9],
      [100, 101],
    ];
    const paeth = (a: number, b: number, c: number) => {
      const p = a + b - c;
      const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
      return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    };
    const raw: number[] = [];
    pixels.forEach((row, y) => {
      raw.push(y);
      row.forEach((v, x) => {
        const a = x ? row[x - 1] : 0;
        const b = y ? pixels[y - 1][x] : 0;
        const c = x && y ? pixels[y - 1][x - 1] : 0;
        const predictor = [0, a, b, (a + b) >> 1, paeth(a, b, c)][y];
        raw.push((v - predictor + 256) & 255);
      });
    });
    const encoded = await encodePng({ width: 2, height: 5, channels: 1, data: new Uint8Array(10) });
    // swap in our hand-filtered IDAT: rebuild the file around it
    const idat = deflateSync(Buffer.from(raw));
    const head = encoded.subarray(0, 33); // signature + IHDR
    const chunk = new Uint8Array(12 + idat.length);
    const view = new DataView(chunk.buffer);
    view.setUint32(0, idat.length);
    chunk.set(new TextEncoder().encode("IDAT"), 4);
    chunk.set(idat, 8);
    view.setUint32(8 + idat.length, crc32(chunk.subarray(4, 8 + idat.length)) ^ 0xffffffff);
    const file = new Uint8Array([...head, ...chunk, ...encoded.subarray(encoded.length - 12)]);
    const decoded = await decodePng(file);
    expect([...decoded.data]).toEqual(pixels.flat());
  });

  it("takes the first channel and rejects what it cannot read", async () => {
    expect([...firstChannel({ width: 2, height: 1, channels: 3, data: new Uint8Array([9, 1, 1, 8, 2, 2]) })]).toEqual([9, 8]);
    await expect(decodePng(new TextEncoder().encode("hello, not a png"))).rejects.toThrow(PngError);
  });
});
