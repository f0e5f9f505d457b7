/**
 * Minimal PNG encoder and decoder for 8-bit, non-interlaced images.
 *
 * Why our own: the browser's canvas decoder may colour-manage or premultiply pixels, and the mask download must
 * be an 8-bit grayscale PNG like the API's `format=mask`, which `canvas.toBlob` cannot write. Compression uses the
 * platform's `CompressionStream("deflate")` (zlib format, which is what PNG's IDAT holds) in browsers and Node ≥ 18.
 */

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
const CHANNELS_BY_COLOUR_TYPE: Record<number, number> = { 0: 1, 2: 3, 4: 2, 6: 4 };
const COLOUR_TYPE_BY_CHANNELS: Record<number, number> = { 1: 0, 2: 4, 3: 2, 4: 6 };

/** A decoded image: `data` holds `channels` interleaved 8-bit samples per pixel, row by row. */
export interface RasterImage {
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
  data: Uint8Array;
}

export class PngError extends Error {}

let crcTable: Uint32Array | null = null;

/** CRC-32 (ISO 3309) of `bytes`, as PNG chunks use it. */
export function crc32(bytes: Uint8Array, crc = 0xffffffff): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  for (let i = 0; i < bytes.length; i++) crc = crcTable[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return crc >>> 0;
}

async function runStream(bytes: Uint8Array, stream: CompressionStream | DecompressionStream): Promise<Uint8Array> {
  const body = new Blob([bytes as BlobPart]).stream().pipeThrough(stream);
  return new Uint8Array(await new Response(body).arrayBuffer());
}

function chunk(type: string, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + payload.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, payload.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(payload, 8);
  view.setUint32(8 + payload.length, crc32(out.subarray(4, 8 + payload.length)) ^ 0xffffffff);
  return out;
}

/** Encode 8-bit samples (`channels` per pixel: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) as a PNG file. */
export async function encodePng(image: RasterImage): Promise<Uint8Array> {
  const { width, height, channels, data } = image;
  if (data.length !== width * height * channels) {
    throw new PngError(`expected ${width * height * channels} samples, got ${data.length}`);
  }
  const stride = width * channels;
  const raw = new Uint8Array((stride + 1) * height); // filter type 0 (None) before every row
  for (let y = 0; y < height; y++) raw.set(data.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header[8] = 8; // bit depth
  header[9] = COLOUR_TYPE_BY_CHANNELS[channels];
  const parts = [
    new Uint8Array(SIGNATURE),
    chunk("IHDR", header),
    chunk("IDAT", await runStream(raw, new CompressionStream("deflate"))),
    chunk("IEND", new Uint8Array(0)),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** Decode an 8-bit, non-interlaced gray / gray+alpha / RGB / RGBA PNG; throws {@link PngError} otherwise. */
export async function decodePng(bytes: Uint8Array): Promise<RasterImage> {
  if (bytes.length < 8 || SIGNATURE.some((b, i) => bytes[i] !== b)) throw new PngError("not a PNG file");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Uint8Array[] = [];
  while (offset + 8 <= bytes.length) {
    const length = view.getUint32(offset);
    const type = String.fromCharCode(...bytes.subarray(offset + 4, offset + 8));
    const payload = bytes.subarray(offset + 8, offset + 8 + length);
    if (type === "IHDR") {
      width = view.getUint32(offset + 8);
      height = view.getUint32(offset + 12);
      const [depth, colourType, , , interlace] = payload.subarray(8, 13);
      channels = CHANNELS_BY_COLOUR_TYPE[colourType] ?? 0;
      if (depth !== 8 || !channels || interlace !== 0) {
        throw new PngError(`unsupported PNG (bit depth ${depth}, colour type ${colourType}, interlace ${interlace})`);
      }
    } else if (type === "IDAT") {
      idat.push(payload);
    } else if (type === "IEND") {
      break;
    }
    offset += 12 + length;
  }
  if (!width || !height || !idat.length) throw new PngError("PNG has no image data");
  const compressed = new Uint8Array(idat.reduce((n, p) => n + p.length, 0));
  idat.reduce((at, p) => (compressed.set(p, at), at + p.length), 0);
  const raw = await runStream(compressed, new DecompressionStream("deflate"));
  const stride = width * channels;
  if (raw.length < (stride + 1) * height) throw new PngError("PNG image data is truncated");
  const data = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const src = y * (stride + 1) + 1;
    const row = y * stride;
    const prev = row - stride;
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? data[row + x - channels] : 0;
      const b = y > 0 ? data[prev + x] : 0;
      const c = x >= channels && y > 0 ? data[prev + x - channels] : 0;
      const v = raw[src + x];
      switch (filter) {
        case 0: data[row + x] = v; break;
        case 1: data[row + x] = v + a; break;
        case 2: data[row + x] = v + b; break;
        case 3: data[row + x] = v + ((a + b) >> 1); break;
        case 4: data[row + x] = v + paeth(a, b, c); break;
        default: throw new PngError(`bad PNG filter type ${filter} in row ${y}`);
      }
    }
  }
  return { width, height, channels: channels as RasterImage["channels"], data };
}

/** The first channel of every pixel (the gray value for gray images, red for colour ones). */
export function firstChannel(image: RasterImage): Uint8Array {
  if (image.channels === 1) return image.data;
  const out = new Uint8Array(image.width * image.height);
  for (let i = 0, j = 0; i < out.length; i++, j += image.channels) out[i] = image.data[j];
  return out;
}
