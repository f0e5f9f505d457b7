/**
 * Starts `e2e/serve_test_model.py` (a real vessel-serve with a freshly registered small model) unless
 * VESSEL_E2E_URL names a server already running, waits until /health says ready, and hands the URL to the tests
 * through process.env.VESSEL_E2E_URL. Returns the teardown that stops the server.
 *
 * Env: VESSEL_PYTHON (default ../.venv/bin/python, else python3), VESSEL_E2E_STARTUP_S (default 300).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { copyFileSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

const UI_DIR = path.resolve(__dirname, "..");

function pythonExecutable(): string {
  if (process.env.VESSEL_PYTHON) return process.env.VESSEL_PYTHON;
  const venv = path.resolve(UI_DIR, "..", ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}

async function waitForReady(url: string, child: ChildProcess, deadline: number, log: string): Promise<void> {
  let last = "no answer";
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`vessel-serve exited with ${child.exitCode}; see ${log}`);
    try {
      const health = (await (await fetch(`${url}/health`)).json()) as { ready?: boolean };
      if (health.ready) return;
      last = JSON.stringify(health);
    } catch (error) {
      last = String(error);
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`vessel-serve at ${url} was not ready in time (last: ${last}); see ${log}`);
}

export default async function globalSetup(): Promise<(() => Promise<void>) | void> {
  if (!existsSync(path.join(UI_DIR, "out", "index.html"))) {
    throw new Error("ui/out is not built: run `npm run build` before `npm run test:e2e`");
  }
  if (process.env.VESSEL_E2E_URL) {
    await waitForReady(process.env.VESSEL_E2E_URL, { exitCode: null } as ChildProcess, Date.now() + 60_000, "-");
    return;
  }
  const work = mkdtempSync(path.join(tmpdir(), "vessel-ui-e2e-"));
  const logPath = path.join(work, "server.log");
  const log = createWriteStream(logPath);
  const child = spawn(pythonExecutable(), [path.join(UI_DIR, "e2e", "serve_test_model.py"), "--store-dir", path.join(work, "mlflow")], {
    cwd: UI_DIR,
    env: { ...process.env, VESSEL_UI_DIR: path.join(UI_DIR, "out"), PYTHONUNBUFFERED: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stderr?.pipe(log);
  const startup = Number(process.env.VESSEL_E2E_STARTUP_S || 300) * 1000;
  const deadline = Date.now() + startup;
  const url = await new Promise<string>((resolve, reject) => {
    let buffered = "";
    const timer = setTimeout(() => reject(new Error(`no server URL within ${startup / 1000} s; see ${logPath}`)), startup);
    child.stdout?.on("data", (chunk: Buffer) => {
      log.write(chunk);
      buffered += chunk.toString();
      const match = /VESSEL_E2E_URL=(\S+)/.exec(buffered);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the test server launcher exited with ${code}; see ${logPath}`));
    });
  });
  console.log(`[e2e] vessel-serve at ${url} (log: ${logPath})`);
  await waitForReady(url, child, deadline, logPath);
  process.env.VESSEL_E2E_URL = url;

  return async () => {
    if (child.exitCode === null) {
      child.kill("SIGTERM");
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          child.kill("SIGKILL");
          resolve();
        }, 10_000);
        child.on("exit", () => {
          clearTimeout(force);
          resolve();
        });
      });
    }
    await new Promise<void>((resolve) => log.end(() => resolve()));
    const results = path.join(UI_DIR, "test-results");
    mkdirSync(results, { recursive: true });
    copyFileSync(logPath, path.join(results, "server.log"));
    rmSync(work, { recursive: true, force: true });
  };
}
