"use client";
/**
 * The page: model info, upload, progress and errors, the result viewer, threshold / overlay controls, downloads,
 * and the Measurements panel.
 *
 * The API is asked once per photo for the probability map (and its field of view, which the model does not need);
 * the threshold, colour, views, fraction and image downloads are computed here. Measurements and the GeoJSON come
 * from the server's `POST /measure` and `POST /geojson`, which threshold the same probability PNG without running
 * the model: the panel follows the slider, debounced, latest request only. The last re-threshold time (slider
 * input → vessel layer painted, ms) is kept in `data-rethreshold-ms` on the threshold section for tests and shown
 * under the slider.
 */
import { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState } from "react";
import {
  ApiError,
  fetchField,
  fetchGeoJson,
  fetchMeasurements,
  fetchModel,
  type ModelInfo,
  predictProbability,
  type PredictPhase,
  type Readout,
} from "@/lib/api";
import { deviceLabel } from "@/lib/device";
import { contourSvg, contoursToPathData, traceContours } from "@/lib/contours";
import { latestOnly, type ScaleChoice, scaleParams } from "@/lib/measurements";
import { compositeOverlay, layerLut, paintLayer, parseHexColour } from "@/lib/overlay";
import { encodePng } from "@/lib/png";
import { countAtOrAbove, cutoffFor, histogram, thresholdMask } from "@/lib/threshold";
import { checkFile, formatBytes } from "@/lib/upload";
import { bitmapPixels, blobToDataUrl, decodeProbability, rgbaToPng, saveBlob } from "./browser";
import DropZone from "./DropZone";
import MeasurementsPanel from "./MeasurementsPanel";
import Viewer, { type ViewMode } from "./Viewer";

interface Result {
  id: string;
  file: File;
  width: number;
  height: number;
  probability: Uint8Array;
  /** The probability PNG as the server sent it (sent back to /measure and /geojson). */
  probabilityPng: Uint8Array;
  /** The field of view PNG ({0, 255}) from `/predict?format=fov`, and its outline as SVG path data. */
  fieldPng: Uint8Array | null;
  fieldPath: string | null;
  bins: Uint32Array;
  photo: ImageBitmap | null;
  photoUrl: string | null;
  photoNote: string | null;
  modelName: string | null;
  modelVersion: string | null;
  inferenceMs: number | null;
  totalMs: number;
}

type Progress = { fileName: string; phase: PredictPhase | "decoding"; fraction: number | null };

const DEFAULT_THRESHOLD = 0.5;
const DEFAULT_COLOUR = "#ffe600";
/** Slider moves closer together than this send one measurement request. */
const MEASURE_DEBOUNCE_MS = 150;

interface MeasureArgs {
  png: Uint8Array;
  field: Uint8Array | null;
  threshold: number;
  scale: Record<string, string>;
}

const PHASE_TEXT: Record<Progress["phase"], string> = {
  uploading: "Uploading",
  segmenting: "Segmenting vessels",
  downloading: "Receiving the probability map",
  decoding: "Preparing the overlay",
};

function stem(name: string): string {
  return name.replace(/\.[^.]+$/, "") || "photo";
}

export default function VesselApp() {
  const [model, setModel] = useState<ModelInfo | null>(null);
  const [modelError, setModelError] = useState<string | null>(null);
  const [progress, setProgress] = useState<Progress | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [result, setResult] = useState<Result | null>(null);
  const [threshold, setThreshold] = useState(DEFAULT_THRESHOLD);
  const [colour, setColour] = useState(DEFAULT_COLOUR);
  const [opacity, setOpacity] = useState(0.6);
  const [view, setView] = useState<ViewMode>("overlay");
  const [busyDownload, setBusyDownload] = useState<string | null>(null);
  const [showField, setShowField] = useState(true);
  const [scale, setScale] = useState<ScaleChoice>({ kind: "pixels", text: "" });
  const [readout, setReadout] = useState<Readout | null>(null);
  const [measuring, setMeasuring] = useState(false);
  const [measureError, setMeasureError] = useState<string | null>(null);
  const thresholdTouched = useRef(false);
  const inputAt = useRef<number | null>(null);
  const layerRef = useRef<HTMLCanvasElement>(null);
  const layerPixels = useRef<ImageData | null>(null);
  const timingRef = useRef<HTMLElement>(null);
  const timingText = useRef<HTMLSpanElement>(null);
  const abort = useRef<AbortController | null>(null);

  const recommended = model?.contract?.threshold ?? DEFAULT_THRESHOLD;

  // Model info; retried while the server is still loading the model (503).
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = async () => {
      try {
        const info = await fetchModel();
        if (stopped) return;
        setModel(info);
        setModelError(null);
        if (!thresholdTouched.current && typeof info.contract?.threshold === "number") {
          setThreshold(info.contract.threshold);
        }
      } catch (e) {
        if (stopped) return;
        setModelError(e instanceof Error ? e.message : String(e));
        timer = setTimeout(load, e instanceof ApiError && e.status === 503 ? 3000 : 10000);
      }
    };
    load();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, []);

  // Release the photo's object URL and bitmap when the result is replaced.
  useEffect(() => {
    return () => {
      if (result?.photoUrl) URL.revokeObjectURL(result.photoUrl);
      result?.photo?.close();
    };
  }, [result]);

  const segment = useCallback(async (file: File) => {
    setError(null);
    setNotice(null);
    const check = checkFile(file);
    if (!check.ok) {
      setError(check.message);
      return;
    }
    abort.current?.abort();
    const controller = new AbortController();
    abort.current = controller;
    const started = performance.now();
    setProgress({ fileName: file.name, phase: "uploading", fraction: 0 });
    try {
      const photoPromise = check.displayable
        ? createImageBitmap(file).catch(() => null)
        : Promise.resolve(null);
      // The field needs no model: asked beside the prediction; without it measurements use the whole frame.
      const fieldPromise = fetchField(file, controller.signal).catch((e: unknown) => e);
      const prediction = await predictProbability(
        file,
        (phase, fraction) => {
          if (!controller.signal.aborted) setProgress({ fileName: file.name, phase, fraction });
        },
        controller.signal,
      );
      setProgress({ fileName: file.name, phase: "decoding", fraction: null });
      const map = await decodeProbability(prediction.png);
      let photo = await photoPromise;
      let photoNote: string | null = null;
      const fieldAnswer = await fieldPromise;
      let fieldPng: Uint8Array | null = null;
      let fieldPath: string | null = null;
      if (fieldAnswer instanceof Uint8Array) {
        const field = await decodeProbability(fieldAnswer);
        if (field.width === map.width && field.height === map.height) {
          fieldPng = fieldAnswer;
          fieldPath = contoursToPathData(traceContours(field.values, field.width, field.height, 0.5).polygons);
        }
      }
      if (!fieldPng && !controller.signal.aborted) {
        setNotice("The server did not return the field of view: measurements use the whole frame.");
      }
      if (!check.displayable) {
        photoNote = "This browser cannot display TIFF photos: the vessels are shown on black, and the masked-image " +
          "and SVG downloads use a black background.";
      } else if (!photo) {
        photoNote = "The browser could not decode this photo for display: the vessels are shown on black.";
      } else if (photo.width !== map.width || photo.height !== map.height) {
        photoNote = `The photo decodes to ${photo.width}×${photo.height} here but the server segmented it at ` +
          `${map.width}×${map.height}; the vessels are shown on black.`;
        photo.close();
        photo = null;
      }
      if (controller.signal.aborted) {
        photo?.close();
        return;
      }
      layerPixels.current = null;
      setReadout(null); // the previous photo's numbers must not show beside this one
      setResult({
        id: `${file.name}-${started}`,
        file,
        width: map.width,
        height: map.height,
        probability: map.values,
        probabilityPng: prediction.png,
        fieldPng,
        fieldPath,
        bins: histogram(map.values),
        photo,
        photoUrl: photo ? URL.createObjectURL(file) : null,
        photoNote,
        modelName: prediction.modelName,
        modelVersion: prediction.modelVersion,
        inferenceMs: prediction.inferenceMs,
        totalMs: performance.now() - started,
      });
    } catch (e) {
      if (e instanceof DOMException && e.name === "AbortError") return;
      setError(
        e instanceof ApiError
          ? `The server could not segment ${file.name} (${e.status}): ${e.message}`
          : `Segmenting ${file.name} failed: ${e instanceof Error ? e.message : String(e)}`,
      );
    } finally {
      if (abort.current === controller) {
        abort.current = null;
        setProgress(null);
      }
    }
  }, []);

  // A photo dropped anywhere on the page is segmented (instead of the browser opening it).
  useEffect(() => {
    const onDragOver = (e: DragEvent) => e.preventDefault();
    const onDrop = (e: DragEvent) => {
      if (e.defaultPrevented) return; // the drop zone took it
      e.preventDefault();
      const file = e.dataTransfer?.files[0];
      if (file) segment(file);
    };
    window.addEventListener("dragover", onDragOver);
    window.addEventListener("drop", onDrop);
    return () => {
      window.removeEventListener("dragover", onDragOver);
      window.removeEventListener("drop", onDrop);
    };
  }, [segment]);

  const cancel = () => {
    abort.current?.abort();
    abort.current = null;
    setProgress(null);
    setNotice("Segmentation cancelled.");
  };

  // Repaint the vessel layer whenever the map, threshold, colour or view changes; time it.
  useLayoutEffect(() => {
    const canvas = layerRef.current;
    if (!result || !canvas) return;
    const started = inputAt.current ?? performance.now();
    inputAt.current = null;
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    let pixels = layerPixels.current;
    if (!pixels || pixels.width !== result.width || pixels.height !== result.height) {
      pixels = ctx.createImageData(result.width, result.height);
      layerPixels.current = pixels;
    }
    const style = view === "mask" ? "mask" : "overlay";
    paintLayer(result.probability, layerLut(threshold, style, parseHexColour(colour)), new Uint32Array(pixels.data.buffer));
    ctx.putImageData(pixels, 0, 0);
    const ms = performance.now() - started;
    timingRef.current?.setAttribute("data-rethreshold-ms", ms.toFixed(2));
    timingRef.current?.setAttribute("data-painted-threshold", String(threshold));
    if (timingText.current) timingText.current.textContent = `${ms.toFixed(1)} ms`;
  }, [result, threshold, colour, view]);

  const vesselPixels = useMemo(
    () => (result ? countAtOrAbove(result.bins, cutoffFor(threshold)) : 0),
    [result, threshold],
  );
  const totalPixels = result ? result.width * result.height : 0;

  // Measurements follow the threshold and scale: debounced, and only the latest request's answer is shown.
  const measurer = useMemo(
    () =>
      latestOnly<MeasureArgs, Readout>(
        MEASURE_DEBOUNCE_MS,
        (a, signal) => fetchMeasurements(a.png, a.field, a.threshold, a.scale, signal),
        (answer) => {
          setReadout(answer);
          setMeasureError(null);
          setMeasuring(false);
        },
        (e) => {
          setMeasureError(e instanceof Error ? e.message : String(e));
          setMeasuring(false);
        },
      ),
    [],
  );
  useEffect(() => () => measurer.cancel(), [measurer]);
  const { params: scaleQuery, error: scaleError } = scaleParams(scale);
  const scaleKey = JSON.stringify(scaleQuery);
  useEffect(() => {
    if (!result) {
      measurer.cancel();
      setReadout(null);
      return;
    }
    setMeasuring(true);
    measurer.schedule({ png: result.probabilityPng, field: result.fieldPng, threshold, scale: JSON.parse(scaleKey) });
  }, [result, threshold, scaleKey, measurer]);
  const fraction = totalPixels ? vesselPixels / totalPixels : 0;
  const tLabel = threshold.toFixed(2);

  const download = async (kind: "mask" | "overlay" | "svg" | "geojson") => {
    if (!result) return;
    setBusyDownload(kind);
    setError(null);
    try {
      const { width: w, height: h, probability } = result;
      const base = `${stem(result.file.name)}.t${tLabel}`;
      if (kind === "geojson") {
        const geojson = await fetchGeoJson(result.probabilityPng, result.fieldPng, threshold);
        saveBlob(geojson, `${base}.vessels.geojson`);
      } else if (kind === "mask") {
        const png = await encodePng({ width: w, height: h, channels: 1, data: thresholdMask(probability, threshold) });
        saveBlob(new Blob([png as BlobPart], { type: "image/png" }), `${base}.mask.png`);
      } else if (kind === "overlay") {
        const photo = result.photo ? bitmapPixels(result.photo) : null;
        const rgba = compositeOverlay(photo, probability, threshold, parseHexColour(colour), opacity);
        saveBlob(await rgbaToPng(rgba, w, h), `${base}.overlay.png`);
      } else {
        const contours = traceContours(probability, w, h, threshold);
        let rasterHref: string | null = null;
        if (contours.truncated) {
          const rgba = new Uint8ClampedArray(w * h * 4);
          paintLayer(probability, layerLut(threshold, "overlay", parseHexColour(colour)), new Uint32Array(rgba.buffer));
          rasterHref = await blobToDataUrl(await rgbaToPng(rgba, w, h));
          setNotice(
            `The vessel outlines need over ${contours.vertexCount.toLocaleString()} points, too many for a usable ` +
              "SVG: the SVG embeds the vessels as a PNG layer over the photo instead.",
          );
        }
        let photoHref: string | null = null;
        if (result.photo) {
          const keep = ["image/png", "image/jpeg"].includes(result.file.type);
          photoHref = await blobToDataUrl(keep ? result.file : await rgbaToPng(bitmapPixels(result.photo), w, h));
        }
        const version = result.modelVersion ?? model?.version ?? "?";
        const svg = contourSvg({
          width: w,
          height: h,
          photoHref,
          contours,
          rasterHref,
          colour,
          opacity,
          threshold,
          title: `Vessels of ${result.file.name}, ${result.modelName ?? model?.name ?? "model"} v${version}`,
        });
        saveBlob(new Blob([svg], { type: "image/svg+xml" }), `${base}.vessels.svg`);
      }
    } catch (e) {
      setError(`The download failed: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      setBusyDownload(null);
    }
  };

  const onThreshold = (value: number) => {
    thresholdTouched.current = true;
    inputAt.current = performance.now();
    setThreshold(value);
  };

  const device = deviceLabel(model?.device, model?.backend, model?.precision);

  return (
    <div className="app">
      <header className="topbar">
        <h1>
          <img src="/favicon.svg" alt="" width={22} height={22} /> Vessel Lightning
        </h1>
        <div className="model" data-testid="model-info" aria-live="polite">
          {model ? (
            <>
              <strong>{model.name}</strong> v{model.version}
              {model.alias ? ` (${model.alias})` : ""}
              <span className="muted">
                {" "}· {model.contract?.encoder} · {model.contract?.dataset || "unknown data"} · recommended threshold{" "}
                {recommended.toFixed(2)}
              </span>
              {device.label ? (
                <span className="device" data-testid="device-info" title={device.title}>
                  {device.label}
                </span>
              ) : null}
            </>
          ) : (
            <span className={modelError ? "warn" : "muted"}>
              {modelError ? `Model not available: ${modelError}` : "Loading model information…"}
            </span>
          )}
        </div>
      </header>

      <main className={`layout${result ? " with-readout" : ""}`}>
        <aside className="sidebar" aria-label="Controls">
          <section aria-labelledby="photo-heading">
            <h2 id="photo-heading">Photo</h2>
            <DropZone onFile={segment} busy={!!progress} compact={!!result} />
            {progress && (
              <div className="progress" role="status" aria-live="polite" data-testid="progress">
                <div>
                  {PHASE_TEXT[progress.phase]} <span className="muted">{progress.fileName}</span>…
                </div>
                <progress
                  max={1}
                  value={progress.fraction ?? undefined}
                  aria-label={PHASE_TEXT[progress.phase]}
                />
                <button type="button" onClick={cancel}>
                  Cancel
                </button>
              </div>
            )}
            <div role="alert" className={error ? "error" : "visually-hidden"} data-testid="error">
              {error}
            </div>
            {notice && (
              <p className="notice" role="status">
                {notice}
              </p>
            )}
          </section>

          {result && (
            <>
              <section aria-labelledby="view-heading">
                <h2 id="view-heading">View</h2>
                <div className="segmented" role="radiogroup" aria-labelledby="view-heading">
                  {(
                    [
                      ["overlay", "Overlay"],
                      ["side", "Side by side"],
                      ["mask", "Mask only"],
                    ] as const
                  ).map(([value, label]) => (
                    <label key={value} className={view === value ? "checked" : ""}>
                      <input
                        type="radio"
                        name="view"
                        value={value}
                        checked={view === value}
                        onChange={() => setView(value)}
                      />
                      {label}
                    </label>
                  ))}
                </div>
                <label className="check">
                  <input
                    type="checkbox"
                    data-testid="show-field"
                    checked={showField}
                    onChange={(e) => setShowField(e.target.checked)}
                    disabled={!result.fieldPath}
                  />
                  Field of view outline
                </label>
              </section>

              <section
                aria-labelledby="threshold-heading"
                ref={timingRef}
                data-testid="threshold-section"
                data-vessel-pixels={vesselPixels}
              >
                <h2 id="threshold-heading">Threshold</h2>
                <div className="slider-row">
                  <input
                    id="threshold"
                    data-testid="threshold"
                    type="range"
                    min={0}
                    max={1}
                    step={0.01}
                    value={threshold}
                    onChange={(e) => onThreshold(Number(e.target.value))}
                    aria-describedby="threshold-help"
                    aria-label="Vessel probability threshold"
                  />
                  <output htmlFor="threshold" className="value" data-testid="threshold-value">
                    {tLabel}
                  </output>
                </div>
                <p id="threshold-help" className="small muted">
                  A pixel is vessel when its probability is at least the threshold.{" "}
                  <button
                    type="button"
                    className="link"
                    onClick={() => onThreshold(recommended)}
                    disabled={Math.abs(threshold - recommended) < 1e-9}
                  >
                    Reset to {recommended.toFixed(2)}
                  </button>
                </p>
                <dl className="stats">
                  <dt>Vessel pixels</dt>
                  <dd data-testid="vessel-fraction">
                    {(fraction * 100).toFixed(2)} %{" "}
                    <span className="muted">
                      ({vesselPixels.toLocaleString("en-US")} of {totalPixels.toLocaleString("en-US")})
                    </span>
                  </dd>
                  <dt>Re-threshold</dt>
                  <dd>
                    <span ref={timingText} data-testid="rethreshold-time">
                      –
                    </span>{" "}
                    <span className="muted">in this browser</span>
                  </dd>
                </dl>
              </section>

              <section aria-labelledby="overlay-heading">
                <h2 id="overlay-heading">Overlay</h2>
                <div className="field">
                  <label htmlFor="colour">Colour</label>
                  <input id="colour" type="color" value={colour} onChange={(e) => setColour(e.target.value)} />
                </div>
                <div className="field">
                  <label htmlFor="opacity">Opacity</label>
                  <input
                    id="opacity"
                    type="range"
                    min={0}
                    max={1}
                    step={0.05}
                    value={opacity}
                    onChange={(e) => setOpacity(Number(e.target.value))}
                    disabled={view === "mask"}
                  />
                  <output htmlFor="opacity" className="value">
                    {Math.round(opacity * 100)}%
                  </output>
                </div>
              </section>

              <section aria-labelledby="download-heading">
                <h2 id="download-heading">Download (threshold {tLabel})</h2>
                <div className="downloads">
                  <button type="button" onClick={() => download("mask")} disabled={!!busyDownload}>
                    Mask PNG
                  </button>
                  <button type="button" onClick={() => download("overlay")} disabled={!!busyDownload}>
                    Masked image PNG
                  </button>
                  <button type="button" onClick={() => download("svg")} disabled={!!busyDownload}>
                    Outlines SVG
                  </button>
                  <button
                    type="button"
                    onClick={() => download("geojson")}
                    disabled={!!busyDownload}
                    title="Vessel regions as GeoJSON Polygons with holes, in pixel coordinates (for annotation tools)"
                  >
                    GeoJSON
                  </button>
                </div>
                {busyDownload && (
                  <p className="small muted" role="status">
                    Preparing the {busyDownload === "svg" ? "SVG" : busyDownload === "geojson" ? "GeoJSON" : "PNG"}…
                  </p>
                )}
              </section>

              <section aria-labelledby="about-heading" className="about">
                <h2 id="about-heading">This result</h2>
                <p className="small" data-testid="result-info">
                  {result.file.name} · {result.width}×{result.height} · {formatBytes(result.file.size)}
                  <br />
                  {result.modelName ?? "model"} v{result.modelVersion ?? "?"}
                  {result.inferenceMs !== null ? ` · model ${Math.round(result.inferenceMs)} ms` : ""} · total{" "}
                  {Math.round(result.totalMs)} ms
                </p>
                {result.photoNote && <p className="notice small">{result.photoNote}</p>}
              </section>
            </>
          )}
        </aside>

        <div className="main-area">
          {result ? (
            <Viewer
              width={result.width}
              height={result.height}
              view={view}
              photoUrl={result.photoUrl}
              opacity={opacity}
              layerRef={layerRef}
              imageKey={result.id}
              fieldPath={showField ? result.fieldPath : null}
            />
          ) : (
            <div className="empty">
              <p>
                {progress
                  ? "Segmenting… the overlay appears here."
                  : "Drop a photo on the left, or choose one, to see its blood vessels."}
              </p>
            </div>
          )}
        </div>

        {result && (
          <MeasurementsPanel
            readout={readout}
            measuring={measuring}
            error={measureError}
            threshold={threshold}
            scale={scale}
            scaleError={scaleError}
            onScale={setScale}
          />
        )}
      </main>
    </div>
  );
}
