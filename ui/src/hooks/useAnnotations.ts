"use client";
/**
 * Annotations on the server: whether it keeps them (the Save section is hidden otherwise) and has a worklist, the
 * annotator's name (asked once, kept in this browser's localStorage), saving the edited mask with the photo, the
 * last save's answer, and fetching the next photo of the worklist.
 */
import { useCallback, useEffect, useState } from "react";
import {
  type AnnotationSaved,
  type AnnotationSettings,
  type AnnotationStatus,
  fetchAnnotationSettings,
  nextWorklistPhoto,
  saveAnnotation,
  type SaveRequest,
} from "@/lib/annotationsApi";
import { ApiError } from "@/lib/api";

const ANNOTATOR_KEY = "vessel-annotator";

function storedAnnotator(): string {
  try {
    return (typeof window !== "undefined" && window.localStorage.getItem(ANNOTATOR_KEY)) || "";
  } catch {
    return "";
  }
}

function message(e: unknown): string {
  return e instanceof ApiError ? `${e.message} (${e.status})` : e instanceof Error ? e.message : String(e);
}

const SERVER_API = { fetchAnnotationSettings, saveAnnotation, nextWorklistPhoto };

/** `api` is the server round trips (replaced in tests); keep it stable between renders. */
export function useAnnotations(api: typeof SERVER_API = SERVER_API) {
  const [settings, setSettings] = useState<AnnotationSettings | null>(null);
  const [annotator, setAnnotatorState] = useState("");
  const [status, setStatus] = useState<AnnotationStatus>("draft");
  const [note, setNote] = useState("");
  const [saving, setSaving] = useState(false);
  const [saved, setSaved] = useState<AnnotationSaved | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [worklistNote, setWorklistNote] = useState<string | null>(null);

  useEffect(() => {
    setAnnotatorState(storedAnnotator());
    api.fetchAnnotationSettings().then(setSettings, () => setSettings({ enabled: false, count: 0, worklist: false }));
  }, [api]);

  const setAnnotator = useCallback((name: string) => {
    setAnnotatorState(name);
    try {
      window.localStorage.setItem(ANNOTATOR_KEY, name.trim());
    } catch {
      // not kept: asked again next time
    }
  }, []);

  /** Saves; `build` makes the request's photo and PNGs (done here so the button shows progress meanwhile). */
  const save = useCallback(
    async (build: () => Promise<Omit<SaveRequest, "annotator" | "status" | "note">>) => {
      if (!annotator.trim()) {
        setError("Enter your name first: it is saved with the annotation.");
        return null;
      }
      setSaving(true);
      setError(null);
      try {
        const answer = await api.saveAnnotation({ ...(await build()), annotator: annotator.trim(), status, note });
        setSaved(answer);
        setSettings((s) => (s ? { ...s, count: answer.count } : s));
        return answer;
      } catch (e) {
        setError(`Saving the annotation failed: ${message(e)}`);
        return null;
      } finally {
        setSaving(false);
      }
    },
    [api, annotator, status, note],
  );

  /** The next unlabelled photo of the worklist, or null (with a note) when there is none. */
  const next = useCallback(async (): Promise<File | null> => {
    setWorklistNote(null);
    try {
      const photo = await api.nextWorklistPhoto();
      if (!photo) {
        setWorklistNote("The worklist is done: every photo has an annotation.");
        return null;
      }
      setWorklistNote(`${photo.remaining.toLocaleString("en-US")} photo${photo.remaining === 1 ? "" : "s"} without an annotation left.`);
      return photo.file;
    } catch (e) {
      setWorklistNote(`The worklist is not available: ${message(e)}`);
      return null;
    }
  }, [api]);

  /** A new photo: the last save's answer no longer applies. */
  const forget = useCallback(() => {
    setSaved(null);
    setError(null);
    setNote("");
  }, []);

  return { settings, annotator, setAnnotator, status, setStatus, note, setNote, saving, saved, error, save, next, worklistNote, forget };
}

export type Annotations = ReturnType<typeof useAnnotations>;
