"""Where the time of one ``POST /predict`` goes, stage by stage, in-process; two code trees side by side.

Each request's stages are timed in turn with ``time.perf_counter`` (wall) and ``time.process_time`` (CPU of the
whole process, all threads: what a shared machine cannot steal from the figure):

- ``parse``: the multipart body read into bytes (``app.upload.read_file_field``);
- ``decode``: the PNG to RGB (``app.decode.decode_image``); ``fov``: the field of view (``field_of_view``);
  ``scale``: the resampling factor (``Predictor.scale_for``);
- ``predict``: ``Predictor.predict_proba``, split into ``forward`` (the network's calls, the bare model's share)
  and ``predictor_rest`` (upload, windows, blending, resampling, the field applied);
- ``png_values``: the 8-bit probabilities; ``encode``: the response PNG (``encode_png``);
- ``run_prediction``: the worker's whole job as the server runs it (decode to encode), and ``asgi``: the full
  request through the FastAPI app in this process (middleware, multipart, the worker-pool hop, the response),
  no sockets; ``framework`` = ``asgi`` − ``run_prediction``;
- ``bare``: the network's forward on 1×3×512² alone, the yardstick of issue 20's target (``asgi`` ≤ 1.15 × it).

With ``--baseline DIR`` (a checkout of the old code, e.g. ``git archive <commit> | tar -x -C DIR``) one worker
process per code tree runs the same rounds, alternating round by round, so a busy neighbour hits both alike; the
table gives medians side by side and their ratio. ``--http`` adds real loopback ``POST /predict`` to one
``vessel-serve`` per tree, requests alternating. The response bodies of both trees are compared byte for byte
and pixel for pixel.

    python experiments/profile_predict.py --tracking-uri sqlite:///<store> --backend openvino-bf16 \\
        --baseline ../old-tree --requests 10 --rounds 6 --http
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = (
    "parse",
    "decode",
    "fov",
    "scale",
    "forward",
    "predictor_rest",
    "png_values",
    "encode",
    "stages_sum",
    "run_prediction",
    "asgi",
    "framework",
    "bare",
)


def worker_env(args: argparse.Namespace, scratch: Path) -> dict[str, str]:
    """The ``vessel-serve`` environment both the in-process app and the loopback servers run with."""
    sys.path.insert(0, str(REPO / "experiments"))
    from bench_serve import serve_env

    return serve_env(args.backend, args, args.tracking_uri, scratch) | {"HF_HUB_OFFLINE": "1"}


def upload_png(args: argparse.Namespace) -> bytes:
    """The PNG every request sends: ``--png``, or bench_serve's synthetic 512×512 fundus-like photo."""
    if args.png:
        return args.png.read_bytes()
    sys.path.insert(0, str(REPO / "experiments"))
    from bench_serve import synthetic_png

    return synthetic_png(512, 512)


class _Timer:
    """The served network, adding up the wall and CPU time of its forward calls."""

    def __init__(self, network: object) -> None:
        self.network = network
        self.wall = self.cpu = 0.0

    def __call__(self, batch: object) -> object:
        wall, cpu = time.perf_counter(), time.process_time()
        out = self.network(batch)  # type: ignore[operator]
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
        return out


def run_worker(args: argparse.Namespace) -> None:
    """One code tree in this process: load the app, then answer ``round`` lines on stdin with JSON samples."""
    import torch

    from app.decode import decode_image
    from app.measure import encode_png, field_of_view
    from app.model_manager import ModelManager
    from app.server import create_app
    from app.settings import Settings
    from app.upload import read_file_field
    from vessel_lightning.inference.predictor import Predictor, probability_png_values

    try:  # this tree
        from app.query import PredictOptions
    except ImportError:  # a --baseline tree from before the query parsing left app.measure
        from app.measure import PredictOptions  # type: ignore[attr-defined,no-redef]
    from app.pipeline import run_prediction

    try:  # this tree
        from tests.helpers.server import multipart
    except ImportError:  # a --baseline tree from before the tests were laid out by stage
        from tests.server_process import multipart  # type: ignore[no-redef]

    torch.set_num_threads(args.threads)
    settings = Settings.from_env()
    manager = ModelManager(settings)
    app = create_app(settings, manager)
    manager.start()
    if not manager.wait_ready(1800):
        raise SystemExit(f"model not ready: {manager.error}")
    model = manager.current
    timer = _Timer(model.predictor.network)
    timed = Predictor(
        model.predictor.network,
        model.predictor.contract,
        window=model.predictor.window,
        device=model.predictor.device,
    )
    timed.network = timer  # type: ignore[assignment]
    timed.threads = getattr(model.predictor, "threads", None)  # as served (the old tree has no such setting)
    png = upload_png(args)
    body, content_type = multipart(png)
    options = PredictOptions()
    threshold = model.predictor.threshold
    bare_input = torch.rand(1, 3, 512, 512)
    if hasattr(model.predictor, "ops"):  # this tree: CPU networks take arrays (the old tree's took tensors)
        bare_input = bare_input.numpy()
    loop = asyncio.new_event_loop()

    async def chunks() -> object:
        for start in range(0, len(body), 65536):  # uvicorn hands the body over in pieces of about this size
            yield body[start : start + 65536]

    async def asgi() -> tuple[int, bytes]:
        pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)]
        sent: list[dict] = []
        never = asyncio.Event()

        async def receive() -> dict:
            if pieces:
                chunk = pieces.pop(0)
                return {"type": "http.request", "body": chunk, "more_body": bool(pieces)}
            await never.wait()  # the client stays connected
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/predict",
            "raw_path": b"/predict",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "app": app,
        }
        await app(scope, receive, send)
        status = next(m["status"] for m in sent if m["type"] == "http.response.start")
        return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")

    def one_request() -> tuple[dict[str, tuple[float, float]], bytes]:
        times: dict[str, tuple[float, float]] = {}

        def stage(name: str, function: object, *call_args: object, **kwargs: object) -> object:
            wall, cpu = time.perf_counter(), time.process_time()
            out = function(*call_args, **kwargs)  # type: ignore[operator]
            times[name] = (time.perf_counter() - wall, time.process_time() - cpu)
            return out

        stage("parse", loop.run_until_complete, read_file_field(content_type, chunks(), 100 << 20))
        rgb = stage("decode", decode_image, png, settings.max_pixels)
        field = stage("fov", field_of_view, rgb, options.fov)
        scale = stage("scale", timed.scale_for, rgb, field)
        timer.wall = timer.cpu = 0.0
        prob = stage("predict", timed.predict_proba, rgb, field, scale=scale)
        times["forward"] = (timer.wall, timer.cpu)
        times["predictor_rest"] = tuple(
            p - f for p, f in zip(times.pop("predict"), times["forward"], strict=True)
        )
        values = stage("png_values", probability_png_values, prob)
        staged = stage("encode", encode_png, values)
        times["stages_sum"] = tuple(sum(v[i] for v in times.values()) for i in (0, 1))
        direct, _, _ = stage(
            "run_prediction", run_prediction, model, png, settings.max_pixels, options, threshold
        )
        status, served = stage("asgi", loop.run_until_complete, asgi())
        assert status == 200, (status, served[:300])
        assert served == direct == staged, "the stages, run_prediction and the app answered differently"
        times["framework"] = tuple(a - r for a, r in zip(times["asgi"], times["run_prediction"], strict=True))
        with torch.inference_mode():
            stage("bare", model.predictor.network, bare_input)
        return times, served

    for _ in range(2):  # warm-up: compiled shapes, caches, the pool's thread
        one_request()
    print(json.dumps({"ready": True, "backend": model.backend}), flush=True)
    for line in sys.stdin:
        if line.strip() != "round":
            break
        samples: dict[str, list[list[float]]] = {name: [] for name in STAGES}
        for _ in range(args.requests):
            times, served = one_request()
            for name, value in times.items():
                samples[name].append([round(v * 1000, 3) for v in value])
        digest = hashlib.sha256(served).hexdigest()
        if args.body_out:
            args.body_out.write_bytes(served)
        print(json.dumps({"samples": samples, "sha256": digest, "bytes": len(served)}), flush=True)
    manager.stop()


def start_worker(tree: Path, args: argparse.Namespace, env: dict[str, str], log: Path) -> subprocess.Popen:
    """A worker process running ``tree``'s code (cwd and PYTHONPATH), stdout a JSON-lines pipe."""
    command = [sys.executable, str(REPO / "experiments" / "profile_predict.py"), "--worker"]
    command += ["--requests", str(args.requests), "--threads", str(args.threads)]
    command += ["--body-out", str(log.with_suffix(".png"))]
    if args.png:
        command += ["--png", str(args.png)]
    full = os.environ | env | {"PYTHONPATH": str(tree)}
    return subprocess.Popen(
        command,
        cwd=tree,
        env=full,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        start_new_session=True,
    )


def read_json(process: subprocess.Popen, log: Path) -> dict:
    """The worker's next JSON line (log lines skipped); RuntimeError with the log's tail when it ended."""
    while True:
        line = process.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"worker ended:\n{log.read_text()[-3000:]}")
        if line.startswith("{"):
            return json.loads(line)


def median(values: list[float]) -> float:
    """The median, or NaN for none."""
    return statistics.median(values) if values else float("nan")


def profile_trees(trees: dict[str, Path], args: argparse.Namespace, scratch: Path) -> dict[str, dict]:
    """Stage samples per tree, rounds alternating between one worker process per tree."""
    env = worker_env(args, scratch)
    workers = {}
    # One at a time: loading both at once doubles the wait for neither's gain.
    for name, tree in trees.items():
        log = scratch / f"worker-{name}.log"
        workers[name] = (start_worker(tree, args, env, log), log)
        print(name, read_json(*workers[name]), flush=True)
    results: dict[str, dict] = {n: {"samples": {s: [] for s in STAGES}} for n in trees}
    try:
        for round_ in range(args.rounds):
            order = list(workers) if round_ % 2 == 0 else list(reversed(workers))
            for name in order:
                process, log = workers[name]
                process.stdin.write("round\n")  # type: ignore[union-attr]
                process.stdin.flush()  # type: ignore[union-attr]
                answer = read_json(process, log)
                for stage, values in answer["samples"].items():
                    results[name]["samples"][stage] += values
                results[name]["sha256"], results[name]["bytes"] = answer["sha256"], answer["bytes"]
                results[name]["body"] = log.with_suffix(".png").read_bytes()
    finally:
        for process, _ in workers.values():
            process.stdin.close()  # type: ignore[union-attr]
            process.wait(120)
    return results


def http_trees(
    trees: dict[str, Path], args: argparse.Namespace, scratch: Path, png: bytes
) -> dict[str, dict]:
    """Loopback ``POST /predict`` medians per tree (one ``vessel-serve`` each, requests alternating)."""
    import contextlib
    import http.client

    from tests.helpers.server import HOST, multipart, served

    body, content_type = multipart(png)
    env = worker_env(args, scratch)
    ports, out = {}, {}
    with contextlib.ExitStack() as stack:
        for name, tree in trees.items():
            tree_env = env | {"PYTHONPATH": str(tree)}
            ports[name] = stack.enter_context(
                served(tree_env, scratch / f"serve-{name}.log", 1800, cwd=tree)
            )[0]
            out[name] = {"wall_ms": [], "inference_ms": []}
        bodies = {}
        for index in range(args.http_requests + 2):
            for name, port in ports.items() if index % 2 == 0 else reversed(ports.items()):
                connection = http.client.HTTPConnection(HOST, port, timeout=600)
                start = time.perf_counter()
                connection.request("POST", "/predict", body, {"Content-Type": content_type})
                response = connection.getresponse()
                bodies[name] = response.read()
                wall = (time.perf_counter() - start) * 1000
                connection.close()
                assert response.status == 200, response.status
                if index >= 2:  # two warm-up requests each
                    out[name]["wall_ms"].append(wall)
                    out[name]["inference_ms"].append(float(response.getheader("X-Inference-Time-Ms")))
        for name in trees:
            out[name]["sha256"] = hashlib.sha256(bodies[name]).hexdigest()
            out[name]["body"] = bodies[name]
    return out


def same_image(first: bytes, second: bytes) -> bool:
    """Whether two PNG bodies hold the same pixels (bench_serve's check)."""
    sys.path.insert(0, str(REPO / "experiments"))
    from bench_serve import same_pixels

    return same_pixels(first, second)


def main() -> None:
    """Parse flags; a worker (``--worker``) or the orchestrator that prints the side-by-side table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--body-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", ""))
    parser.add_argument("--model-uri", default="models:/vessel-unet@champion")
    parser.add_argument("--backend", default="openvino-bf16")
    parser.add_argument("--calibration-dir", type=Path, help="for auto and the int8 backends")
    parser.add_argument("--cache-dir", type=Path, help="backend cache (default: a temporary folder)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--png", type=Path, help="the uploaded PNG (default: a synthetic 512×512 one)")
    parser.add_argument("--requests", type=int, default=10, help="requests per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--baseline", type=Path, help="a checkout of the old code, profiled alongside")
    parser.add_argument("--http", action="store_true", help="also time loopback POST /predict per tree")
    parser.add_argument("--http-requests", type=int, default=30)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return
    from vessel_lightning.hardware import read_cpu_features

    features = read_cpu_features()
    flags = sorted(f for f in features.flags if f.startswith(("avx", "amx", "fma")))
    print(json.dumps({"cpu": features.model, "cores": os.cpu_count(), "flags_that_matter": flags}))
    print(f"load average at start {os.getloadavg()}")
    trees = {"new": REPO} | ({"old": args.baseline.resolve()} if args.baseline else {})
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        args.cache_dir = args.cache_dir or scratch / "cache"
        results = profile_trees(trees, args, scratch)
        http = http_trees(trees, args, scratch, upload_png(args)) if args.http else {}
    names = list(trees)
    print(f"\nmedians over {args.rounds} rounds × {args.requests} requests, ms (wall | CPU of the process)")
    print(
        f"{'stage':16}"
        + "".join(f"{n + ' wall':>12}{n + ' CPU':>11}" for n in names)
        + (f"{'new/old wall':>14}{'new/old CPU':>13}" if len(names) == 2 else "")
    )
    table = {}
    for stage in STAGES:
        row = {n: [median([s[i] for s in results[n]["samples"][stage]]) for i in (0, 1)] for n in names}
        table[stage] = row
        line = f"{stage:16}" + "".join(f"{row[n][0]:12.2f}{row[n][1]:11.2f}" for n in names)
        if len(names) == 2:
            line += "".join(
                f"{row['new'][i] / row['old'][i]:>13.2f}" if row["old"][i] else f"{'-':>13}" for i in (0, 1)
            )
        print(line)
    for n in names:
        bare, asgi = table["bare"][n][0], table["asgi"][n][0]
        print(
            f"{n}: asgi / bare {asgi / bare:.2f} (wall), {table['asgi'][n][1] / table['bare'][n][1]:.2f} (CPU)"
        )
    if len(names) == 2:
        new, old = results["new"], results["old"]
        print(
            f"response PNG: {new['bytes']} vs {old['bytes']} bytes, same bytes {new['sha256'] == old['sha256']}, "
            f"same pixels {same_image(new['body'], old['body'])}"
        )
    for n, found in http.items():
        wall, inference = median(found["wall_ms"]), median(found["inference_ms"])
        print(
            f"{n}: loopback POST /predict median {wall:.1f} ms (model time in the server {inference:.1f} ms), "
            f"{wall / table['bare'][n][0]:.2f}× the bare forward"
        )
    if len(http) == 2:
        print(
            "loopback bodies: same bytes",
            http["new"]["sha256"] == http["old"]["sha256"],
            "| same pixels",
            same_image(http["new"]["body"], http["old"]["body"]),
        )
    print(f"load average at end {os.getloadavg()}")
    if args.out:
        for found in (*http.values(), *results.values()):
            found.pop("body", None)
        args.out.write_text(json.dumps({"table": table, "http": http, "raw": results}, indent=1))


if __name__ == "__main__":
    main()
