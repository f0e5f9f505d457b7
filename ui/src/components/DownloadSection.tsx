"use client";
/** The Download section: one button per file, disabled while one is being prepared. */
import type { DownloadKind } from "@/hooks/downloadFiles";

interface DownloadSectionProps {
  threshold: number;
  busy: DownloadKind | null;
  onDownload: (kind: DownloadKind) => void;
}

const BUTTONS: [DownloadKind, string, string | undefined][] = [
  ["mask", "Mask PNG", undefined],
  ["overlay", "Masked image PNG", undefined],
  ["svg", "Outlines SVG", undefined],
  ["geojson", "GeoJSON", "Vessel regions as GeoJSON Polygons with holes, in pixel coordinates (for annotation tools)"],
];

const BUSY_TEXT: Record<DownloadKind, string> = { mask: "PNG", overlay: "PNG", svg: "SVG", geojson: "GeoJSON" };

export default function DownloadSection({ threshold, busy, onDownload }: DownloadSectionProps) {
  return (
    <section aria-labelledby="download-heading">
      <h2 id="download-heading">Download (threshold {threshold.toFixed(2)})</h2>
      <div className="downloads">
        {BUTTONS.map(([kind, label, title]) => (
          <button key={kind} type="button" onClick={() => onDownload(kind)} disabled={!!busy} title={title}>
            {label}
          </button>
        ))}
      </div>
      {busy && (
        <p className="small muted" role="status">
          Preparing the {BUSY_TEXT[busy]}…
        </p>
      )}
    </section>
  );
}
