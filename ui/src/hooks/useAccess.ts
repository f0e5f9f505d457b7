"use client";
/** The page's access state (key prompt, busy wait) as React state. */
import { useSyncExternalStore } from "react";
import { access, type AccessSnapshot, type AccessState } from "@/lib/access";

const SERVER_SNAPSHOT: AccessSnapshot = { keyRequest: null, busy: null, hasKey: false };

export function useAccess(state: AccessState = access): AccessSnapshot {
  return useSyncExternalStore(state.subscribe, state.getSnapshot, () => SERVER_SNAPSHOT);
}
