"use client";
/** A photo dropped anywhere on the page goes to `onFile` (instead of the browser opening it). */
import { useEffect } from "react";

export function usePageDrop(onFile: (file: File) => void): void {
  useEffect(() => {
    const onDragOver = (e: DragEvent) => e.preventDefault();
    const onDrop = (e: DragEvent) => {
      if (e.defaultPrevented) return; // the drop zone took it
      e.preventDefault();
      const file = e.dataTransfer?.files[0];
      if (file) onFile(file);
    };
    window.addEventListener("dragover", onDragOver);
    window.addEventListener("drop", onDrop);
    return () => {
      window.removeEventListener("dragover", onDragOver);
      window.removeEventListener("drop", onDrop);
    };
  }, [onFile]);
}
