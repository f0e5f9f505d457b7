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
  /** The same quantity in physical units ("66.9 µm"), when the server sent it (a scale was given). */
  physical: string | null;
  /** What the number means (a tooltip). */
  help: string;
}

interface Quantity {
  key: string;
  unit: string;
  digits: number;
  /** Multiply the value by this for display (100 for a fraction in %, 0.001 for µm in mm). */
  factor?: number;
}

interface RowSpec extends Quantity {
  label: string;
  help: string;
  /** The server's key for the same quantity in physical units (present only with a scale). */
  physical?: Quantity;
}

/**
 * The rows shown, in order (keys of `vessel_lightning.measurements.VesselMeasurements`). Keys missing from
 * the answer are skipped; numeric keys neither listed here nor in {@link NOT_SHOWN} are appended under their own
 * name, so a new measurement shows up without a UI change.
 */
export const ROW_SPECS: RowSpec[] = [
  { key: "area_density", label: "Vessel area density", unit: "%", digits: 2, factor: 100, help: "Vessel pixels / field-of-view pixels." },
  {
    key: "skeleton_length_px", label: "Centre-line length", unit: "px", digits: 0, help: "Total length of the vessel centre lines.",
    physical: { key: "skeleton_length_um", unit: "mm", digits: 2, factor: 0.001 },
  },
  {
    key: "skeleton_length_density_per_px", label: "Length density", unit: "px⁻¹", digits: 4, help: "Centre-line length / field area.",
    physical: { key: "skeleton_length_density_per_mm", unit: "mm⁻¹", digits: 2 },
  },
  {
    key: "calibre_mean_px", label: "Calibre, mean", unit: "px", digits: 2, help: "Vessel width along the centre lines (from the distance to the background).",
    physical: { key: "calibre_mean_um", unit: "µm", digits: 1 },
  },
  {
    key: "calibre_p50_px", label: "Calibre, median", unit: "px", digits: 2, help: "Median vessel width along the centre lines.",
    physical: { key: "calibre_p50_um", unit: "µm", digits: 1 },
  },
  {
    key: "calibre_p10_px", label: "Calibre, 10th pct", unit: "px", digits: 2, help: "10 % of the centre line is narrower than this.",
    physical: { key: "calibre_p10_um", unit: "µm", digits: 1 },
  },
  {
    key: "calibre_p90_px", label: "Calibre, 90th pct", unit: "px", digits: 2, help: "10 % of the centre line is wider than this.",
    physical: { key: "calibre_p90_um", unit: "µm", digits: 1 },
  },
  { key: "tortuosity_arc_chord", label: "Tortuosity, arc/chord", unit: "", digits: 4, help: "Arc over chord per segment between branch and end points, length-weighted mean; 1 is straight." },
  {
    key: "tortuosity_curvature", label: "Tortuosity, curvature", unit: "rad/px", digits: 4, help: "Total turning of the centre lines over their length.",
    physical: { key: "tortuosity_curvature_per_mm", unit: "rad/mm", digits: 2 },
  },
  { key: "branch_points", label: "Branch points", unit: "", digits: 0, help: "Junctions of three or more centre-line branches." },
  { key: "end_points", label: "End points", unit: "", digits: 0, help: "Centre-line ends." },
  { key: "segments", label: "Segments", unit: "", digits: 0, help: "Centre-line pieces between branch and end points." },
  { key: "fractal_dimension", label: "Fractal dimension", unit: "", digits: 3, help: "Box counting; 1 for a line, 2 for a filled area." },
];

/** Keys the panel does not list as rows (shown elsewhere, or raw counts behind a listed ratio). */
export const NOT_SHOWN = new Set(["fov_area_px", "vessel_area_px", "um_per_pixel", "fov_area_mm2"]);

/** `value` with `digits` decimals and thousands separators; "–" for null, undefined or a non-finite number. */
export function formatNumber(value: unknown, digits: number): string {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function titleCase(key: string): string {
  const words = key.replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function formatQuantity(raw: unknown, q: Quantity): string {
  return formatNumber(typeof raw === "number" && q.factor ? raw * q.factor : raw, q.digits);
}

/** The panel's rows for the server's `measurements` object. */
export function measurementRows(measurements: Record<string, unknown>): MeasurementRow[] {
  const rows: MeasurementRow[] = [];
  const known = new Set<string>(NOT_SHOWN);
  for (const spec of ROW_SPECS) {
    known.add(spec.key);
    if (spec.physical) known.add(spec.physical.key);
    if (!(spec.key in measurements)) continue;
    const physicalRaw = spec.physical ? measurements[spec.physical.key] : null;
    const physical =
      spec.physical && typeof physicalRaw === "number" && Number.isFinite(physicalRaw)
        ? `${formatQuantity(physicalRaw, spec.physical)} ${spec.physical.unit}`
        : null;
    rows.push({
      key: spec.key,
      label: spec.label,
      value: formatQuantity(measurements[spec.key], spec),
      unit: spec.unit,
      physical,
      help: spec.help,
    });
  }
  for (const [key, raw] of Object.entries(measurements)) {
    if (known.has(key) || (typeof raw !== "number" && raw !== null)) continue;
    const digits = Number.isInteger(raw) ? 0 : 3;
    rows.push({ key, label: titleCase(key), value: formatNumber(raw, digits), unit: "", physical: null, help: key });
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
