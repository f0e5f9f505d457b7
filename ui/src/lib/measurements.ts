/**
 * The Measurements panel's logic: the physical scale the user chose, the rows shown (label, value, unit) from the
 * server's `measurements` JSON, and a debounced, latest-only caller so the panel follows the threshold slider
 * without queueing a request per slider step. The numbers themselves are computed by the server (`POST /measure`),
 * never here.
 */

/** How lengths are reported: pixels only, or also physical units from µm per pixel or the field's angle. */
export type ScaleKind = "pixels" | "um_per_pixel" | "fov_degrees";

export interface ScaleChoice {
  kind: ScaleKind;
  /** The number the user typed (µm per pixel, or degrees); ignored for "pixels". */
  text: string;
}

/** Limits the API accepts (app/measure.py). */
const SCALE_LIMITS: Record<Exclude<ScaleKind, "pixels">, { max: number; label: string }> = {
  um_per_pixel: { max: 1e5, label: "µm per pixel" },
  fov_degrees: { max: 200, label: "Field of view in degrees" },
};

/**
 * The query parameters for a scale choice (`{}` for pixels), or an error message for a value the API would refuse.
 */
export function scaleParams(choice: ScaleChoice): { params: Record<string, string>; error: string | null } {
  if (choice.kind === "pixels") return { params: {}, error: null };
  const limits = SCALE_LIMITS[choice.kind];
  const text = choice.text.trim().replace(",", ".");
  if (!text) return { params: {}, error: null };
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0 || value > limits.max) {
    return { params: {}, error: `${limits.label} must be a number above 0 and at most ${limits.max}.` };
  }
  return { params: { [choice.kind]: String(value) }, error: null };
}

/** One line of the panel. */
export interface MeasurementRow {
  key: string;
  label: string;
  /** The value formatted for display ("–" when the server sent null). */
  value: string;
  unit: string;
  /** What the number means (a tooltip). */
  help: string;
}

interface RowSpec {
  key: string;
  label: string;
  unit: string;
  digits: number;
  help: string;
  /** Multiply the value by this for display (e.g. 100 for a fraction shown in %). */
  factor?: number;
}

/**
 * The rows shown, in order. Keys missing from the server's answer are skipped; numeric keys not listed here are
 * appended under their own name, so a new measurement shows up without a UI change.
 */
export const ROW_SPECS: RowSpec[] = [
  { key: "area_density", label: "Vessel area density", unit: "%", digits: 2, factor: 100, help: "Vessel pixels / field pixels." },
  { key: "skeleton_length_density", label: "Length density", unit: "px / px²", digits: 4, help: "Centre-line length per field area." },
  { key: "skeleton_length_density_mm", label: "Length density", unit: "mm / mm²", digits: 2, help: "Centre-line length per field area." },
  { key: "calibre_mean", label: "Calibre, mean", unit: "px", digits: 2, help: "Vessel width along the centre line (2 × distance to background)." },
  { key: "calibre_mean_um", label: "Calibre, mean", unit: "µm", digits: 1, help: "Vessel width along the centre line." },
  { key: "calibre_std", label: "Calibre, SD", unit: "px", digits: 2, help: "Spread of the width along the centre line." },
  { key: "calibre_std_um", label: "Calibre, SD", unit: "µm", digits: 1, help: "Spread of the width along the centre line." },
  { key: "calibre_median", label: "Calibre, median", unit: "px", digits: 2, help: "Median width along the centre line." },
  { key: "calibre_median_um", label: "Calibre, median", unit: "µm", digits: 1, help: "Median width along the centre line." },
  { key: "tortuosity", label: "Tortuosity (arc / chord)", unit: "", digits: 3, help: "Per segment between branch and end points, length-weighted mean; 1 is straight." },
  { key: "tortuosity_curvature", label: "Tortuosity (curvature)", unit: "", digits: 4, help: "Curvature-based index per segment, length-weighted mean." },
  { key: "branch_points", label: "Branch points", unit: "", digits: 0, help: "Centre-line pixels where three or more branches meet." },
  { key: "end_points", label: "End points", unit: "", digits: 0, help: "Centre-line pixels with one neighbour." },
  { key: "segments", label: "Segments", unit: "", digits: 0, help: "Centre-line pieces between branch and end points." },
  { key: "fractal_dimension", label: "Fractal dimension", unit: "", digits: 3, help: "Box counting; 1 for a line, 2 for a filled area." },
];

/** `value` with `digits` decimals and thin thousands separators; "–" for null, undefined or a non-finite number. */
export function formatNumber(value: unknown, digits: number): string {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function titleCase(key: string): string {
  const words = key.replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** The panel's rows for the server's `measurements` object. */
export function measurementRows(measurements: Record<string, unknown>): MeasurementRow[] {
  const rows: MeasurementRow[] = [];
  const known = new Set<string>();
  for (const spec of ROW_SPECS) {
    known.add(spec.key);
    if (!(spec.key in measurements)) continue;
    const raw = measurements[spec.key];
    const value = typeof raw === "number" && spec.factor ? raw * spec.factor : raw;
    rows.push({ key: spec.key, label: spec.label, value: formatNumber(value, spec.digits), unit: spec.unit, help: spec.help });
  }
  for (const [key, raw] of Object.entries(measurements)) {
    if (known.has(key) || (typeof raw !== "number" && raw !== null)) continue;
    const digits = Number.isInteger(raw) ? 0 : 3;
    rows.push({ key, label: titleCase(key), value: formatNumber(raw, digits), unit: "", help: key });
  }
  return rows;
}

/**
 * Calls `run` `delayMs` after the last {@link LatestOnly.schedule}, aborting the call before it, and hands only the
 * latest call's outcome to `onResult` / `onError` (an aborted or superseded call reports nothing).
 */
export interface LatestOnly<A> {
  schedule(args: A): void;
  cancel(): void;
}

export function latestOnly<A, R>(
  delayMs: number,
  run: (args: A, signal: AbortSignal) => Promise<R>,
  onResult: (result: R, args: A) => void,
  onError: (error: unknown, args: A) => void,
): LatestOnly<A> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let controller: AbortController | null = null;
  let generation = 0;
  const cancel = () => {
    clearTimeout(timer);
    timer = undefined;
    controller?.abort();
    controller = null;
    generation++;
  };
  return {
    cancel,
    schedule(args: A) {
      cancel();
      const mine = generation;
      timer = setTimeout(() => {
        const current = new AbortController();
        controller = current;
        run(args, current.signal).then(
          (result) => {
            if (mine === generation) onResult(result, args);
          },
          (error) => {
            if (mine === generation && !current.signal.aborted) onError(error, args);
          },
        );
      }, delayMs);
    },
  };
}
