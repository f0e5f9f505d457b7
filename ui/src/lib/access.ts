/**
 * What every API request shares: the API key (asked from the user once when the server answers 401/403, kept for
 * this tab only in sessionStorage, sent as `X-API-Key`) and the "server busy" wait between retries of a 503, both
 * observable by the page (the key prompt and the busy notice subscribe to {@link access}).
 */

export const API_KEY_HEADER = "X-API-Key";
const STORAGE_KEY = "vessel-api-key";

/** Why the key is asked: none was sent, or the one sent was refused. */
export type KeyReason = "missing" | "wrong";

export interface BusyState {
  /** Whole seconds until the next attempt. */
  secondsLeft: number;
  /** The retry about to be made (1-based) and how many are allowed. */
  retry: number;
  maxRetries: number;
}

export interface AccessSnapshot {
  keyRequest: { reason: KeyReason; detail: string } | null;
  busy: BusyState | null;
  hasKey: boolean;
}

/** Where the key is kept: a Storage (sessionStorage in the page) or nothing (tests, prerendering). */
type KeyStorage = Pick<Storage, "getItem" | "setItem" | "removeItem"> | null;

export class AccessState {
  private snapshot: AccessSnapshot;
  private listeners = new Set<() => void>();
  private waiters: ((key: string | null) => void)[] = [];

  constructor(private storage: KeyStorage) {
    this.snapshot = { keyRequest: null, busy: null, hasKey: !!this.key() };
  }

  /** The key to send, or null. */
  key(): string | null {
    try {
      return this.storage?.getItem(STORAGE_KEY) || null;
    } catch {
      return null; // storage refused (privacy settings): behave as if no key was given
    }
  }

  /** Headers carrying the key, when there is one. */
  headers(): Record<string, string> {
    const key = this.key();
    return key ? { [API_KEY_HEADER]: key } : {};
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getSnapshot = (): AccessSnapshot => this.snapshot;

  private update(change: Partial<AccessSnapshot>): void {
    this.snapshot = { ...this.snapshot, ...change };
    for (const listener of this.listeners) listener();
  }

  /**
   * Ask the user for the key; requests refused at the same time share one prompt. Resolves the key given, or null
   * when the user declined.
   */
  askForKey(reason: KeyReason, detail: string): Promise<string | null> {
    if (!this.snapshot.keyRequest) this.update({ keyRequest: { reason, detail } });
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** The user's answer to the prompt: a key (kept for this tab) or null to decline. */
  answerKey(key: string | null): void {
    const given = key?.trim() || null;
    if (given) {
      try {
        this.storage?.setItem(STORAGE_KEY, given);
      } catch {
        // not kept: this tab asks again next time
      }
    }
    const waiters = this.waiters;
    this.waiters = [];
    this.update({ keyRequest: null, hasKey: !!this.key() });
    for (const resolve of waiters) resolve(given);
  }

  forgetKey(): void {
    try {
      this.storage?.removeItem(STORAGE_KEY);
    } catch {
      // nothing kept
    }
    this.update({ hasKey: false });
  }

  setBusy(busy: BusyState | null): void {
    this.update({ busy });
  }
}

function tabStorage(): KeyStorage {
  try {
    return typeof window !== "undefined" ? window.sessionStorage : null;
  } catch {
    return null;
  }
}

/** The page's one access state. */
export const access = new AccessState(tabStorage());
