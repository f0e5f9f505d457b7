"""Start a real ``vessel-serve`` with a small, freshly registered model, for the UI's end-to-end tests.

1. creates an SQLite MLflow store in ``--store-dir`` (default: a new temporary folder);
2. builds an efficientnet-b0 U-Net with random weights (seed 0) and spreads its output, so the probability map
   covers [0, 1] like a trained model's rather than sitting near 0.5;
3. logs it with its contract and registers it as ``vessel-unet@champion``;
4. picks a free loopback port, prints ``VESSEL_E2E_URL=http://127.0.0.1:<port>`` and replaces itself with the
   server (``vessel-serve``, else ``python -m app.server``) serving the UI from ``VESSEL_UI_DIR`` (default ui/out).

Usage: ``python ui/e2e/serve_test_model.py [--store-dir DIR] [--port N]``. A trained model can be swapped in by
pointing ``MLFLOW_TRACKING_URI`` at its store and passing ``--use-existing-store``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

UI_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = UI_DIR.parent

# Random weights give probabilities of about 0.48–0.63; these spread the logits to roughly 0.01–0.99.
HEAD_SCALE = 18.0
HEAD_SHIFT = -5.2


def register_test_model(store_dir: Path) -> str:
    """Create the store in ``store_dir`` and register the test model as champion; returns the tracking URI."""
    import mlflow
    import torch

    from vessel_lightning.contract import ModelContract
    from vessel_lightning.models.networks import build_network
    from vessel_lightning.tracking.model_logging import log_network
    from vessel_lightning.tracking.registry import register
    from vessel_lightning.tracking.store import ensure_experiment, ensure_store

    uri = f"sqlite:///{store_dir / 'mlflow.db'}"
    ensure_store(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    torch.manual_seed(0)
    network = build_network(encoder_name="efficientnet-b0", encoder_weights=None).eval()
    head = network.model.segmentation_head[0]
    with torch.no_grad():
        head.weight.mul_(HEAD_SCALE)
        head.bias.mul_(HEAD_SCALE).add_(HEAD_SHIFT)
    contract = ModelContract(encoder="efficientnet-b0", dataset="chase_db1", size=(256, 256), threshold=0.5)
    mlflow.set_experiment(experiment_id=ensure_experiment(uri, "ui-e2e"))
    with mlflow.start_run(run_name="ui-e2e-random-weights") as run:
        log_network(network, {"encoder_name": "efficientnet-b0"}, contract, run.info.run_id)
    register(run.info.run_id, alias="champion")
    return uri


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(port: int) -> list[str]:
    """``vessel-serve`` from this interpreter's environment when installed, else ``python -m app.server``."""
    args = ["--host", "127.0.0.1", "--port", str(port)]
    script = Path(sys.executable).with_name("vessel-serve")
    if script.is_file():
        return [str(script), *args]
    found = shutil.which("vessel-serve")
    return [found, *args] if found else [sys.executable, "-m", "app.server", *args]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store-dir", type=Path, help="folder for the MLflow store (default: a new tmp folder)"
    )
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument(
        "--use-existing-store",
        action="store_true",
        help="serve $MLFLOW_TRACKING_URI as it is (a trained model)",
    )
    args = parser.parse_args()
    if args.use_existing_store:
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            parser.error("--use-existing-store needs MLFLOW_TRACKING_URI")
    else:
        store_dir = (args.store_dir or Path(tempfile.mkdtemp(prefix="vessel-ui-e2e-"))).resolve()
        store_dir.mkdir(parents=True, exist_ok=True)
        register_test_model(store_dir)
    port = args.port or free_port()
    os.environ.setdefault("VESSEL_UI_DIR", str(UI_DIR / "out"))
    os.environ.setdefault("VESSEL_RELOAD_INTERVAL_S", "0")
    command = server_command(port)
    print(f"VESSEL_E2E_URL=http://127.0.0.1:{port}", flush=True)
    print(f"starting: {' '.join(command)}", flush=True)
    os.chdir(REPO_ROOT)  # so that `python -m app.server` finds the app package
    os.execv(command[0], command)


if __name__ == "__main__":
    raise SystemExit(main())
