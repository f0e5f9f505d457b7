/**
 * Vessel outlines by marching squares on the 8-bit probability map, and their SVG export.
 *
 * The iso-level sits half-way between cutoff − 1 and cutoff (the cutoff of {@link cutoffFor}), so the outlines
 * enclose exactly the pixels that the mask marks, with sub-pixel positions interpolated along cell edges. The map
 * is padded with a ring that is never vessel, so every outline is closed, also where vessels touch the border.
 * Outlines run with the vessel on the same side (outer boundaries and holes in opposite senses): the SVG fills
 * them with `fill-rule="evenodd"`. Saddle cells are resolved by the mean of their four corners.
 */
import { cutoffFor } from "./threshold";

/** Coordinates are stored as integers in units of 1 / COORD_SCALE pixel (0.1 px: ample for outlines). */
export const COORD_SCALE = 10;

/** Above this many vertices an SVG path would be tens of megabytes: {@link contourSvg} then embeds a raster. */
export const DEFAULT_MAX_VERTICES = 400_000;

export interface Contours {
  /** Closed polygons as [x0, y0, x1, y1, …] in 1 / COORD_SCALE pixel units (image coordinates, y down). */
  polygons: Int32Array[];
  /** Vertices over all polygons after merging collinear runs. */
  vertexCount: number;
  /** True when tracing stopped because `maxVertices` was exceeded: `polygons` is then incomplete. */
  truncated: boolean;
}

// For each of the 16 corner cases (bits: tl 1, tr 2, br 4, bl 8) and center in/out: [from, to, from, to] edge
// pairs, edges numbered clockwise: 0 top (tl→tr), 1 right (tr→br), 2 bottom (br→bl), 3 left (bl→tl).
function buildSegmentTable(): number[][][] {
  const table: number[][][] = [];
  for (let bits = 0; bits < 16; bits++) {
    const inside = [bits & 1, bits & 2, bits & 4, bits & 8].map(Boolean);
    const perCenter: number[][] = [];
    for (const centerInside of [false, true]) {
      const segments: number[] = [];
      const leaves = (e: number) => inside[e] && !inside[(e + 1) % 4];
      const crossings = [0, 1, 2, 3].filter((e) => inside[e] !== inside[(e + 1) % 4]).length;
      for (let e = 0; e < 4; e++) {
        if (!(!inside[e] && inside[(e + 1) % 4])) continue; // not an entry edge
        const step = crossings === 4 && centerInside ? 3 : 1; // saddle joined through the center: turn back
        let to = (e + step) % 4;
        while (!leaves(to)) to = (to + step) % 4;
        segments.push(e, to);
      }
      perCenter.push(segments);
    }
    table.push(perCenter);
  }
  return table;
}

const SEGMENTS = buildSegmentTable();

/**
 * Trace the outlines of the pixels with `probability` ≥ the cutoff of `threshold` in a `width`×`height` map.
 * Stops (with `truncated`) as soon as more than `maxVertices` vertices have been produced.
 */
export function traceContours(
  probability: Uint8Array,
  width: number,
  height: number,
  threshold: number,
  maxVertices = DEFAULT_MAX_VERTICES,
): Contours {
  if (probability.length !== width * height) throw new RangeError("map size does not match width × height");
  const cutoff = cutoffFor(threshold);
  const level = cutoff - 0.5;
  const pw = width + 2; // padded grid of samples, (pw) × (height + 2)
  const sample = (i: number, j: number) =>
    i >= 1 && i <= width && j >= 1 && j <= height ? probability[(j - 1) * width + (i - 1)] : -1;
  const hCount = (width + 1) * (height + 2);
  const next = new Int32Array(hCount + pw * (height + 1)).fill(-1);
  const edgeIds = [0, 0, 0, 0];
  for (let j = 0; j <= height; j++) {
    for (let i = 0; i <= width; i++) {
      const tl = sample(i, j);
      const tr = sample(i + 1, j);
      const br = sample(i + 1, j + 1);
      const bl = sample(i, j + 1);
      const bits = (tl >= cutoff ? 1 : 0) | (tr >= cutoff ? 2 : 0) | (br >= cutoff ? 4 : 0) | (bl >= cutoff ? 8 : 0);
      if (bits === 0 || bits === 15) continue;
      const segments = SEGMENTS[bits][tl + tr + br + bl >= 4 * level ? 1 : 0];
      edgeIds[0] = j * (width + 1) + i;
      edgeIds[1] = hCount + j * pw + i + 1;
      edgeIds[2] = (j + 1) * (width + 1) + i;
      edgeIds[3] = hCount + j * pw + i;
      for (let s = 0; s < segments.length; s += 2) next[edgeIds[segments[s]]] = edgeIds[segments[s + 1]];
    }
  }
  // The crossing point of an edge, in scaled image coordinates (sample (i, j) is pixel (i − 1, j − 1), whose
  // center is at (i − 0.5, j − 0.5)).
  const point = (edge: number): [number, number] => {
    let i: number, j: number, di: number, dj: number;
    if (edge < hCount) {
      j = Math.floor(edge / (width + 1));
      i = edge - j * (width + 1);
      di = 1;
      dj = 0;
    } else {
      const id = edge - hCount;
      j = Math.floor(id / pw);
      i = id - j * pw;
      di = 0;
      dj = 1;
    }
    const a = sample(i, j);
    const b = sample(i + di, j + dj);
    const t = (level - a) / (b - a);
    return [Math.round((i - 0.5 + t * di) * COORD_SCALE), Math.round((j - 0.5 + t * dj) * COORD_SCALE)];
  };
  const polygons: Int32Array[] = [];
  let vertexCount = 0;
  const xs: number[] = [];
  const ys: number[] = [];
  for (let start = 0; start < next.length; start++) {
    if (next[start] < 0) continue;
    xs.length = 0;
    ys.length = 0;
    let edge = start;
    while (edge >= 0) {
      const [x, y] = point(edge);
      const n = xs.length;
      // drop the middle of three collinear points (straight runs along uniform regions)
      if (n >= 2 && (xs[n - 1] - xs[n - 2]) * (y - ys[n - 2]) === (ys[n - 1] - ys[n - 2]) * (x - xs[n - 2])) {
        xs[n - 1] = x;
        ys[n - 1] = y;
      } else if (!(n >= 1 && xs[n - 1] === x && ys[n - 1] === y)) {
        xs.push(x);
        ys.push(y);
      }
      const following = next[edge];
      next[edge] = -1;
      edge = following === start ? -1 : following;
    }
    if (xs.length < 3) continue;
    const polygon = new Int32Array(xs.length * 2);
    for (let k = 0; k < xs.length; k++) {
      polygon[2 * k] = xs[k];
      polygon[2 * k + 1] = ys[k];
    }
    polygons.push(polygon);
    vertexCount += xs.length;
    if (vertexCount > maxVertices) return { polygons, vertexCount, truncated: true };
  }
  return { polygons, vertexCount, truncated: false };
}

/** SVG path data ("Mx yLx y…Z" per polygon) for {@link Contours} polygons, in pixel units. */
export function contoursToPathData(polygons: Int32Array[]): string {
  const parts: string[] = [];
  for (const polygon of polygons) {
    let d = `M${polygon[0] / COORD_SCALE} ${polygon[1] / COORD_SCALE}L`;
    const coords: string[] = [];
    for (let k = 2; k < polygon.length; k++) coords.push(String(polygon[k] / COORD_SCALE));
    d += coords.join(" ") + "Z";
    parts.push(d);
  }
  return parts.join("");
}

export interface ContourSvgOptions {
  width: number;
  height: number;
  /** The photo as a data: URL, embedded under the outlines; null when the browser cannot decode it (TIFF). */
  photoHref: string | null;
  /** Traced outlines; when `truncated`, `rasterHref` is used instead. */
  contours: Contours;
  /** Fallback: the vessel mask as a coloured, transparent PNG data: URL. */
  rasterHref?: string | null;
  colour: string;
  opacity: number;
  threshold: number;
  title: string;
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * An SVG of the photo with the vessel outlines filled in `colour` at `opacity` and stroked opaque. When the
 * outlines were truncated (too many vertices) the vessels are embedded as a raster layer instead, and a comment
 * and the <desc> say so.
 */
export function contourSvg(o: ContourSvgOptions): string {
  const { width: w, height: h } = o;
  const fallback = o.contours.truncated;
  if (fallback && !o.rasterHref) throw new Error("contours were truncated and no raster fallback was given");
  const description = fallback
    ? `Vessels at threshold ${o.threshold}: the outlines exceeded ${o.contours.vertexCount} vertices, so the ` +
      "vessel mask is embedded as a PNG layer instead of vector paths."
    : `Vessel outlines at threshold ${o.threshold} (marching squares, ${o.contours.polygons.length} paths, ` +
      `${o.contours.vertexCount} vertices).`;
  const lines = [
    `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="${w}" ` +
      `height="${h}" viewBox="0 0 ${w} ${h}">`,
    `<title>${escapeXml(o.title)}</title>`,
    `<desc>${escapeXml(description)}</desc>`,
  ];
  if (o.photoHref) {
    lines.push(`<image id="photo" x="0" y="0" width="${w}" height="${h}" href="${o.photoHref}"/>`);
  } else {
    lines.push(`<rect id="photo" width="${w}" height="${h}" fill="#000"/>`);
  }
  if (fallback) {
    lines.push("<!-- fallback: vector outlines would be too large; vessels embedded as a raster layer -->");
    lines.push(
      `<image id="vessels" x="0" y="0" width="${w}" height="${h}" opacity="${o.opacity}" ` +
        `style="image-rendering:pixelated" href="${o.rasterHref}"/>`,
    );
  } else {
    lines.push(
      `<path id="vessels" fill="${o.colour}" fill-opacity="${o.opacity}" fill-rule="evenodd" ` +
        `stroke="${o.colour}" stroke-width="0.3" d="${contoursToPathData(o.contours.polygons)}"/>`,
    );
  }
  lines.push("</svg>");
  return lines.join("\n") + "\n";
}
