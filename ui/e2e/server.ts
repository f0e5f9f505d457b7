/**
 * Starting and stopping a real vessel-serve for the end-to-end tests: `e2e/serve_test_model.py` registers a small
 * model in a fresh store (or serves an existing one) and prints its URL; we wait for /health to say ready.
 *
 * Env: VESSEL_PYTHON (default ../.venv/bin/python, else python3), VESSEL_E2E_STARTUP_S (default 300).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import path from "node:path";

export const UI_DIR = path.resolve(__dirname, "..");

export interface RunningServer {
  url: string;
  logPath: string;
  stop: () => Promise<void>;
}

function pythonExecutable(): string {
  if (process.env.VESSEL_PYTHON) return process.env.VESSEL_PYTHON;
  const venv = path.resolve(UI_DIR, "..", ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}

export async function waitForReady(url: string, child: ChildProcess, deadline: number, log: string): Promise<void> {
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

/**
 * Starts `serve_test_model.py` with `args` and extra `env`, writing its output to `logPath`; resolves once the
 * server is ready.
 */
export async function startServer(args: string[], env: Record<string, string>, logPath: string): Promise<RunningServer> {
  const log = createWriteStream(logPath);
  const child = spawn(pythonExecutable(), [path.join(UI_DIR, "e2e", "serve_test_model.py"), ...args], {
    cwd: UI_DIR,
    env: { ...process.env, VESSEL_UI_DIR: path.join(UI_DIR, "out"), PYTHONUNBUFFERED: "1", ...env },
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
  await waitForReady(url, child, deadline, logPath);
  const stop = async () => {
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
  };
  return { url, logPath, stop };
}

/**
 * A second server on the store the global setup registered its model in (no second registration), with `env`
 * added (e.g. an API key); a fresh store when the tests run against an outside server.
 */
export async function startSecondServer(env: Record<string, string>, logPath: string): Promise<RunningServer> {
  const store = process.env.VESSEL_E2E_STORE;
  if (store) {
    return startServer(["--use-existing-store"], { ...env, MLFLOW_TRACKING_URI: `sqlite:///${path.join(store, "mlflow.db")}` }, logPath);
  }
  return startServer([], env, logPath);
}

/** The real data (VESSEL_DATA_DIR, default ../../shared/data from ui/) and the photo most tests open. */
export const DATA_DIR = path.resolve(UI_DIR, process.env.VESSEL_DATA_DIR ?? "../../shared/data");
export const CHASE_PHOTO = path.join(DATA_DIR, "CHASE_DB1", "images", "Image_01L.jpg");

/** The URL of the server the global setup started (VESSEL_E2E_URL). */
export function baseUrl(): string {
  const url = process.env.VESSEL_E2E_URL;
  if (!url) throw new Error("VESSEL_E2E_URL is not set: the global setup did not start a server");
  return url;
}
