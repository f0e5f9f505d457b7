import { afterEach, describe, expect, it, vi } from "vitest";
import { fetchAnnotationSettings, nextWorklistPhoto, saveAnnotation } from "../src/lib/annotationsApi";

afterEach(() => vi.unstubAllGlobals());

const json = (status: number, body: unknown) => new Response(JSON.stringify(body), { status });

describe("annotations API client", () => {
  it("a server without the annotation routes keeps no annotations", async () => {
    vi.stubGlobal("fetch", vi.fn().mockResolvedValue(json(404, { detail: "Not Found" })));
    expect(await fetchAnnotationSettings()).toEqual({ enabled: false, count: 0, worklist: false });
  });

  it("sends the photo, the masks and the fields the contract names", async () => {
    const fetch = vi.fn().mockResolvedValue(json(201, { id: "f".repeat(64), version: 1, count: 1 }));
    vi.stubGlobal("fetch", fetch);
    await saveAnnotation({
      photo: new File(["jpeg"], "eye.jpg", { type: "image/jpeg" }),
      maskPng: new Uint8Array([137, 80]),
      modelMaskPng: null,
      roi: '{"type":"Polygon","coordinates":[[[0,0],[5,0],[5,5],[0,0]]]}',
      annotator: "Ana",
      status: "draft",
      threshold: 0.42,
      note: "  ",
    });
    const [url, init] = fetch.mock.calls[0] as [string, RequestInit];
    expect(url).toBe("/annotations");
    const form = init.body as FormData;
    expect((form.get("file") as File).name).toBe("eye.jpg");
    expect((form.get("annotation") as File).type).toBe("image/png");
    expect(form.get("model_mask")).toBeNull();
    expect([form.get("roi"), form.get("annotator"), form.get("status"), form.get("threshold"), form.get("note")]).toEqual([
      '{"type":"Polygon","coordinates":[[[0,0],[5,0],[5,5],[0,0]]]}',
      "Ana",
      "draft",
      "0.42",
      null,
    ]);
  });

  it("the worklist: the next photo as a File, null when done", async () => {
    const fetch = vi
      .fn()
      .mockResolvedValueOnce(json(200, { name: "a b.JPG", remaining: 3 }))
      .mockResolvedValueOnce(new Response(new Blob(["jpeg"]), { status: 200 }))
      .mockResolvedValueOnce(json(404, { detail: "worklist done" }));
    vi.stubGlobal("fetch", fetch);
    const next = await nextWorklistPhoto();
    expect(fetch.mock.calls[1][0]).toBe("/worklist/photos/a%20b.JPG");
    expect([next!.file.name, next!.file.type, next!.remaining]).toEqual(["a b.JPG", "image/jpeg", 3]);
    expect(await nextWorklistPhoto()).toBeNull();
  });
});
