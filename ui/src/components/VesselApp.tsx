"use client";
/**
 * The page: model info, upload, progress and errors, the result viewer, threshold / overlay controls, downloads,
 * and the Measurements panel, each kept by its own hook (src/hooks) and drawn by its own component.
 *
 * The API is asked once per photo for the probability map (and its field of view, which the model does not need);
 * the threshold, colour, views, fraction and image downloads are computed here. Measurements and the GeoJSON come
 * from the server's `POST /measure` and `POST /geojson`, which threshold the same probability PNG without running
 * the model: the panel follows the slider, debounced, latest request only. The last re-threshold time (slider
 * input → vessel layer painted, ms) is kept in `data-rethreshold-ms` on the threshold section for tests and shown
 * under the slider.
 */
import { useMemo } from "react";
import { useDownloads } from "@/hooks/useDownloads";
import { DEFAULT_THRESHOLD, useLayerSettings } from "@/hooks/useLayerSettings";
import { type MeasureSource, useMeasurements } from "@/hooks/useMeasurements";
import { useModelInfo } from "@/hooks/useModelInfo";
import { usePageDrop } from "@/hooks/usePageDrop";
import { usePrediction } from "@/hooks/usePrediction";
import { useVesselLayer } from "@/hooks/useVesselLayer";
import { countAtOrAbove, cutoffFor } from "@/lib/threshold";
import AccessPrompt from "./AccessPrompt";
import DownloadSection from "./DownloadSection";
import MeasurementsPanel from "./MeasurementsPanel";
import OverlaySection from "./OverlaySection";
import PhotoSection from "./PhotoSection";
import ResultInfo from "./ResultInfo";
import ThresholdSection from "./ThresholdSection";
import TopBar from "./TopBar";
import Viewer from "./Viewer";
import ViewSection from "./ViewSection";

export default function VesselApp() {
  const layer = useLayerSettings();
  const { threshold } = layer;
  const { model, modelError } = useModelInfo(layer.adoptRecommended);
  const recommended = model?.contract?.threshold ?? DEFAULT_THRESHOLD;
  const prediction = usePrediction();
  const { result } = prediction;
  usePageDrop(prediction.segment);
  const painter = useVesselLayer({ result, threshold, colour: layer.colour, view: layer.view, inputAt: layer.inputAt });

  const vesselPixels = useMemo(() => (result ? countAtOrAbove(result.bins, cutoffFor(threshold)) : 0), [result, threshold]);
  const source = useMemo<MeasureSource | null>(
    () => (result ? { key: result.id, png: result.probabilityPng, field: result.fieldPng } : null),
    [result],
  );
  const measurements = useMeasurements(source, threshold);
  const downloads = useDownloads(
    result
      ? {
          result,
          threshold,
          colour: layer.colour,
          opacity: layer.opacity,
          modelName: model?.name ?? null,
          modelVersion: model?.version ?? null,
        }
      : null,
    prediction,
  );

  return (
    <div className="app">
      <TopBar model={model} modelError={modelError} recommended={recommended} />
      <main className={`layout${result ? " with-readout" : ""}`}>
        <aside className="sidebar" aria-label="Controls">
          <PhotoSection
            onFile={prediction.segment}
            progress={prediction.progress}
            onCancel={prediction.cancel}
            error={prediction.error}
            notice={prediction.notice}
            compact={!!result}
          >
            <AccessPrompt />
          </PhotoSection>
          {result && (
            <>
              <ViewSection
                view={layer.view}
                onView={layer.setView}
                showField={layer.showField}
                onShowField={layer.setShowField}
                hasField={!!result.fieldPath}
              />
              <ThresholdSection
                threshold={threshold}
                onThreshold={layer.setThreshold}
                recommended={recommended}
                vesselPixels={vesselPixels}
                totalPixels={result.width * result.height}
                timingRef={painter.timingRef}
                timingText={painter.timingText}
              />
              <OverlaySection
                colour={layer.colour}
                onColour={layer.setColour}
                opacity={layer.opacity}
                onOpacity={layer.setOpacity}
                opacityDisabled={layer.view === "mask"}
              />
              <DownloadSection threshold={threshold} busy={downloads.busyDownload} onDownload={downloads.download} />
              <ResultInfo result={result} />
            </>
          )}
        </aside>

        <div className="main-area">
          {result ? (
            <Viewer
              width={result.width}
              height={result.height}
              view={layer.view}
              photoUrl={result.photoUrl}
              opacity={layer.opacity}
              layerRef={painter.layerRef}
              imageKey={result.id}
              fieldPath={layer.showField ? result.fieldPath : null}
            />
          ) : (
            <div className="empty">
              <p>
                {prediction.progress
                  ? "Segmenting… the overlay appears here."
                  : "Drop a photo on the left, or choose one, to see its blood vessels."}
              </p>
            </div>
          )}
        </div>

        {result && (
          <MeasurementsPanel
            readout={measurements.readout}
            measuring={measurements.measuring}
            error={measurements.measureError}
            threshold={threshold}
            scale={measurements.scale}
            scaleError={measurements.scaleError}
            onScale={measurements.setScale}
          />
        )}
      </main>
    </div>
  );
}
