"""Score the averaged and the training weights of one checkpoint, paired: what weight averaging is worth.

A checkpoint written with ``callbacks.ema`` (``WeightEMA``) holds two sets of weights from the same run and
step: the average (``state_dict``, what the run exports) and the weights the optimizer was moving
(``current_model_state``). For each, this script
1. validates it on the run's own validation split exactly as training does (``trainer.validate``: the module tunes
   its threshold on those weights; the average's must come out as the one stored in the checkpoint),
2. exports it as a network file with the run's contract, that threshold in it,
3. scores it with ``vessel-eval`` (test split, native resolution, inside the official FOV, the window and blending
   of the eval config, that threshold),
and prints both rows side by side.

    python experiments/averaging_pair.py --job runs/train/<date>_<time> --data-dir ../shared/data \\
        --out <folder> [--checkpoint best|last]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import OmegaConf

from vessel_lightning.contract import CONTRACT_FILE, NETWORK_FILE
from vessel_lightning.hardware import cpu_features
from vessel_lightning.models.networks import save_network
from vessel_lightning.tracking.train import build_datamodule

WEIGHTS = {"average": "state_dict", "training": "current_model_state"}
COLUMNS = ("f1", "iou", "cldice", "thin_recall", "auc", "f1_at_0.5")


def checkpoint_file(job: Path, which: str) -> Path:
    folder = job / "checkpoints"
    if which == "last":
        return folder / "last.ckpt"
    best = sorted(folder.glob("epoch_*.ckpt"))
    if not best:
        raise FileNotFoundError(f"no epoch_*.ckpt under {folder}")
    return best[-1]


def validate(cfg, state: dict[str, torch.Tensor]) -> tuple[float, float, dict]:
    """(tuned threshold, val/f1 at the configured threshold, the network's build arguments) of ``state`` on the
    run's validation split."""
    model = hydra.utils.instantiate(cfg.model)
    model.load_state_dict(state)
    trainer = L.Trainer(
        accelerator="cpu",
        precision=cfg.trainer.precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    (metrics,) = trainer.validate(model, datamodule=build_datamodule(cfg.data), verbose=False)
    return float(model.val_threshold), float(metrics["val/f1"]), dict(model.hparams["net"])


def summary_row(summary: dict) -> dict[str, float]:
    """The columns of ``COLUMNS`` from a vessel-eval summary.json."""
    row = {key: float(summary[key]) for key in COLUMNS if key in summary}
    row["f1_at_0.5"] = float(summary["at_threshold_0.5"]["f1"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--job", type=Path, required=True, help="a vessel-train job folder (runs/train/<stamp>)"
    )
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("VESSEL_DATA_DIR"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--eval-args", nargs="*", default=[], help="extra vessel-eval overrides")
    args = parser.parse_args()

    print(f"CPU {cpu_features().describe()}; torch {torch.__version__}", flush=True)
    cfg = OmegaConf.load(args.job / "config.yaml")
    contract = json.loads((args.job / "artifacts" / CONTRACT_FILE).read_text())
    ckpt_path = checkpoint_file(args.job, args.checkpoint)
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    if WEIGHTS["training"] not in ckpt:
        sys.exit(f"{ckpt_path} was not written with weight averaging (no {WEIGHTS['training']})")
    print(f"checkpoint {ckpt_path} (epoch {ckpt['epoch']}, step {ckpt['global_step']})", flush=True)

    rows = {}
    for name, key in WEIGHTS.items():
        state = ckpt[key]
        threshold, val_f1, net_config = validate(cfg, state)
        stored = float(state["val_threshold"])
        print(
            f"{name}: val/f1 {val_f1:.4f}, threshold tuned on val {threshold:.3f} (checkpoint: {stored:.3f})"
        )
        folder = args.out / name
        net_state = {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}
        save_network(folder / NETWORK_FILE, net_state, net_config)
        (folder / CONTRACT_FILE).write_text(json.dumps(contract | {"threshold": threshold}, indent=2))
        command = [
            str(Path(sys.executable).with_name("vessel-eval")),
            f"model_uri={folder.resolve()}",
            f"data={contract.get('dataset') or 'chase_db1'}",
            f"data.root={args.data_dir / 'CHASE_DB1'}" if args.data_dir else "",
            "split=test",
            "log_to_mlflow=false",
            "overlays=false",
            "measurements=false",
            f"output_dir={(folder / 'eval').resolve()}",
            *args.eval_args,
        ]
        subprocess.run([c for c in command if c], check=True)
        summary = json.loads((folder / "eval" / "summary.json").read_text())
        rows[name] = {"val_f1": val_f1, "threshold": threshold} | summary_row(summary)

    keys = ["val_f1", "threshold", *COLUMNS]
    print("\n| weights | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[k]:.4f}" if k in row else "—" for k in keys) + " |")


if __name__ == "__main__":
    main()
