"use client";
/**
 * The page: model info, upload, progress and errors, the result viewer, threshold / overlay controls, the editor,
 * region of interest and annotations, downloads, and the Measurements panel, each kept by its own hook
 * (src/hooks) and drawn by its own component.
 *
 * The API is asked once per photo for the probability map (and its field of view, which the model does not need);
 * the threshold, colour, views, edits, fraction and image downloads are computed here. Measurements and the GeoJSON
 * come from the server's `POST /measure` and `POST /geojson`, which threshold the same PNG (the probability map, or
 * the edited mask) without running the model: the panel follows the slider and the edits, debounced.
 */
import { useCallback, useRef, useState } from "react";
import { useAnnotations } from "@/hooks/useAnnotations";
import { useDownloads } from "@/hooks/useDownloads";
import { useEditedMask } from "@/hooks/useEditedMask";
import { useEditor } from "@/hooks/useEditor";
import { useEditShortcuts } from "@/hooks/useEditShortcuts";
import { DEFAULT_THRESHOLD, useLayerSettings } from "@/hooks/useLayerSettings";
import { useMeasurements } from "@/hooks/useMeasurements";
import { useModelInfo } from "@/hooks/useModelInfo";
import { usePageDrop } from "@/hooks/usePageDrop";
import { usePrediction } from "@/hooks/usePrediction";
import { useVesselLayer } from "@/hooks/useVesselLayer";
import type { Point } from "@/lib/brush";
import type { Rect } from "@/lib/editLayer";
import { clampToImage, roiGeoJson } from "@/lib/roi";
import AccessPrompt from "./AccessPrompt";
import AnnotationSection from "./AnnotationSection";
import DownloadSection from "./DownloadSection";
import EditSection from "./EditSection";
import MeasurementsPanel from "./MeasurementsPanel";
import OverlaySection from "./OverlaySection";
import PhotoSection from "./PhotoSection";
import RegionSection from "./RegionSection";
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
  const repaint = useRef<(rect: Rect) => void>(() => {});
  const editor = useEditor((rect) => repaint.current(rect));
  useEditShortcuts(editor, !!result);
  const mask = useEditedMask(result, editor, threshold);
  const painter = useVesselLayer({ result, edits: editor.layer?.edits ?? null, threshold, colour: layer.colour, view: layer.view, inputAt: layer.inputAt });
  repaint.current = painter.paintRect;
  const [roi, setRoi] = useState<Point[] | null>(null);
  const annotations = useAnnotations();

  const openPhoto = useCallback(
    (file: File) => {
      setRoi(null);
      annotations.forget();
      prediction.segment(file);
    },
    [annotations.forget, prediction.segment], // eslint-disable-line react-hooks/exhaustive-deps
  );
  usePageDrop(openPhoto);
  const setRegion = (points: Point[] | null) => {
    if (!result) return;
    const region = points ? clampToImage(points, result.width, result.height) : null;
    setRoi(region);
    editor.chooseTool("pan");
    prediction.segment(result.file, region ? roiGeoJson(region) : null);
  };
  const onPolygon = (points: Point[], kind: "lasso" | "roi") => (kind === "roi" ? setRegion(points) : editor.fill(points));

  const measurements = useMeasurements(mask.source, threshold);
  const downloads = useDownloads(
    result
      ? { result, threshold, colour: layer.colour, opacity: layer.opacity, modelName: model?.name ?? null, modelVersion: model?.version ?? null, edits: mask.edits }
      : null,
    prediction,
  );
  const next = async () => {
    const file = await annotations.next();
    if (file) openPhoto(file);
  };

  return (
    <div className="app">
      <TopBar model={model} modelError={modelError} recommended={recommended} />
      <main className={`layout${result ? " with-readout" : ""}`}>
        <aside className="sidebar" aria-label="Controls">
          <PhotoSection onFile={openPhoto} progress={prediction.progress} onCancel={prediction.cancel} error={prediction.error} notice={prediction.notice} compact={!!result}>
            <AccessPrompt />
          </PhotoSection>
          {result && (
            <>
              <ViewSection view={layer.view} onView={layer.setView} showField={layer.showField} onShowField={layer.setShowField} hasField={!!result.fieldPath} />
              <ThresholdSection
                threshold={threshold}
                onThreshold={layer.setThreshold}
                recommended={recommended}
                vesselPixels={mask.vesselPixels}
                totalPixels={result.width * result.height}
                timingRef={painter.timingRef}
                timingText={painter.timingText}
              />
              <EditSection editor={editor} counts={mask.counts} />
              <RegionSection drawing={editor.tool === "roi"} hasRegion={!!roi} onDraw={() => editor.chooseTool("roi")} onClear={() => setRegion(null)} />
              <OverlaySection colour={layer.colour} onColour={layer.setColour} opacity={layer.opacity} onOpacity={layer.setOpacity} opacityDisabled={layer.view === "mask"} />
              <AnnotationSection
                annotations={annotations}
                onOpen={mask.openAnnotation}
                onSave={() => annotations.save(mask.saveParts)}
                onNext={next}
                openError={mask.openError}
              />
              <DownloadSection threshold={threshold} busy={downloads.busyDownload} onDownload={downloads.download} />
              <ResultInfo result={result} />
            </>
          )}
          {!result && annotations.settings?.enabled && annotations.settings.worklist && (
            <button type="button" onClick={next} data-testid="next-photo">
              Next photo from the worklist
            </button>
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
              imageKey={result.file.name + result.width}
              fieldPath={layer.showField ? result.fieldPath : null}
              roi={roi}
              tool={editor.tool}
              brushSize={editor.brushSize}
              tools={{ onStrokeStart: editor.strokeStart, onStrokeMove: editor.strokeMove, onStrokeEnd: editor.strokeEnd, onPolygon }}
            />
          ) : (
            <div className="empty">
              <p>{prediction.progress ? "Segmenting… the overlay appears here." : "Drop a photo on the left, or choose one, to see its blood vessels."}</p>
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
