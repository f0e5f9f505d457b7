"use client";
/**
 * The Threshold section: the slider, reset to the model's recommendation, the vessel fraction and the last
 * re-threshold time (written by the layer painter straight into `timingText`, no re-render).
 */
import type { RefObject } from "react";

interface ThresholdSectionProps {
  threshold: number;
  onThreshold: (value: number) => void;
  recommended: number;
  vesselPixels: number;
  totalPixels: number;
  timingRef: RefObject<HTMLElement | null>;
  timingText: RefObject<HTMLSpanElement | null>;
}

export default function ThresholdSection(props: ThresholdSectionProps) {
  const { threshold, onThreshold, recommended, vesselPixels, totalPixels, timingRef, timingText } = props;
  const fraction = totalPixels ? vesselPixels / totalPixels : 0;
  return (
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
          {threshold.toFixed(2)}
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
  );
}
