"use client";
/** The Download section's state: which file is being prepared; errors and notices go to the page's. */
import { useCallback, useRef, useState } from "react";
import { saveBlob } from "@/components/browser";
import { buildDownload, type DownloadInputs, type DownloadKind } from "./downloadFiles";

export function useDownloads(
  inputs: DownloadInputs | null,
  report: { setError: (message: string | null) => void; setNotice: (message: string | null) => void },
  build: typeof buildDownload = buildDownload,
  save: typeof saveBlob = saveBlob,
) {
  const [busyDownload, setBusyDownload] = useState<DownloadKind | null>(null);
  const latest = useRef({ inputs, report });
  latest.current = { inputs, report };

  const download = useCallback(
    async (kind: DownloadKind) => {
      const { inputs: current, report } = latest.current;
      if (!current) return;
      setBusyDownload(kind);
      report.setError(null);
      try {
        const file = await build(kind, current);
        if (file.notice) report.setNotice(file.notice);
        save(file.blob, file.name);
      } catch (e) {
        report.setError(`The download failed: ${e instanceof Error ? e.message : String(e)}`);
      } finally {
        setBusyDownload(null);
      }
    },
    [build, save],
  );

  return { busyDownload, download };
}
