"""Everything that needs a GPU, in one bounded run on a lent machine; figures and small artefacts under OUT.

    bash experiments/stage_device.sh                  # here: wheels, CHASE_DB1 and the champion into .device/
    bash experiments/device_check.sh OUT              # there: ≤ 8 min on one GPU (the wrapper installs the wheels)
    bash experiments/device_check.sh OUT --smoke      # anywhere, on the CPU: every step on tiny sizes (a test runs it)

Steps, each bounded by what is left of ``--budget`` seconds and recorded even when it fails:
1. ``serving``: ``vessel-serve`` started per variant (device, precision, batching, compile), ``/predict`` of a 512²
   PNG and of a 999×960 photo, p50/p95, one client and 16 concurrent clients, beside the bare network's forward.
2. ``accuracy``: ``vessel-eval`` of the carried model on CHASE_DB1 test per precision (the RESULTS.md protocol).
3. ``train_steps``: ``bench_train_step.py`` for B0–B7 at batch 8, 512², bf16 autocast: step time and peak memory.
4. ``training``: ``experiment=chase_gpu`` for the time left (``logger=csv``), packed for ``vessel-import-run``
   by ``gpu_sweep.sh`` (float16 weights).
OUT gets ``summary.json`` (all figures), ``summary.md`` (the tables) and one log per step; every file < 16 MiB.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import percentile, synthetic_png  # a sibling script, not a package

from tests.helpers.server import HOST, REPO, multipart, served

ENCODERS = ["b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7"]


class Budget:
    """Seconds left of the whole run; each step asks for its share and is cut when the run's end comes."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())


def environment() -> dict[str, Any]:
    """Python, torch, CUDA, GPU and CPU of this machine."""
    import torch

    from vessel_lightning.hardware import cpu_features

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cpu": cpu_features().model,
        "cpu_count": os.cpu_count(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env |= {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 1024**3, 1)}
        env["capability"] = f"{props.major}.{props.minor}"
    return env


def export_model(folder: Path, smoke: bool) -> Path:
    """A random-weight B0 exported like a training job (``network.pt`` + ``contract.json``) when none is carried."""
    from vessel_lightning.contract import ModelContract
    from vessel_lightning.models.networks import build_network, save_network

    config: dict[str, Any] = {"encoder_name": "efficientnet-b0", "encoder_weights": None}
    if smoke:
        config["decoder_channels"] = [32, 16, 8, 8, 8]
    save_network(folder / "network.pt", build_network(**config), config)
    size = 64 if smoke else 256
    contract = ModelContract(encoder="efficientnet-b0", mode="tiles", size=(size, size), threshold=0.5)
    (folder / "contract.json").write_text(json.dumps(contract.to_dict(), indent=2))
    return folder


def _post(
    body: bytes, content_type: str, connection: http.client.HTTPConnection, query: str = "format=mask"
) -> float:
    start = time.perf_counter()
    connection.request("POST", f"/predict?{query}", body=body, headers={"Content-Type": content_type})
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"/predict answered {response.status}")
    return (time.perf_counter() - start) * 1000


def load(
    port: int, data: bytes, clients: int, requests_each: int, query: str = "format=mask"
) -> dict[str, Any]:
    """``clients`` threads each posting ``data`` ``requests_each`` times (keep-alive) to ``/predict?<query>``;
    latency ms and throughput."""
    body, content_type = multipart(data)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client() -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=300)
        barrier.wait()
        try:
            for _ in range(requests_each):
                ms = _post(body, content_type, connection, query)
                with lock:
                    latencies.append(ms)
        except Exception as exc:
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "p50_ms": round(percentile(latencies, 0.5), 2) if latencies else float("nan"),
        "p95_ms": round(percentile(latencies, 0.95), 2) if latencies else float("nan"),
        "photos_per_s": round(len(latencies) / wall, 2),
    }


def bare_forward(
    model_dir: Path, device: str, precision: str, sizes: list[tuple[int, int]], repeats: int
) -> dict:
    """Median ms of the served network's forward alone (``CudaNetwork`` on a GPU) for batches of windows."""
    import torch

    from vessel_lightning.inference.backends import build_backend
    from vessel_lightning.inference.settings import BackendSettings
    from vessel_lightning.inference.torch_runtime import resolve_device
    from vessel_lightning.tracking.bundle import ModelInfo, load_logged_model

    network, contract, _ = load_logged_model(str(model_dir))
    dev = resolve_device(device)
    built = build_backend(
        "torch", network, contract, ModelInfo("bare"), BackendSettings(precision=precision), str(dev)
    )
    out = {}
    for count, side in sizes:
        batch = torch.rand(count, 3, side, side, device=dev)
        if dev.type != "cuda":  # the CPU backends take arrays
            batch = batch.numpy()
        times = []
        for i in range(repeats + 2):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            start = time.perf_counter()
            built.network(batch)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i >= 2:  # two warm-up calls (autotuning)
                times.append((time.perf_counter() - start) * 1000)
        out[f"{count}x{side}"] = round(statistics.median(times), 2)
    del built
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return out


def serving(out: Path, model_dir: Path, photo: bytes, smoke: bool, budget: Budget) -> dict[str, Any]:
    """Latency per serving variant; every variant serves the same model and photos."""
    import torch

    gpu = torch.cuda.is_available() and not smoke
    if gpu:
        variants = [
            {"VESSEL_DEVICE": "cuda", "VESSEL_PRECISION": p, "VESSEL_BATCHING": "on"}
            for p in ("fp32", "fp16", "bf16")
        ]
        variants.append({"VESSEL_DEVICE": "cuda", "VESSEL_PRECISION": "fp16", "VESSEL_BATCHING": "off"})
        variants.append(
            {
                "VESSEL_DEVICE": "cuda",
                "VESSEL_PRECISION": "fp16",
                "VESSEL_BATCHING": "on",
                "VESSEL_COMPILE": "1",
            }
        )
        square, single, clients, each = 512, 40, 16, 8
    elif smoke:
        variants = [
            {"VESSEL_DEVICE": "cpu", "VESSEL_BATCHING": b, "VESSEL_BACKEND": "torch"} for b in ("off", "on")
        ]
        square, single, clients, each = 64, 2, 4, 1
    else:  # a CPU machine: is dynamic batching worth it there? (the default backend, batching off and on)
        variants = [
            {"VESSEL_DEVICE": "cpu", "VESSEL_BATCHING": b, "VESSEL_BACKEND": "onnx"} for b in ("off", "on")
        ]
        square, single, clients, each = 512, 10, 4, 3
    photos = {f"{square}x{square} png": synthetic_png(square, square), "photo": photo}
    rows = []
    for variant in variants:
        if budget.left() < 60:
            rows.append(variant | {"skipped": "out of time"})
            continue
        name = "-".join(v for k, v in sorted(variant.items()) if k != "VESSEL_BACKEND")
        env = {"VESSEL_MODEL_URI": str(model_dir), "VESSEL_RELOAD_INTERVAL_S": "0", "VESSEL_WINDOW": "512"}
        env |= variant
        if smoke:
            env["VESSEL_WINDOW"] = "128"
        elif not gpu:
            env["VESSEL_WORKERS"] = str(clients)  # so concurrent requests can meet in a batch at all
        row: dict[str, Any] = dict(variant)
        try:
            start = time.perf_counter()
            with served(env, out / f"serve-{name}.log", ready_timeout_s=min(240, budget.left())) as (port, _):
                row["ready_s"] = round(time.perf_counter() - start, 1)
                connection = http.client.HTTPConnection(HOST, port, timeout=30)
                connection.request("GET", "/model")
                described = json.loads(connection.getresponse().read())
                connection.close()
                row["precision"] = described.get("precision")
                row["device"] = described.get("device", {}).get("name")
                row["warm_up"] = described.get("backend_details", {}).get("warm_up")
                row["loads"] = [
                    {"photo": label} | load(port, data, n, count)
                    for label, data in photos.items()
                    for n, count in ((1, single), (clients, each))
                ]
                # The field-of-view detection runs on the host per photo: the same square without it.
                square_png = photos[f"{square}x{square} png"]
                no_fov = load(port, square_png, 1, single, "format=mask&fov=none")
                row["loads"].append({"photo": f"{square}x{square} png, fov=none"} | no_fov)
                connection = http.client.HTTPConnection(HOST, port, timeout=30)
                connection.request("GET", "/model")
                row["batching"] = json.loads(connection.getresponse().read()).get("batching")
                connection.close()
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {str(exc)[-500:]}"
        rows.append(row)
        print(json.dumps(row), flush=True)
    bare = {}
    for precision in ("fp32", "fp16", "bf16") if gpu else ("fp32",):
        try:
            sizes = [(1, 512), (9, 512), (16, 512)] if gpu else [(1, 64), (4, 64)] if smoke else [(1, 512)]
            bare[precision] = bare_forward(
                model_dir, "cuda" if gpu else "cpu", precision, sizes, 20 if gpu else 2 if smoke else 5
            )
        except Exception as exc:
            bare[precision] = {"error": f"{type(exc).__name__}: {exc}"}
    return {"variants": rows, "bare_forward_ms": bare}


def _run(cmd: list[str], log: Path, timeout: float, env: dict[str, str] | None = None) -> int:
    """Run ``cmd`` with output to ``log`` for at most ``timeout`` s; returns its exit status (124 on time-out)."""
    with log.open("w") as handle:
        try:
            return subprocess.run(
                cmd, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, timeout=max(timeout, 1), env=env
            ).returncode
        except subprocess.TimeoutExpired:
            handle.write(f"\n[device_check] stopped after {timeout:.0f} s\n")
            return 124


def accuracy(out: Path, model_dir: Path, data_dir: Path, smoke: bool, budget: Budget) -> dict[str, Any]:
    """``vessel-eval`` on CHASE_DB1 test per precision (fp32 first: the reference of the 0.001 condition)."""
    import torch

    if not (data_dir / "CHASE_DB1").is_dir():
        return {"skipped": f"no CHASE_DB1 under {data_dir}"}
    gpu = torch.cuda.is_available() and not smoke
    results: dict[str, Any] = {}
    for precision in ("fp32", "fp16", "bf16") if gpu else ("fp32",):
        if budget.left() < 45:
            results[precision] = {"skipped": "out of time"}
            continue
        target = out / f"eval-{precision}"
        cmd = [sys.executable, "-m", "vessel_lightning.evaluation.evaluate", f"model_uri={model_dir}"]
        cmd += [
            "data=chase_db1",
            f"data.root={data_dir / 'CHASE_DB1'}",
            "split=test",
            f"precision={precision}",
        ]
        cmd += [f"device={'cuda' if gpu else 'cpu'}", "log_to_mlflow=false", "overlays=false"]
        cmd += [f"output_dir={target}", f"hydra.run.dir={target}"]
        cmd += ["window=512"] if not smoke else ["window=64", "scale=0.125"]  # smoke: 125×120 photos
        status = _run(cmd, out / f"eval-{precision}.log", min(240, budget.left() - 30))
        summary = target / "summary.json"
        if status == 0 and summary.is_file():
            data = json.loads(summary.read_text())
            results[precision] = {k: data[k] for k in ("f1", "iou", "cldice", "auc", "threshold")} | {
                "seconds": data.get("seconds")
            }
        else:
            results[precision] = {"error": f"exit {status}, see eval-{precision}.log"}
    reference = results.get("fp32", {}).get("f1")
    for row in results.values():
        if reference is not None and "f1" in row:
            row["f1_minus_fp32"] = round(row["f1"] - reference, 6)
    return results


def train_steps(out: Path, smoke: bool, budget: Budget) -> dict[str, Any]:
    """B0–B7 train steps at batch 8, 512², bf16 autocast (the ``trainer=gpu`` precision) — or one tiny one."""
    import torch

    gpu = torch.cuda.is_available() and not smoke
    cmd = [
        sys.executable,
        str(REPO / "experiments" / "bench_train_step.py"),
        "--json",
        "--formats",
        "channels_last",
    ]
    if gpu:
        cmd += ["--device", "cuda", "--encoders", *ENCODERS, "--precisions", "bf16", "--batch", "8"]
        cmd += ["--size", "512", "--steps", "5"]
    else:
        cmd += ["--device", "cpu", "--encoders", "b0", "--precisions", "fp32", "--batch", "2", "--size", "64"]
        cmd += ["--steps", "1"]
    log = out / "train_steps.log"
    status = _run(cmd, log, min(200 if gpu else 300, budget.left() - 20))
    rows = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            rows.append(json.loads(line))
    return {"exit": status, "rows": rows}


def training(out: Path, data_dir: Path, smoke: bool, budget: Budget) -> dict[str, Any]:
    """``experiment=chase_gpu`` for the time left (minus packing and a margin), packed by ``gpu_sweep.sh``."""
    import torch

    gpu = torch.cuda.is_available() and not smoke
    seconds = int(budget.left() - 60)
    if seconds < 60 and not smoke:
        return {"skipped": f"only {seconds + 60:.0f} s left"}
    # The simple profiler's table (in training.log and the pack's stdout.log) sets data loading against the step.
    overrides = [
        f"trainer.max_time=00:00:{seconds // 60:02d}:{seconds % 60:02d}",
        "++trainer.profiler=simple",
    ]
    if not gpu:
        overrides = [
            "trainer.accelerator=cpu",
            "trainer.precision=32",
            "++trainer.max_steps=2",
            "trainer.max_epochs=1",
            "trainer.max_time=null",
            "++trainer.benchmark=false",
            "++trainer.num_sanity_val_steps=0",
            "data.size=64",
            "data.tiles_per_image=1",
            "data.batch_size=2",
            "data.num_workers=0",
            "data.pin_memory=false",
            "data.workers=0",
        ]
    env = os.environ | {"VESSEL_DATA_DIR": str(data_dir), "HALF": "1", "JOBS_DIR": str(jobs_dir(out))}
    env.setdefault("VESSEL_RUNS_DIR", str(out / "runs"))
    cmd = [
        "bash",
        str(REPO / "experiments" / "gpu_sweep.sh"),
        str(out / "packs"),
        "chase_gpu",
        "--",
        *overrides,
    ]
    status = _run(cmd, out / "training.log", budget.left() - 10, env | {"PYTHON": sys.executable})
    packs = sorted(p.name for p in (out / "packs").glob("chase_gpu.tgz*"))
    return {"exit": status, "packs": packs, "max_time_s": seconds if gpu else None, "profile": profile(out)}


def jobs_dir(out: Path) -> Path:
    """Where the training job runs (its checkpoints are large): beside OUT, not in it; the pack goes into OUT."""
    return out.parent / f"{out.name}-jobs"


def profile(out: Path) -> dict[str, float]:
    """Mean seconds per call of data loading and of the training step, from the simple profiler's table."""
    log = jobs_dir(out) / "chase_gpu" / "stdout.log"
    found: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines() if log.is_file() else []:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        for action in ("train_dataloader_next", "run_training_batch", "optimizer_step"):
            if len(cells) >= 2 and cells[0].endswith(action):
                with contextlib.suppress(ValueError):  # a header or separator row
                    found[f"{action}_mean_s"] = float(cells[1])
    return found


def _step(summary: dict[str, Any], name: str, out: Path, function: Callable[[], Any]) -> None:
    start = time.perf_counter()
    print(f"[device_check] {name} …", flush=True)
    try:
        summary[name] = function()
    except Exception:
        summary[name] = {"error": traceback.format_exc()[-2000:]}
    summary.setdefault("seconds", {})[name] = round(time.perf_counter() - start, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))


def markdown(summary: dict[str, Any]) -> str:
    """The figures as Markdown tables (what goes into RESULTS.md)."""
    env = summary["environment"]
    lines = [f"# device_check on {env.get('gpu', 'CPU ' + env['cpu'])} (torch {env['torch']})", ""]
    rows = summary.get("serving", {}).get("variants", [])
    if rows:
        lines += [
            "| variant | photo | clients | p50 ms | p95 ms | photos/s | errors |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            name = " ".join(
                f"{k.removeprefix('VESSEL_').lower()}={v}" for k, v in row.items() if k.startswith("VESSEL_")
            )
            for value in row.get("loads", []):
                lines.append(
                    f"| {name} | {value['photo']} | {value['clients']} | {value['p50_ms']} | {value['p95_ms']} "
                    f"| {value['photos_per_s']} | {value['errors']} |"
                )
            if "error" in row or "skipped" in row:
                lines.append(f"| {name} | — | — | {row.get('error') or row.get('skipped')} | | | |")
        lines.append("")
    bare = summary.get("serving", {}).get("bare_forward_ms", {})
    if bare:
        lines += ["bare forward (ms, median): " + json.dumps(bare), ""]
    acc = summary.get("accuracy", {})
    if isinstance(acc, dict) and acc:
        lines += ["| precision | CHASE_DB1 test F1 | minus fp32 | IoU | AUC |", "|---|---|---|---|---|"]
        for precision, row in acc.items():
            if isinstance(row, dict) and "f1" in row:
                lines.append(
                    f"| {precision} | {row['f1']:.4f} | {row.get('f1_minus_fp32', 0):+.4f} | {row['iou']:.4f} | {row['auc']:.4f} |"
                )
        lines.append("")
    steps = summary.get("train_steps", {}).get("rows", [])
    if steps:
        lines += [
            "| encoder | precision | batch | size | step s | peak memory GiB |",
            "|---|---|---|---|---|---|",
        ]
        for row in steps:
            memory = row.get("max_allocated_gb", row.get("peak_rss_gb", float("nan")))
            if "error" in row:
                lines.append(f"| {row['encoder']} | {row['precision']} | | | failed: {row['error']} | |")
            else:
                lines.append(
                    f"| {row['encoder']} | {row['precision']} | {row['batch']} | {row['size']} "
                    f"| {row['median_s']:.3f} | {memory:.2f} |"
                )
        lines.append("")
    lines.append("training: " + json.dumps(summary.get("training", {})))
    lines.append("step seconds: " + json.dumps(summary.get("seconds", {})))
    return "\n".join(lines) + "\n"


def main() -> int:
    """Run the four steps within ``--budget`` seconds; write summary.json and summary.md under OUT."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes: checks the script end to end")
    parser.add_argument(
        "--budget",
        type=float,
        help="seconds for the whole run (default 470; 1500 with --smoke on a slow CPU)",
    )
    parser.add_argument(
        "--model", type=Path, help="an exported model folder (default: .device/model, else random)"
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("VESSEL_DATA_DIR", REPO / ".device" / "data"))
    )
    parser.add_argument(
        "--steps", default="serving,accuracy,train_steps,training", help="comma-separated subset"
    )
    args = parser.parse_args()
    budget = Budget(args.budget or (1500 if args.smoke else 470))
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"environment": environment(), "smoke": args.smoke}
    print(json.dumps(summary["environment"]), flush=True)
    model_dir = args.model or REPO / ".device" / "model"
    if not (model_dir / "network.pt").is_file():  # kept out of OUT: everything there comes back, < 16 MiB
        model_dir = export_model(Path(tempfile.mkdtemp(prefix="device-check-model-")), args.smoke)
        summary["model"] = "random-weight B0 (no trained model carried)"
    else:
        summary["model"] = str(model_dir)
    model_dir = model_dir.resolve()
    data_dir = args.data_dir.resolve()
    chase = sorted((data_dir / "CHASE_DB1" / "images").glob("Image_11L.*"))
    photo = chase[0].read_bytes() if chase and not args.smoke else synthetic_png(96, 100)
    steps = set(args.steps.split(","))
    if "serving" in steps:
        _step(summary, "serving", out, lambda: serving(out, model_dir, photo, args.smoke, budget))
    if "accuracy" in steps:
        _step(summary, "accuracy", out, lambda: accuracy(out, model_dir, data_dir, args.smoke, budget))
    if "train_steps" in steps:
        _step(summary, "train_steps", out, lambda: train_steps(out, args.smoke, budget))
    if "training" in steps:
        _step(summary, "training", out, lambda: training(out, data_dir, args.smoke, budget))
    (out / "summary.md").write_text(markdown(summary))
    print(markdown(summary), flush=True)
    failed = [
        name
        for name in steps
        if isinstance(summary.get(name), dict) and ("error" in summary[name] or summary[name].get("exit", 0))
    ]
    if failed:
        print(
            f"[device_check] failed steps: {', '.join(sorted(failed))} (their logs are in {out})", flush=True
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
