import { describe, expect, it } from "vitest";
import { detailMessage } from "../src/lib/api";
import { checkFile, MAX_UPLOAD_BYTES } from "../src/lib/upload";

describe("checkFile", () => {
  it("accepts the API's image types by MIME type or extension", () => {
    expect(checkFile({ name: "a.jpg", type: "image/jpeg", size: 10 })).toEqual({ ok: true, mime: "image/jpeg", displayable: true });
    expect(checkFile({ name: "a.TIF", type: "", size: 10 })).toEqual({ ok: true, mime: "image/tiff", displayable: false });
    expect(checkFile({ name: "a.bmp", type: "image/x-ms-bmp", size: 10 })).toMatchObject({ ok: true, mime: "image/bmp" });
  });

  it("refuses other types, empty and oversized files with a message", () => {
    const text = checkFile({ name: "notes.txt", type: "text/plain", size: 10 });
    expect(text).toEqual({ ok: false, message: "notes.txt is a text/plain file. Choose a PNG, JPEG, TIFF, BMP or WebP photo." });
    expect(checkFile({ name: "a.png", type: "image/png", size: 0 })).toMatchObject({ ok: false, message: "a.png is empty." });
    expect(checkFile({ name: "a.png", type: "image/png", size: MAX_UPLOAD_BYTES + 1 })).toMatchObject({ ok: false });
  });
});

describe("detailMessage", () => {
  it("shows the server's detail, FastAPI validation lists, or the status", () => {
    expect(detailMessage({ detail: "not an image" }, 400)).toBe("not an image");
    expect(detailMessage({ detail: [{ loc: ["query", "threshold"], msg: "bad" }] }, 422)).toBe("query.threshold: bad");
    expect(detailMessage(null, 502, "Bad Gateway")).toBe("The server answered 502 Bad Gateway.");
  });
});
