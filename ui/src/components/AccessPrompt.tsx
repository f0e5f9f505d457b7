"use client";
/**
 * Asks for the server's API key when a request was refused for the lack of it (or a wrong one), once for all the
 * requests waiting; the key is kept for this tab only. Also shows "server busy, retrying in N s" while a 503 waits.
 */
import { type FormEvent, useEffect, useRef, useState } from "react";
import { useAccess } from "@/hooks/useAccess";
import { access } from "@/lib/access";

export default function AccessPrompt() {
  const { keyRequest, busy } = useAccess();
  const [key, setKey] = useState("");
  const input = useRef<HTMLInputElement>(null);

  useEffect(() => {
    if (keyRequest) input.current?.focus();
  }, [keyRequest]);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    access.answerKey(key);
    setKey("");
  };

  return (
    <>
      {busy && (
        <p className="notice busy" role="status" data-testid="busy-notice">
          Server busy, retrying in {busy.secondsLeft} s{" "}
          <span className="muted">
            (retry {busy.retry} of {busy.maxRetries})
          </span>
        </p>
      )}
      {keyRequest && (
        <form className="key-prompt" role="dialog" aria-labelledby="key-heading" onSubmit={submit} data-testid="key-prompt">
          <h2 id="key-heading">{keyRequest.reason === "wrong" ? "That API key was refused" : "This server needs an API key"}</h2>
          <p className="small muted">{keyRequest.detail}</p>
          <label htmlFor="api-key">API key</label>
          <input
            ref={input}
            id="api-key"
            data-testid="api-key"
            type="password"
            autoComplete="off"
            value={key}
            onChange={(e) => setKey(e.target.value)}
          />
          <p className="small muted">Kept in this tab only, and sent with every request to this server.</p>
          <div className="row">
            <button type="submit" className="primary" disabled={!key.trim()}>
              Use key
            </button>
            <button type="button" onClick={() => access.answerKey(null)}>
              Cancel
            </button>
          </div>
        </form>
      )}
    </>
  );
}
