"""Bounded load test of ``vessel-serve`` on loopback: 1, 4 and 16 concurrent clients, each stage timed; or bursts.

Starts the server itself (``python -m app.server`` on a free 127.0.0.1 port; a temporary random-weight B0 store
unless ``--tracking-uri`` is given), posts a 512×512 PNG (or ``--photo``) from N client threads with keep-alive
connections for ``--seconds`` per stage, and reports requests/s, p50/p99 latency, errors, the slowest ``/health``
seen under load, and the server's RSS against the number of requests served. Stops the server when done.

With ``--burst 32,64`` it instead fires each burst of N clients at the same moment (one upload each, released
together) and prints how many got each status and the p50/p95/max wait for an answer.

    python experiments/load_test.py --seconds 60 --backend onnx
    python experiments/load_test.py --burst 32,64 --backend onnx --photo "$VESSEL_DATA_DIR/CHASE_DB1/Image_01L.jpg"
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import percentile, synthetic_png, temporary_registry  # a sibling script, not a package

from tests.helpers.server import HOST, burst, multipart, served


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_stage(
    port: int, pid: int, clients: int, seconds: float, body: bytes, content_type: str
) -> dict[str, object]:
    """``clients`` threads posting ``body`` for ``seconds``; latencies, errors, /health and RSS samples."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client() -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=120)
        while time.monotonic() < stop_at:
            start = time.perf_counter()
            try:
                connection.request("POST", "/predict", body=body, headers={"Content-Type": content_type})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
                error = f"HTTP {response.status}"
            except OSError as exc:
                ok, error = False, type(exc).__name__
                connection.close()
                connection = http.client.HTTPConnection(HOST, port, timeout=120)
            with lock:
                (latencies.append((time.perf_counter() - start) * 1000) if ok else errors.append(error))
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    rss_start = rss_mb(pid)
    started = time.monotonic()
    for thread in threads:
        thread.start()
    health_ms: list[float] = []
    rss_samples: list[tuple[int, float]] = []  # (requests served in this stage, RSS MB)
    while any(t.is_alive() for t in threads):
        with lock:
            rss_samples.append((len(latencies), rss_mb(pid)))
        start = time.perf_counter()
        connection = http.client.HTTPConnection(HOST, port, timeout=30)
        connection.request("GET", "/health")
        connection.getresponse().read()
        connection.close()
        health_ms.append((time.perf_counter() - start) * 1000)
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": len(latencies),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "requests_per_s": round(len(latencies) / elapsed, 2),
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "health_max_ms": round(max(health_ms), 1) if health_ms else None,
        "rss_mb_start": round(rss_start, 1),
        "rss_mb_end": round(rss_mb(pid), 1),
        "rss_samples": [*rss_samples, (len(latencies), rss_mb(pid))],
    }


def run_burst(port: int, clients: int, body: bytes, content_type: str) -> dict[str, object]:
    """``clients`` uploads released at the same moment: statuses and the waits for an answer, in seconds."""
    results = burst(port, body, content_type, clients)
    statuses = [status for status, *_ in results]
    waits = [seconds for status, seconds, *_ in results if status]
    refusals = [_detail(answer) for status, _, _, answer in results if status != 200]
    return {
        "burst": clients,
        "statuses": {str(status): statuses.count(status) for status in sorted(set(statuses))},
        "p50_s": round(statistics.median(waits), 2) if waits else None,
        "p95_s": round(percentile(waits, 0.95), 2) if waits else None,
        "max_s": round(max(waits), 2) if waits else None,
        "refusals": {detail: refusals.count(detail) for detail in sorted(set(refusals))},
    }


def _detail(answer: bytes) -> str:
    try:
        return str(json.loads(answer)["detail"])
    except (ValueError, KeyError, TypeError):
        return answer[:200].decode(errors="replace")


def main() -> None:
    """Run the stages (or bursts) and print one JSON line per stage plus a summary."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of each stage (default 60)")
    parser.add_argument("--clients", default="1,4,16", help="comma-separated concurrency levels")
    parser.add_argument("--backend", default="onnx", choices=("torch", "onnx", "onnx-int8"))
    parser.add_argument("--tracking-uri", help="store with the model (default: a temporary random B0)")
    parser.add_argument("--model-uri", default="models:/vessel-unet@champion")
    parser.add_argument("--calibration-dir", type=Path)
    parser.add_argument("--size", type=int, default=512, help="side of the square test PNG")
    parser.add_argument("--photo", type=Path, help="send this image file instead of the test PNG")
    parser.add_argument("--burst", help="comma-separated burst sizes: N clients at once, one upload each")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    photo = args.photo.read_bytes() if args.photo else synthetic_png(args.size, args.size)
    body, content_type = multipart(photo)
    stages = []
    with tempfile.TemporaryDirectory() as scratch:
        env = {
            "MLFLOW_TRACKING_URI": args.tracking_uri or temporary_registry(Path(scratch)),
            "VESSEL_BACKEND": args.backend,
            "VESSEL_MODEL_URI": args.model_uri,
            "VESSEL_RELOAD_INTERVAL_S": "0",
        }
        if args.calibration_dir:
            env["VESSEL_CALIBRATION_DIR"] = str(args.calibration_dir)
        with served(env, Path(scratch) / "server.log") as (port, process):
            if args.burst:
                for clients in (int(c) for c in args.burst.split(",") if c):
                    print(
                        json.dumps(run_burst(port, clients, body, content_type) | {"photo_bytes": len(photo)})
                    )
                return
            for clients in (int(c) for c in args.clients.split(",") if c):
                stages.append(run_stage(port, process.pid, clients, args.seconds, body, content_type))
                print(json.dumps({k: v for k, v in stages[-1].items() if k != "rss_samples"}), flush=True)
    total = sum(s["requests"] for s in stages)
    # RSS against requests served so far, across all stages: flat means no growth per request.
    samples, done = [], 0
    for stage in stages:
        samples += [(done + n, mb) for n, mb in stage["rss_samples"]]
        done += stage["requests"]
    warm = next(((n, mb) for n, mb in samples if n >= 100), samples[0] if samples else (0, float("nan")))
    last = samples[-1] if samples else (0, float("nan"))
    print(
        json.dumps(
            {
                "backend": args.backend,
                "total_requests": total,
                "total_errors": sum(s["errors"] for s in stages),
                "rss_mb_first": stages[0]["rss_mb_start"] if stages else None,
                "rss_mb_after_request": {str(warm[0]): round(warm[1], 1), str(last[0]): round(last[1], 1)},
                "rss_growth_mb_per_1000_requests": round(
                    (last[1] - warm[1]) / max(last[0] - warm[0], 1) * 1000, 2
                ),
                "cores": os.cpu_count(),
                "load_average": os.getloadavg(),
            }
        )
    )
    if args.out:
        args.out.write_text(json.dumps(stages, indent=2))


if __name__ == "__main__":
    main()
