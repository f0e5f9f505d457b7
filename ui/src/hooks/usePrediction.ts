"use client";
/**
 * The prediction of the photo the user chose: the file check, progress, cancel, errors and notices, and the
 * {@link Result} (its object URL and bitmap released when it is replaced). A newer photo aborts the one before.
 */
import { useCallback, useEffect, useRef, useState } from "react";
import { ApiError } from "@/lib/api";
import type { Progress, Result } from "@/lib/result";
import { checkFile } from "@/lib/upload";
import { segmentPhoto } from "./segmentPhoto";

/** `segmentFile` is the server round trip (replaced in tests). */
export function usePrediction(segmentFile: typeof segmentPhoto = segmentPhoto) {
  const [progress, setProgress] = useState<Progress | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [result, setResult] = useState<Result | null>(null);
  const abort = useRef<AbortController | null>(null);

  useEffect(() => {
    return () => {
      if (result?.photoUrl) URL.revokeObjectURL(result.photoUrl);
      result?.photo?.close();
    };
  }, [result]);

  const segment = useCallback(async (file: File, roi: string | null = null) => {
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
    setProgress({ fileName: file.name, phase: "uploading", fraction: 0 });
    try {
      const done = await segmentFile(
        file,
        check.displayable,
        (phase, fraction) => {
          if (!controller.signal.aborted) setProgress({ fileName: file.name, phase, fraction });
        },
        controller.signal,
        roi,
      );
      if (!done || controller.signal.aborted) return;
      if (done.notice) setNotice(done.notice);
      setResult(done.result);
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
  }, [segmentFile]);

  const cancel = useCallback(() => {
    abort.current?.abort();
    abort.current = null;
    setProgress(null);
    setNotice("Segmentation cancelled.");
  }, []);

  return { result, progress, error, setError, notice, setNotice, segment, cancel };
}
