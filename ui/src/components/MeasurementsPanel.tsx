"use client";
/**
 * The Measurements panel: the numbers the server measured on the mask at the current threshold, inside the field
 * of view (vessel density, length density, calibre, tortuosity, branch and end points, fractal dimension), with
 * units, and the physical scale the user may give. `data-threshold` holds the threshold the shown numbers belong
 * to and `data-state` is "updating" while a newer request runs, for tests.
 */
import type { Readout } from "@/lib/api";
import { formatNumber, measurementRows, type ScaleChoice, type ScaleKind } from "@/lib/measurements";

interface MeasurementsPanelProps {
  readout: Readout | null;
  measuring: boolean;
  error: string | null;
  /** The slider's threshold (the numbers may still belong to an earlier one while `measuring`). */
  threshold: number;
  scale: ScaleChoice;
  scaleError: string | null;
  onScale: (scale: ScaleChoice) => void;
}

const SCALE_OPTIONS: [ScaleKind, string][] = [
  ["pixels", "Pixels"],
  ["um_per_pixel", "µm per pixel"],
  ["fov_degrees", "Field of view (°)"],
];

function fieldText(readout: Readout): string {
  const { fov } = readout;
  if (fov.mode === "none") return "whole frame";
  const share = `${(fov.area_fraction * 100).toFixed(0)} % of the frame`;
  return `⌀ ${formatNumber(fov.diameter_px, 0)} px · ${share}`;
}

export default function MeasurementsPanel({
  readout,
  measuring,
  error,
  threshold,
  scale,
  scaleError,
  onScale,
}: MeasurementsPanelProps) {
  const rows = readout ? measurementRows(readout.measurements) : [];
  const stale = readout !== null && Math.abs(readout.threshold - threshold) > 1e-9;
  return (
    <aside className="readout" aria-labelledby="measurements-heading">
      <section
        data-testid="measurements"
        data-threshold={readout?.threshold ?? ""}
        data-state={measuring ? "updating" : "ready"}
        aria-busy={measuring}
      >
        <h2 id="measurements-heading">
          Measurements{" "}
          <span className="muted small" data-testid="measurements-threshold">
            {readout ? `at ${readout.threshold.toFixed(2)}` : ""}
            {measuring || stale ? " · updating…" : ""}
          </span>
        </h2>
        {error && (
          <p className="error small" role="alert" data-testid="measurements-error">
            Measurements failed: {error}
          </p>
        )}
        {!readout && !error && <p className="muted small">Measuring…</p>}
        {readout && (
          <>
            <p className="small muted" data-testid="field-info">
              Inside the field of view: {fieldText(readout)}
              {readout.scale
                ? ` · ${formatNumber(readout.scale.um_per_pixel, 2)} µm/px` +
                  (readout.scale.source === "fov_degrees" ? ` (from ${readout.scale.fov_degrees}°)` : "")
                : ""}
              {typeof readout.measurements.fov_area_mm2 === "number"
                ? ` · ${formatNumber(readout.measurements.fov_area_mm2, 1)} mm²`
                : ""}
            </p>
            <dl className={`stats measurements${stale ? " stale" : ""}`}>
              {rows.map((row) => (
                <div key={row.key} className="row" title={row.help}>
                  <dt>{row.label}</dt>
                  <dd data-testid={`measure-${row.key}`}>
                    {row.value}
                    {row.unit && row.value !== "–" ? <span className="unit"> {row.unit}</span> : null}
                    {row.physical ? <span className="physical"> · {row.physical}</span> : null}
                  </dd>
                </div>
              ))}
            </dl>
          </>
        )}
      </section>

      <section aria-labelledby="scale-heading">
        <h2 id="scale-heading">Scale</h2>
        <div className="field">
          <label htmlFor="scale-kind">Units</label>
          <select
            id="scale-kind"
            data-testid="scale-kind"
            value={scale.kind}
            onChange={(e) => onScale({ kind: e.target.value as ScaleKind, text: scale.text })}
          >
            {SCALE_OPTIONS.map(([value, label]) => (
              <option key={value} value={value}>
                {label}
              </option>
            ))}
          </select>
        </div>
        {scale.kind !== "pixels" && (
          <div className="field">
            <label htmlFor="scale-value">{scale.kind === "um_per_pixel" ? "µm / px" : "Degrees"}</label>
            <input
              id="scale-value"
              data-testid="scale-value"
              type="number"
              inputMode="decimal"
              min={0}
              step="any"
              placeholder={scale.kind === "um_per_pixel" ? "e.g. 10" : "e.g. 45"}
              value={scale.text}
              onChange={(e) => onScale({ kind: scale.kind, text: e.target.value })}
              aria-invalid={!!scaleError}
            />
          </div>
        )}
        {scaleError ? (
          <p className="warn small" role="alert">
            {scaleError}
          </p>
        ) : (
          <p className="small muted">
            Lengths are in pixels; give µm per pixel, or the field&apos;s angle for a fundus photo, to also get µm and
            mm.
          </p>
        )}
      </section>
    </aside>
  );
}
