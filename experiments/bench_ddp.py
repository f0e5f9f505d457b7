"""Training steps per second with one process and with DDP over several, through ``vessel-train`` itself.

Each setting runs ``vessel-train`` (random B0, CHASE_DB1 tiles, fp32, no validation) for ``--steps`` optimizer steps
with a callback that times every step after ``--warmup``; the report gives the median step time, steps/s and images/s
(``devices × batch`` images per step). On a CPU machine the processes share its cores, so DDP is not expected to be
faster there: the run shows it works and what it costs. On GPUs pass ``--accelerator gpu``.

    python experiments/bench_ddp.py --data-dir $VESSEL_DATA_DIR                          # 1 vs 2 CPU processes
    python experiments/bench_ddp.py --accelerator gpu --devices 1 2 4 --size 512 --batch 8   # a GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lightning import Callback

HERE = Path(__file__).resolve().parent


class StepClock(Callback):
    """Writes the wall time of each optimizer step (rank 0) to ``path`` as JSON when training ends."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.times: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, *args: object) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, *args: object) -> None:
        self.times.append(time.perf_counter() - self._start)

    def on_train_end(self, trainer, *args: object) -> None:
        if trainer.is_global_zero:
            Path(self.path).write_text(json.dumps(self.times))


def run(devices: int, args: argparse.Namespace, work: Path) -> dict:
    clock = work / f"steps-{devices}.json"
    command = [
        sys.executable,
        "-m",
        "vessel_lightning.tracking.train",
        "trainer=ddp" if devices > 1 else "trainer=default",
        f"trainer.accelerator={args.accelerator}",
        f"trainer.devices={devices}",
        f"trainer.precision={args.precision}",
        f"++trainer.max_steps={args.steps + args.warmup}",
        "++trainer.limit_val_batches=0",
        "++trainer.num_sanity_val_steps=0",
        "++trainer.enable_progress_bar=false",
        "++trainer.enable_model_summary=false",
        "data=chase_db1",
        f"data.root={Path(args.data_dir) / 'CHASE_DB1'}",
        "data.mode=tiles",
        f"data.size={args.size}",
        f"data.batch_size={args.batch}",
        f"data.prepared_dir={work / 'prepared'}",
        f"paths.runs_dir={work / 'runs'}",
        "model.encoder_weights=null",
        "test=false",
        "optimized_metric=null",
        "scheduler=none",
        "logger=none",
        "callbacks=none",
        "+callbacks.clock._target_=bench_ddp.StepClock",
        f"+callbacks.clock.path={clock}",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"devices={devices} failed:\n{done.stderr[-3000:]}")
    times = json.loads(clock.read_text())[args.warmup :]
    step = statistics.median(times)
    return {
        "devices": devices,
        "steps": len(times),
        "median_step_s": round(step, 3),
        "steps_per_s": round(1 / step, 3),
        "images_per_s": round(devices * args.batch / step, 2),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=os.environ.get("VESSEL_DATA_DIR", "data"))
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4, help="images per process and step")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    print(
        next((line for line in cpu.splitlines() if line.startswith("Model name")), "CPU: ?"),
        f"cores {os.cpu_count()}",
    )
    with tempfile.TemporaryDirectory() as folder:
        for devices in args.devices:
            print(json.dumps(run(devices, args, Path(folder))), flush=True)


if __name__ == "__main__":
    main()
