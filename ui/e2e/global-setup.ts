/**
 * Starts `e2e/serve_test_model.py` (a real vessel-serve with a freshly registered small model, serving ui/out)
 * unless VESSEL_E2E_URL names a server already running (with its own UI), waits until /health says ready, and
 * hands the URL to the tests through process.env.VESSEL_E2E_URL (and the store through VESSEL_E2E_STORE, so a
 * test can start a second server on the same model). Saved annotations go to a temporary folder of the run. Returns the teardown that stops the
 * server.
 *
 * Env: VESSEL_PYTHON (default ../.venv/bin/python, else python3), VESSEL_E2E_STARTUP_S (default 300).
 */
import { type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startServer, UI_DIR, waitForReady } from "./server";

export default async function globalSetup(): Promise<(() => Promise<void>) | void> {
  if (process.env.VESSEL_E2E_URL) {
    // That server serves its own UI (a container's, say): this checkout's build is not used.
    await waitForReady(process.env.VESSEL_E2E_URL, { exitCode: null } as ChildProcess, Date.now() + 60_000, "-");
    return;
  }
  if (!existsSync(path.join(UI_DIR, "out", "index.html"))) {
    throw new Error("ui/out is not built: run `npm run build` before `npm run test:e2e`");
  }
  const work = mkdtempSync(path.join(tmpdir(), "vessel-ui-e2e-"));
  const logPath = path.join(work, "server.log");
  const store = path.join(work, "mlflow");
  // Saved annotations go to a folder of this run (a server without the annotation routes ignores it).
  const annotations = path.join(work, "annotations");
  mkdirSync(annotations);
  const server = await startServer(["--store-dir", store], { VESSEL_ANNOTATIONS_DIR: annotations }, logPath);
  console.log(`[e2e] vessel-serve at ${server.url} (log: ${logPath})`);
  process.env.VESSEL_E2E_URL = server.url;
  process.env.VESSEL_E2E_STORE = store;

  return async () => {
    await server.stop();
    const results = path.join(UI_DIR, "test-results");
    mkdirSync(results, { recursive: true });
    copyFileSync(logPath, path.join(results, "server.log"));
    rmSync(work, { recursive: true, force: true });
  };
}
