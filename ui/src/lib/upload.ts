/** Which files the UI sends to `POST /predict`, and the messages for the ones it refuses. */

/** The API accepts these; the browser can display all but TIFF. */
export const ACCEPTED_TYPES: Record<string, { label: string; extensions: string[]; displayable: boolean }> = {
  "image/png": { label: "PNG", extensions: [".png"], displayable: true },
  "image/jpeg": { label: "JPEG", extensions: [".jpg", ".jpeg", ".jpe", ".jfif"], displayable: true },
  "image/tiff": { label: "TIFF", extensions: [".tif", ".tiff"], displayable: false },
  "image/bmp": { label: "BMP", extensions: [".bmp"], displayable: true },
  "image/webp": { label: "WebP", extensions: [".webp"], displayable: true },
};

const MIME_ALIASES: Record<string, string> = { "image/x-ms-bmp": "image/bmp", "image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg" };

/** For the file picker's `accept` attribute. */
export const ACCEPT_ATTRIBUTE = [
  ...Object.keys(ACCEPTED_TYPES),
  ...Object.values(ACCEPTED_TYPES).flatMap((t) => t.extensions),
].join(",");

/** The server's default upload limit (VESSEL_MAX_UPLOAD_MB=20); a server set lower answers 413 with its message. */
export const MAX_UPLOAD_BYTES = 20 * 1024 * 1024;

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

export type FileCheck = { ok: true; mime: string; displayable: boolean } | { ok: false; message: string };

/** Whether `file` (name, MIME type, size) is one the API accepts; the MIME type wins, else the extension. */
export function checkFile(file: { name: string; type: string; size: number }): FileCheck {
  const labels = Object.values(ACCEPTED_TYPES).map((t) => t.label);
  const list = `${labels.slice(0, -1).join(", ")} or ${labels[labels.length - 1]}`;
  const type = MIME_ALIASES[file.type] ?? file.type;
  const extension = /\.[^.]+$/.exec(file.name.toLowerCase())?.[0] ?? "";
  const byExtension = Object.entries(ACCEPTED_TYPES).find(([, t]) => t.extensions.includes(extension))?.[0];
  const mime = ACCEPTED_TYPES[type] ? type : !type && byExtension ? byExtension : null;
  if (!mime) {
    const what = file.type ? `a ${file.type} file` : "not a recognised image";
    return { ok: false, message: `${file.name} is ${what}. Choose a ${list} photo.` };
  }
  if (file.size === 0) return { ok: false, message: `${file.name} is empty.` };
  if (file.size > MAX_UPLOAD_BYTES) {
    return {
      ok: false,
      message: `${file.name} is ${formatBytes(file.size)}; the limit is ${formatBytes(MAX_UPLOAD_BYTES)}.`,
    };
  }
  return { ok: true, mime, displayable: ACCEPTED_TYPES[mime].displayable };
}
