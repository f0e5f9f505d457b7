/**
 * One API request under the page's rules: the API key is sent when there is one and asked for when the server
 * answers 401/403; a 503 that names a `Retry-After` (the server is busy or still loading the model) is retried
 * after that many seconds, a bounded number of times, with the wait shown to the user. Anything else is returned
 * to the caller as it came.
 */
import type { AccessState } from "./access";

/** The parts of an answer the rules read. */
export interface Answer {
  status: number;
  /** The `Retry-After` header, or null. */
  retryAfter: string | null;
  /** The server's message (its `detail`), for the key prompt. */
  detail: string;
}

export interface RetryPolicy {
  /** Retries of a 503 after the first attempt. */
  maxRetries: number;
  /** Longest wait honoured (s); a longer Retry-After is shortened to this. */
  maxWaitS: number;
  /** Retry 503s at all (off for /model, whose caller retries on its own schedule). */
  retryBusy: boolean;
}

export const DEFAULT_POLICY: RetryPolicy = { maxRetries: 4, maxWaitS: 30, retryBusy: true };

/**
 * Seconds to wait from a `Retry-After` value: delta-seconds or an HTTP date (RFC 9110 §10.2.3); null when absent
 * or unreadable.
 */
export function retryAfterSeconds(header: string | null, now: number = Date.now()): number | null {
  if (header === null) return null;
  const text = header.trim();
  if (/^\d+$/.test(text)) return Number(text);
  if (!/[a-z]/i.test(text)) return null; // an HTTP date names its month; Date.parse would read "-3" as a year
  const at = Date.parse(text);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - now) / 1000));
}

/** Resolves after `ms`, or rejects with an AbortError when `signal` aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new DOMException("Request cancelled", "AbortError"));
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new DOMException("Request cancelled", "AbortError"));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Waits `seconds`, counting down on `access.busy` second by second. */
async function waitBusy(access: AccessState, seconds: number, retry: number, maxRetries: number, signal?: AbortSignal) {
  try {
    for (let left = seconds; left > 0; left--) {
      access.setBusy({ secondsLeft: left, retry, maxRetries });
      await sleep(1000, signal);
    }
  } finally {
    access.setBusy(null);
  }
}

/**
 * Calls `attempt(headers)` until the answer is final under the rules above; returns the last answer (the caller
 * turns a non-2xx into its error). Rejects with an AbortError when `signal` aborts during a wait.
 */
export async function withAccess<A extends Answer>(
  access: AccessState,
  attempt: (headers: Record<string, string>) => Promise<A>,
  options: { signal?: AbortSignal; policy?: Partial<RetryPolicy> } = {},
): Promise<A> {
  const policy = { ...DEFAULT_POLICY, ...options.policy };
  let retries = 0;
  for (;;) {
    const sentKey = access.key();
    const answer = await attempt(access.headers());
    if (answer.status === 401 || answer.status === 403) {
      const current = access.key();
      if (current && current !== sentKey) continue; // a key was given meanwhile (another request's prompt)
      const given = await access.askForKey(sentKey ? "wrong" : "missing", answer.detail);
      if (given === null) return answer;
      continue;
    }
    if (answer.status === 503 && policy.retryBusy && retries < policy.maxRetries) {
      const seconds = retryAfterSeconds(answer.retryAfter);
      if (seconds !== null) {
        retries++;
        await waitBusy(access, Math.max(1, Math.min(seconds, policy.maxWaitS)), retries, policy.maxRetries, options.signal);
        continue;
      }
    }
    return answer;
  }
}
