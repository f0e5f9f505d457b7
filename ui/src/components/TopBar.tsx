"use client";
/** The page's header: the served model, its recommended threshold and the device it runs on. */
import type { ModelInfo } from "@/lib/api";
import { deviceLabel } from "@/lib/device";

interface TopBarProps {
  model: ModelInfo | null;
  modelError: string | null;
  recommended: number;
}

export default function TopBar({ model, modelError, recommended }: TopBarProps) {
  const device = deviceLabel(model?.device, model?.backend, model?.precision);
  return (
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
  );
}
