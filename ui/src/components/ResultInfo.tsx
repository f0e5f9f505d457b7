"use client";
/** The "This result" section: the photo's name, size, the model and the time it took. */
import type { Result } from "@/lib/result";
import { formatBytes } from "@/lib/upload";

export default function ResultInfo({ result }: { result: Result }) {
  return (
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
  );
}
