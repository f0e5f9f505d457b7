"""Serving speed per backend × precision, side by side in one run: the bare network and end-to-end ``POST /predict``.

Every backend this CPU offers (``auto``'s candidates, see ``vessel_lightning.inference.auto``, plus
``auto`` itself) is built once into a shared cache. Bare: each network's forward on 1×3×512² and the forward
calls the Predictor makes on a full-resolution photo (``--photo``, default a synthetic 999×960 CHASE_DB1-sized
one), timed in one process, variants interleaved round by round. End to end: one ``vessel-serve`` process per
backend, all started first, then ``POST /predict`` of a 512×512 PNG and of the full-resolution photo sent to each
in turn (real HTTP on loopback), so a busy neighbour slows every variant alike; peak RSS (VmHWM) per server.
Medians and p95 throughout. The header prints the CPU model and flags and the CPU's peak GFLOP/s from them
(cores × SIMD lanes × 2 (FMA) × 2 FMA units × clock; bf16 and int8: AVX-512 dot products 2× and 4× that, AMX
1024 bf16 / 2048 int8 operations per cycle per core), and each backend's achieved GFLOP/s (the model's FLOP at 512²
over its bare median) as a share of the fp32 peak and of its own precision's peak.

Without ``--tracking-uri`` a temporary store with a random-weight B0 (contract size 512) is used: fine for
speed, meaningless for accuracy. int8 and bf16 need ``--calibration-dir`` (real photos).

    python experiments/bench_serve.py --tracking-uri sqlite:///runs/mlflow/mlflow.db \\
        --calibration-dir <data>/CHASE_DB1/images --photo <data>/CHASE_DB1/images/Image_11L.jpg
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    pass

FMA_UNITS = 2  # per core, as on Xeon Scalable and EPYC server parts; stated with the figures


def temporary_registry(root: Path, size: int = 512) -> str:
    """A SQLite store in ``root`` with one random-weight B0 registered as ``vessel-unet@champion``."""
    import mlflow
    import torch

    from vessel_lightning.contract import ModelContract
    from vessel_lightning.models.networks import build_network
    from vessel_lightning.tracking.model_logging import log_network
    from vessel_lightning.tracking.registry import register
    from vessel_lightning.tracking.store import ensure_experiment, ensure_store

    uri = f"sqlite:///{root / 'mlflow.db'}"
    ensure_store(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id=ensure_experiment(mlflow.get_tracking_uri(), "bench-serve"))
    torch.manual_seed(0)
    network = build_network(encoder_name="efficientnet-b0", encoder_weights=None).eval()
    contract = ModelContract(encoder="efficientnet-b0", size=(size, size), threshold=0.5, dataset="random")
    with mlflow.start_run() as run:
        log_network(network, {"encoder_name": "efficientnet-b0"}, contract, run.info.run_id)
    register(run.info.run_id, alias="champion")
    return uri


def synthetic_png(height: int, width: int, seed: int = 0) -> bytes:
    """A fundus-like test photo (reddish disc with noise) as PNG bytes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    disc = ((yy - height / 2) ** 2 + (xx - width / 2) ** 2) < (min(height, width) / 2.1) ** 2
    rgb = np.clip(np.array([180, 80, 40]) * disc[..., None] + rng.normal(0, 10, (height, width, 3)), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def timed(
    functions: dict[str, Callable[[], object]], repeats: int, warmup: int = 2
) -> dict[str, list[float]]:
    """Wall times in ms of each function, called in turn (so a noisy neighbour hits all of them alike)."""
    for _ in range(warmup):
        for function in functions.values():
            function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append((time.perf_counter() - start) * 1000)
    return times


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank); NaN for no values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] if ordered else float("nan")


def summary(times: list[float]) -> dict[str, float]:
    """Median and p95 in ms."""
    return {"median_ms": round(statistics.median(times), 1), "p95_ms": round(percentile(times, 0.95), 1)}


class TimedNetwork:
    """Wraps the served network and adds up the wall time of its forward calls (the bare model's share)."""

    def __init__(self, network: Callable) -> None:
        self.network = network
        self.ms = 0.0
        self.windows = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = self.network(batch)
        self.ms += (time.perf_counter() - start) * 1000
        self.windows += batch.shape[0]
        return out


def cpu_clock_ghz() -> float:
    """The clock from ``/proc/cpuinfo`` (``cpu MHz`` of the first CPU), else 0."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("cpu mhz"):
                return float(line.split(":")[1]) / 1000
    except (OSError, ValueError):
        pass
    return 0.0


def peak_gflops(flags: frozenset[str], cores: int, ghz: float) -> dict[str, float]:
    """Peak GFLOP/s (int8: GOP/s) per precision from the CPU's flags, cores and clock (see the module docstring)."""
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    fp32 = cores * lanes * 2 * FMA_UNITS * ghz
    peaks = {"fp32": fp32}
    if "amx_bf16" in flags:
        peaks["bf16"] = cores * 1024 * ghz
    elif "avx512_bf16" in flags:
        peaks["bf16"] = 2 * fp32
    if "amx_int8" in flags:
        peaks["int8"] = cores * 2048 * ghz
    elif {"avx512_vnni", "avx_vnni"} & flags:
        peaks["int8"] = 4 * fp32 * (1 if "avx512_vnni" in flags else 0.5)
    return {k: round(v, 1) for k, v in peaks.items()}


def precision_of(backend: str) -> str:
    """fp32, bf16 or int8, from the backend's name."""
    return "bf16" if "bf16" in backend else "int8" if "int8" in backend else "fp32"


def peak_rss_mb(pid: int) -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of a process, in MB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = round(int(value.split()[0]) / 1024, 1)
    return found


def bench_bare(
    backends: list[str], args: argparse.Namespace, tracking_uri: str, photo: np.ndarray
) -> dict[str, dict[str, object]]:
    """Bare forward times of every backend, interleaved: 1×3×512² and the Predictor's windows on ``photo``."""
    from vessel_lightning.inference.backends import build_backend
    from vessel_lightning.inference.predictor import Predictor
    from vessel_lightning.inference.settings import BackendSettings
    from vessel_lightning.tracking.bundle import load_logged_model

    network, contract, info = load_logged_model(args.model_uri)
    built, results = {}, {}
    for backend in backends:
        try:
            settings = BackendSettings(
                tracking_uri=tracking_uri, cache_dir=args.cache_dir, calibration_dir=args.calibration_dir,
                threads=args.threads, window=args.window or None,
            )  # fmt: skip
            result = build_backend(backend, network, contract, info, settings)
        except Exception as exc:  # a backend this machine cannot build is reported, not fatal
            results[backend] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
            continue
        timer = TimedNetwork(result.network)
        predictor = Predictor(result.network, contract, window=args.window or None)
        predictor.network = timer
        built[backend] = (timer, predictor)
        results[backend] = {"served_backend": result.backend}
        if result.auto is not None:
            results[backend]["auto"] = result.auto
    batch = np.random.default_rng(0).random((1, 3, 512, 512), dtype=np.float32)

    def forward(timer: TimedNetwork) -> Callable[[], object]:
        def call() -> object:
            return timer.network(batch)

        return call

    times = timed({name: forward(timer) for name, (timer, _) in built.items()}, args.repeats)
    for name, values in times.items():
        results[name]["bare_512"] = summary(values)
    large: dict[str, list[float]] = {name: [] for name in built}
    for round_ in range(args.large_repeats + 1):  # the first round warms up (OpenVINO compiles new shapes)
        for name, (timer, predictor) in built.items():
            timer.ms = 0.0
            predictor.predict_proba(photo)
            if round_:
                large[name].append(timer.ms)
    for name, values in large.items():
        timer = built[name][0]
        timer.windows = 0
        built[name][1].predict_proba(photo)
        results[name]["bare_photo"] = summary(values) | {"windows": timer.windows}
    return results


def serve_env(backend: str, args: argparse.Namespace, tracking_uri: str, scratch: Path) -> dict[str, str]:
    """The environment of a ``vessel-serve`` for ``backend`` in this benchmark."""
    env = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "VESSEL_MODEL_URI": args.model_uri,
        "VESSEL_BACKEND": backend,
        "VESSEL_CACHE_DIR": str(args.cache_dir),
        "VESSEL_RELOAD_INTERVAL_S": "0",
        "VESSEL_THREADS": str(args.threads),
        "VESSEL_WINDOW": str(args.window),
        "VESSEL_UI_DIR": str(scratch / "no-ui"),
        "VESSEL_MAX_UPLOAD_MB": "100",
    }
    if args.calibration_dir:
        env["VESSEL_CALIBRATION_DIR"] = str(args.calibration_dir)
    return env


def post(port: int, data: bytes, answers: dict[int, bytes] | None = None) -> Callable[[], None]:
    """A call that sends ``data`` to ``POST /predict`` on ``port`` (asserting 200); the body goes to
    ``answers[port]`` when given."""
    import http.client

    from tests.helpers.server import HOST, multipart

    body, content_type = multipart(data)

    def call() -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=600)
        connection.request("POST", "/predict", body, {"Content-Type": content_type})
        response = connection.getresponse()
        answer = response.read()
        connection.close()
        assert response.status == 200, response.status
        if answers is not None:
            answers[port] = answer

    return call


def same_pixels(first: bytes, second: bytes) -> bool:
    """Whether two image bodies decode to the same pixels."""
    a, b = (np.asarray(Image.open(io.BytesIO(x))) for x in (first, second))
    return a.shape == b.shape and bool((a == b).all())


def bench_trees(
    backends: list[str], args: argparse.Namespace, tracking_uri: str, large_png: bytes, scratch: Path
) -> dict[str, dict[str, dict[str, object]]]:
    """Before/after per backend: a ``vessel-serve`` of this checkout (``new``) and one of ``--baseline``
    (``old``) started together; RSS when ready and after the first full-resolution photo (VmHWM), then
    ``POST /predict`` medians of a 512² PNG and of the photo, requests alternating between the two, and the
    peak RSS at the end. One backend's pair at a time (memory); the photo's answers must hold the same pixels."""
    import contextlib

    from tests.helpers.server import served

    trees = {"new": Path(__file__).resolve().parents[1], "old": args.baseline.resolve()}
    results: dict[str, dict[str, dict[str, object]]] = {}
    for backend in backends:
        results[backend] = found = {}
        with contextlib.ExitStack() as stack:
            servers = {}
            for name, tree in trees.items():
                env = serve_env(backend, args, tracking_uri, scratch) | {"PYTHONPATH": str(tree)}
                log = scratch / f"serve-{backend}-{name}.log"
                try:
                    port, process = stack.enter_context(served(env, log, 1800, cwd=tree))
                except RuntimeError as exc:
                    found[name] = {"error": str(exc).splitlines()[0]}
                    continue
                servers[name] = (port, process.pid)
                found[name] = {"ready_rss_mb": peak_rss_mb(process.pid)["VmRSS"]}
            answers: dict[int, bytes] = {}
            for name, (port, pid) in servers.items():
                start = time.perf_counter()
                post(port, large_png, answers)()
                found[name]["first_photo_ms"] = round((time.perf_counter() - start) * 1000, 1)
                found[name]["first_photo_rss_mb"] = peak_rss_mb(pid)["VmHWM"]
            if len(servers) == 2:
                found["photo_same_pixels"] = same_pixels(*(answers[port] for port, _ in servers.values()))
            for label, data, repeats in (
                ("512_png", synthetic_png(512, 512), args.repeats),
                ("photo", large_png, args.large_repeats),
            ):
                times = timed({n: post(port, data) for n, (port, _) in servers.items()}, repeats, warmup=1)
                for name, values in times.items():
                    found[name][f"predict_{label}"] = summary(values)
            for name, (_, pid) in servers.items():
                found[name]["peak_rss_mb"] = peak_rss_mb(pid)["VmHWM"]
        print(json.dumps({backend: found}), flush=True)
    return results


def bench_end_to_end(
    backends: list[str], args: argparse.Namespace, tracking_uri: str, large_png: bytes, scratch: Path
) -> dict[str, dict[str, object]]:
    """``POST /predict`` medians per backend, one server per backend, requests interleaved; RSS per server."""
    import contextlib
    import http.client

    from tests.helpers.server import HOST, served

    results: dict[str, dict[str, object]] = {}
    ports: dict[str, tuple[int, int]] = {}
    with contextlib.ExitStack() as stack:
        for backend in backends:
            env = serve_env(backend, args, tracking_uri, scratch)
            try:
                port, process = stack.enter_context(served(env, scratch / f"serve-{backend}.log", 900))
            except RuntimeError as exc:
                results[backend] = {"error": str(exc).splitlines()[0]}
                continue
            connection = http.client.HTTPConnection(HOST, port, timeout=60)
            connection.request("GET", "/model")
            model = json.loads(connection.getresponse().read())
            connection.close()
            results[backend] = {
                "served_backend": model["backend"],
                "ready_rss_mb": peak_rss_mb(process.pid)["VmRSS"],
            }
            if "auto" in model["backend_details"]:
                results[backend]["auto"] = model["backend_details"]["auto"]
            ports[backend] = (port, process.pid)

        small = synthetic_png(512, 512)
        for name, data, repeats in (
            ("512_png", small, args.repeats),
            ("photo", large_png, args.large_repeats),
        ):
            times = timed({b: post(port, data) for b, (port, _) in ports.items()}, repeats, warmup=1)
            for backend, values in times.items():
                results[backend][f"predict_{name}"] = summary(values)
        for backend, (_, pid) in ports.items():
            results[backend]["peak_rss_mb"] = peak_rss_mb(pid)["VmHWM"]
    return results


def main() -> None:
    """Parse flags, run every backend bare and end to end, print a table and write JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--backends", help="comma-separated (default: auto's candidates on this CPU, and auto)"
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--large-repeats", type=int, default=5)
    parser.add_argument(
        "--tracking-uri", help="a store with the model to serve (default: a temporary random B0)"
    )
    parser.add_argument("--model-uri", default="models:/vessel-unet@champion")
    parser.add_argument(
        "--calibration-dir", type=Path, help="photos for int8 calibration and the bf16/int8 gate"
    )
    parser.add_argument("--photo", type=Path, help="the full-resolution photo (default: synthetic 999×960)")
    parser.add_argument("--cache-dir", type=Path, help="backend cache (default: a temporary folder)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument(
        "--e2e-backends", help="comma-separated backends timed end to end (default: all; 'none': bare only)"
    )
    parser.add_argument(
        "--window",
        type=int,
        default=512,
        help="sliding window of tile models, as vessel-serve (0: the tile size)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of the old code: the end-to-end phase becomes before/after per backend (bench_trees)",
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    import mlflow
    import torch

    from vessel_lightning.data.images import read_rgb
    from vessel_lightning.hardware import read_cpu_features
    from vessel_lightning.inference.auto import candidate_backends
    from vessel_lightning.inference.openvino_runtime import openvino_available
    from vessel_lightning.models.architectures import gflop
    from vessel_lightning.tracking.bundle import load_logged_model

    torch.set_num_threads(args.threads)
    features = read_cpu_features()
    ghz = cpu_clock_ghz()
    peaks = peak_gflops(features.flags, os.cpu_count() or 1, ghz)
    if args.backends:
        backends = [b for b in args.backends.split(",") if b]
    else:
        backends, _ = candidate_backends(
            features, openvino=openvino_available(), calibration=args.calibration_dir is not None
        )
        backends.append("auto")
    machine = {
        "cpu": features.model,
        "cores": os.cpu_count(),
        "clock_ghz": ghz,
        "threads": args.threads,
        "flags_that_matter": sorted(f for f in features.flags if f.startswith(("avx", "amx", "fma"))),
        "peak_gflops": peaks,
        "platform": platform.platform(),
        "backends": backends,
    }
    print(json.dumps(machine))
    if args.photo:
        photo = read_rgb(args.photo)
        with args.photo.open("rb") as handle:
            large_png = handle.read()
    else:
        large_png = synthetic_png(960, 999)
        photo = np.asarray(Image.open(io.BytesIO(large_png)).convert("RGB"))
    with tempfile.TemporaryDirectory() as scratch:
        tracking_uri = args.tracking_uri or temporary_registry(Path(scratch))
        mlflow.set_tracking_uri(tracking_uri)
        network, contract, info = load_logged_model(args.model_uri)
        model_gflop = gflop(network, 512, 512)
        del network
        args.cache_dir = args.cache_dir or Path(scratch) / "cache"
        bare = bench_bare(backends, args, tracking_uri, photo)
        print(json.dumps({"bare": bare}), flush=True)  # kept if the end-to-end phase fails
        chosen = args.e2e_backends
        served = backends if chosen is None else [b for b in chosen.split(",") if b and b != "none"]
        end, trees = {}, {}
        if served and args.baseline:
            trees = bench_trees(served, args, tracking_uri, large_png, Path(scratch))
        elif served:
            end = bench_end_to_end(served, args, tracking_uri, large_png, Path(scratch))
    machine |= {
        "model": f"{info.uri} (version {info.version}, {contract.arch} {contract.encoder}, {contract.mode} "
        f"{contract.size[0]}x{contract.size[1]})"
        if args.tracking_uri
        else "random-weight B0, contract size 512",
        "gflop_at_512": round(model_gflop, 2),
        "photo": f"{photo.shape[1]}x{photo.shape[0]}",
        "load_average_at_end": os.getloadavg(),
    }
    rows = []
    onnx_e2e = end.get("onnx", {}).get("predict_512_png", {}).get("median_ms")
    for backend in backends:
        row = {"backend": backend, "precision": precision_of(backend)} | bare.get(backend, {})
        row |= {f"e2e_{k}": v for k, v in end.get(backend, {}).items()}
        if "bare_512" in row:
            ms = row["bare_512"]["median_ms"]
            achieved = model_gflop / ms * 1000
            row["achieved_gflops"] = round(achieved, 1)
            row["share_of_fp32_peak"] = round(achieved / peaks["fp32"], 3) if ghz else None
            own = peaks.get(precision_of(row.get("served_backend", backend)))
            row["share_of_own_peak"] = round(achieved / own, 3) if own else None
            e2e = row.get("e2e_predict_512_png", {}).get("median_ms")
            if e2e:
                row["e2e_over_bare"] = round(e2e / ms, 2)
                row["speedup_vs_onnx_e2e"] = round(onnx_e2e / e2e, 2) if onnx_e2e else None
        rows.append(row)
    print(json.dumps(machine))
    header = (
        f"{'backend':14} {'serves':14} {'bare 512':>9} {'/predict 512 med/p95':>21} {'e2e/bare':>8} {'vs onnx':>7} "
        f"{'GFLOP/s':>8} {'%fp32pk':>7} {'%ownpk':>6} {'photo bare':>10} {'photo e2e':>9} {'RSS rdy/pk MB':>14}"
    )
    print(header)
    for row in rows:
        if "error" in row or "bare_512" not in row:
            print(f"{row['backend']:14} error: {row.get('error') or row.get('e2e_error')}")
            continue
        e2e = row.get("e2e_predict_512_png", {})
        photo_e2e = row.get("e2e_predict_photo", {}).get("median_ms", "-")
        print(
            f"{row['backend']:14} {row.get('served_backend', ''):14} {row['bare_512']['median_ms']:>9} "
            f"{e2e.get('median_ms', '-'):>10}/{e2e.get('p95_ms', '-'):<10} {row.get('e2e_over_bare', '-'):>8} "
            f"{row.get('speedup_vs_onnx_e2e', '-'):>7} {row['achieved_gflops']:>8} "
            f"{100 * (row['share_of_fp32_peak'] or 0):>6.1f}% {100 * (row['share_of_own_peak'] or 0):>5.1f}% "
            f"{row['bare_photo']['median_ms']:>10} {photo_e2e:>9} "
            f"{row.get('e2e_ready_rss_mb', '-'):>6}/{row.get('e2e_peak_rss_mb', '-'):<7}"
        )
    for row in rows:
        if "auto" in row or "e2e_auto" in row:
            auto = row.get("e2e_auto") or row["auto"]
            print(f"auto chose {auto['backend']}: {auto['why']}; load-time timings {auto['timings_ms']}")
    if trees:
        print_trees(trees, bare)
    if args.out:
        args.out.write_text(json.dumps({"machine": machine, "results": rows, "trees": trees}, indent=2))


def print_trees(trees: dict[str, dict[str, dict[str, object]]], bare: dict[str, dict[str, object]]) -> None:
    """The before/after table of :func:`bench_trees`, with this checkout's bare forward as the yardstick."""
    print(
        f"{'backend':14} {'code':4} {'RSS ready':>9} {'after photo':>11} {'peak':>6} {'1st photo ms':>12} "
        f"{'/predict 512 med/p95':>21} {'e2e/bare':>8} {'photo med':>9} {'same px':>7}"
    )
    for backend, found in trees.items():
        ms = bare.get(backend, {}).get("bare_512", {}).get("median_ms")
        for name in ("old", "new"):
            row = found.get(name, {})
            if "ready_rss_mb" not in row:
                print(f"{backend:14} {name:4} error: {row.get('error')}")
                continue
            e2e = row.get("predict_512_png", {})
            ratio = round(e2e["median_ms"] / ms, 2) if ms and e2e else "-"
            print(
                f"{backend:14} {name:4} {row['ready_rss_mb']:>9} {row['first_photo_rss_mb']:>11} "
                f"{row['peak_rss_mb']:>6} {row['first_photo_ms']:>12} {e2e.get('median_ms', '-'):>10}/"
                f"{e2e.get('p95_ms', '-'):<10} {ratio:>8} {row.get('predict_photo', {}).get('median_ms', '-'):>9} "
                f"{found.get('photo_same_pixels', '-')!s:>7}"
            )


if __name__ == "__main__":
    main()
