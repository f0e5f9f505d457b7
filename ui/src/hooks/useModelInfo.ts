"use client";
/** The served model (`GET /model`), retried while the server is still loading it (503) or unreachable. */
import { useEffect, useRef, useState } from "react";
import { ApiError, fetchModel, type ModelInfo } from "@/lib/api";

export const MODEL_RETRY_LOADING_MS = 3000;
export const MODEL_RETRY_OTHER_MS = 10000;

/** `onContract(threshold)` is called once the model's recommended threshold is known. */
export function useModelInfo(onContract?: (threshold: number) => void): { model: ModelInfo | null; modelError: string | null } {
  const [model, setModel] = useState<ModelInfo | null>(null);
  const [modelError, setModelError] = useState<string | null>(null);
  const callback = useRef(onContract);
  callback.current = onContract;

  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = async () => {
      try {
        const info = await fetchModel();
        if (stopped) return;
        setModel(info);
        setModelError(null);
        if (typeof info.contract?.threshold === "number") callback.current?.(info.contract.threshold);
      } catch (e) {
        if (stopped) return;
        setModelError(e instanceof Error ? e.message : String(e));
        const loading = e instanceof ApiError && e.status === 503;
        timer = setTimeout(load, loading ? MODEL_RETRY_LOADING_MS : MODEL_RETRY_OTHER_MS);
      }
    };
    load();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, []);

  return { model, modelError };
}
