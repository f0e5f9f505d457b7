"""``vessel-eval``: score a logged model on a data set split at each image's original resolution.

    vessel-eval model_uri=models:/vessel-unet@champion data=chase_db1 data.root=... split=test

The model's own contract decides how it predicts (training size or tiles) and which threshold is recommended;
labels and FOV masks are read from the raw data set at native resolution (never from the resized prepared
copy). Scores are pooled over all pixels inside the FOV, at 0.5 and at the recommended threshold. Writes
``summary.json``, ``per_image.csv`` and error overlays (true positives, false positives, false negatives in
three colours) to ``output_dir`` and logs them as an evaluation run in MLflow, tagged with the model version.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vessel_lightning.metrics import (
    Counts,
    ProbabilityHistogram,
    SkeletonCounts,
    confusion,
    skeleton_counts,
    thin_counts,
)
from vessel_lightning.threshold import is_vessel

log = logging.getLogger(__name__)

SUMMARY_KEYS = ("f1", "iou", "precision", "recall", "auc", "cldice", "thin_recall")
FOV_MODES = ("official", "detect", "none")
# Measurements compared between prediction and label (per image): Pearson r and mean absolute error.
AGREEMENT_KEYS = (
    "area_density",
    "skeleton_length_density_per_px",
    "calibre_mean_px",
    "calibre_p50_px",
    "calibre_p90_px",
    "tortuosity_arc_chord",
    "tortuosity_curvature",
    "branch_points",
    "end_points",
    "fractal_dimension",
)


class EvaluationError(ValueError):
    """Evaluation cannot run (empty split, unknown split); the message is one line."""


@dataclass
class _Pool:
    """Pooled counts at one threshold plus per-image scores."""

    counts: Counts = field(default_factory=Counts)
    skeleton: SkeletonCounts = field(default_factory=SkeletonCounts)
    thin_hit: int = 0
    thin_total: int = 0
    per_image: list[dict[str, float]] = field(default_factory=list)

    def add(self, pred: np.ndarray, target: np.ndarray, fov: np.ndarray | None) -> dict[str, float]:
        counts = confusion(pred, target, fov)
        skel = skeleton_counts(pred, target, fov)
        hit, total = thin_counts(pred, target, fov)
        self.counts += counts
        self.skeleton += skel
        self.thin_hit += hit
        self.thin_total += total
        scores = counts.scores() | {"cldice": skel.cldice(), "thin_recall": hit / total if total else 0.0}
        self.per_image.append(scores)
        return scores

    def summary(self, auc: float, threshold: float) -> dict[str, float]:
        scores = self.counts.scores()
        out = {key: scores[key] for key in ("f1", "iou", "precision", "recall")}
        out |= {
            "auc": auc,
            "cldice": self.skeleton.cldice(),
            "thin_recall": self.thin_hit / self.thin_total if self.thin_total else 0.0,
            "f1_per_image_mean": float(np.mean([s["f1"] for s in self.per_image])),
            "iou_per_image_mean": float(np.mean([s["iou"] for s in self.per_image])),
            "threshold": threshold,
        }
        return {k: round(float(v), 6) for k, v in out.items()}


def evaluation_samples(data_cfg: Any, split: str, contract: Any) -> tuple[list[Any], str]:
    """Raw samples of ``split`` and the label rule, split the way the model's training data was split.

    The split fractions and seed come from the model contract when it was trained on this data set, so the
    val split is the one the threshold was tuned on.
    """
    from hydra.utils import instantiate

    from vessel_lightning.data.prepare import assign_splits

    if split not in ("train", "val", "test"):
        raise EvaluationError(f"split must be train, val or test, not {split!r}")
    source = instantiate(data_cfg.source)
    found = source.discover(Path(str(data_cfg.root)).expanduser())
    rules = dict(data_cfg) | (contract.split if contract.dataset == data_cfg.name and contract.split else {})
    splits = assign_splits(found.samples, rules["val_fraction"], rules["test_fraction"], rules["seed"])
    samples = [s for s in found.samples if splits[s.id] == split]
    if not samples:
        raise EvaluationError(f"the {split!r} split of {data_cfg.name} under {data_cfg.root} is empty")
    return samples, source.label_rule


def measurement_agreement(
    rows: list[dict[str, Any]], keys: tuple[str, ...] = AGREEMENT_KEYS
) -> dict[str, Any]:
    """Per measurement, over images: Pearson r and mean absolute error of ``pred_<key>`` against ``label_<key>``,
    and both means (r is None when either side does not vary)."""
    out: dict[str, Any] = {}
    for key in keys:
        pairs = [
            (float(r[f"pred_{key}"]), float(r[f"label_{key}"]))
            for r in rows
            if r.get(f"pred_{key}") is not None and r.get(f"label_{key}") is not None
        ]
        if not pairs:
            continue
        pred, label = np.array(pairs).T
        varies = len(pairs) > 1 and pred.std() > 0 and label.std() > 0
        out[key] = {
            "pearson_r": round(float(np.corrcoef(pred, label)[0, 1]), 4) if varies else None,
            "mae": round(float(np.abs(pred - label).mean()), 6),
            "pred_mean": round(float(pred.mean()), 6),
            "label_mean": round(float(label.mean()), 6),
            "n_images": len(pairs),
        }
    return out


def evaluation_fov(mode: str, rgb: np.ndarray, official: np.ndarray | None) -> np.ndarray | None:
    """The field scores are taken in: the data set's mask (``official``; None when it has none), the detected
    one (``detect``) or None (``none``: every pixel)."""
    from vessel_lightning.data.fov import detect_fov

    if mode not in FOV_MODES:
        raise EvaluationError(f"fov must be one of {', '.join(FOV_MODES)}, not {mode!r}")
    if mode == "detect":
        return detect_fov(rgb)
    return official if mode == "official" else None


def evaluate(cfg: Any) -> dict[str, Any]:
    """Run the evaluation described by ``conf/eval.yaml``; returns the summary written to ``summary.json``."""
    from tqdm.auto import tqdm

    from vessel_lightning.data.prepare import load_sample
    from vessel_lightning.inference.backends import resolve_device, use_backend
    from vessel_lightning.inference.predictor import AUTO, Predictor
    from vessel_lightning.inference.settings import BackendSettings
    from vessel_lightning.measurements import measure_vessels
    from vessel_lightning.overlays import error_overlay, save_png
    from vessel_lightning.tracking import store

    start = time.perf_counter()
    out = Path(str(cfg.output_dir)).expanduser().resolve()
    fov_mode = str(cfg.fov)
    if fov_mode not in FOV_MODES:
        raise EvaluationError(f"fov must be one of {', '.join(FOV_MODES)}, not {fov_mode!r}")
    scale = cfg.scale
    device = resolve_device(cfg.device, "device")
    try:
        predictor = Predictor.from_uri(
            str(cfg.model_uri),
            tta=bool(cfg.tta),
            overlap=float(cfg.overlap),
            blend=str(cfg.blend),
            window=cfg.window,
            scale=AUTO if scale == AUTO else float(scale),
            reference_diameter=cfg.reference_fov_diameter,
            device=device,
        )
    except ValueError as exc:
        raise EvaluationError(str(exc)) from None
    calibration = cfg.calibration_dir
    settings = BackendSettings(
        # The store's URI, as connect() resolves it, names the backend cache folder (no MLflow import needed).
        tracking_uri=cfg.tracking_uri or store.tracking_uri(),
        calibration_dir=Path(str(calibration)).expanduser() if calibration else None,
        precision=str(cfg.precision),
    )
    backend = use_backend(predictor, str(cfg.backend), settings)
    precision = backend.precision
    contract = predictor.contract
    samples, label_rule = evaluation_samples(cfg.data, str(cfg.split), contract)
    thresholds = sorted({0.5, float(contract.threshold)})
    pools = {t: _Pool() for t in thresholds}
    histogram = ProbabilityHistogram()
    rows, measured = [], []
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    for raw in tqdm(samples, desc=f"eval {cfg.data.name}/{cfg.split}", unit="img"):
        sample = load_sample(raw, label_rule=label_rule, line_width=cfg.data.line_width)
        target = sample.mask.astype(bool)
        fov = evaluation_fov(
            fov_mode, sample.rgb, sample.fov.astype(bool) if sample.fov is not None else None
        )
        image_scale = predictor.scale_for(sample.rgb, fov)
        prob = predictor.predict_proba(sample.rgb, fov, scale=image_scale)
        histogram.add(prob, target, fov)
        row: dict[str, Any] = {"id": raw.id, "height": target.shape[0], "width": target.shape[1]}
        if scale == AUTO:
            row["scale"] = round(image_scale, 4)
        for t in thresholds:
            scores = pools[t].add(is_vessel(prob, t), target, fov)
            suffix = "" if t == contract.threshold else f"@{t:g}"
            row |= {f"{k}{suffix}": round(v, 6) for k, v in scores.items() if k != "accuracy"}
        rows.append(row)
        if cfg.measurements:
            pred_m = measure_vessels(is_vessel(prob, contract.threshold), fov).to_dict()
            label_m = measure_vessels(target, fov).to_dict()
            measured.append(
                {"id": raw.id}
                | {f"pred_{k}": v for k, v in pred_m.items() if v is not None or k in AGREEMENT_KEYS}
                | {f"label_{k}": v for k, v in label_m.items() if v is not None or k in AGREEMENT_KEYS}
            )
        if cfg.overlays:
            overlay = error_overlay(sample.rgb, is_vessel(prob, contract.threshold), target, fov)
            save_png(overlay, out / "overlays" / f"{raw.id}.png", max_side=cfg.overlay_max_side)
    auc = histogram.auc()
    best_t, best_f1 = histogram.best_threshold()
    summary: dict[str, Any] = pools[contract.threshold].summary(auc, contract.threshold)
    summary["at_threshold_0.5"] = pools[0.5].summary(auc, 0.5)
    summary["oracle_threshold_on_this_split"] = {"threshold": best_t, "f1": round(best_f1, 6)}
    summary["n_images"] = len(samples)
    if measured:
        summary["measurement_agreement"] = measurement_agreement(measured)
    summary["protocol"] = {
        "dataset": cfg.data.name,
        "split": cfg.split,
        "resolution": "native (each image's original size)",
        "inside_fov": fov_mode == "detect" or (fov_mode == "official" and any(raw.fov for raw in samples)),
        "fov": fov_mode,
        "prediction": f"{contract.mode} at {contract.size[0]}x{contract.size[1]}",
        "tta": bool(cfg.tta),
        "window": cfg.window,
        "overlap": predictor.overlap,
        "blend": predictor.blend,
        "scale": predictor.scale,
        "device": str(device),
        "precision": precision,
        "backend": backend.backend,
        "pooled": "over all pixels of all images unless named per_image",
    }
    summary["model"] = {
        "uri": predictor.info.uri,
        "name": predictor.info.name,
        "version": predictor.info.version,
        "run_id": predictor.info.run_id,
        "encoder": contract.encoder,
        "trained_on": contract.dataset,
    }
    if backend.auto is not None:
        summary["backend_choice"] = backend.auto
    summary["seconds"] = round(time.perf_counter() - start, 1)
    _write_outputs(out, summary, rows, measured)
    log.info(
        "%s/%s, %d images, native resolution: F1 %.4f IoU %.4f clDice %.4f thin recall %.4f AUC %.4f "
        "at threshold %.2f (F1 %.4f at 0.5) → %s",
        cfg.data.name, cfg.split, len(samples), summary["f1"], summary["iou"], summary["cldice"],
        summary["thin_recall"], auc, contract.threshold, summary["at_threshold_0.5"]["f1"], out,
    )  # fmt: skip
    if cfg.log_to_mlflow:
        _log_to_mlflow(cfg, summary, out)
    return summary


def _write_outputs(
    out: Path, summary: dict[str, Any], rows: list[dict[str, Any]], measured: list[dict[str, Any]]
) -> None:
    for name, table in (("per_image.csv", rows), ("measurements.csv", measured)):
        if not table:
            continue
        with (out / name).open("w", newline="") as handle:
            writer = csv.DictWriter(
                handle, fieldnames=list(dict.fromkeys(key for row in table for key in row))
            )
            writer.writeheader()
            writer.writerows(table)
    partial = out / "summary.json.partial"  # summary last and by rename: its presence means a complete run
    partial.write_text(json.dumps(summary, indent=2) + "\n")
    partial.rename(out / "summary.json")


def _log_to_mlflow(cfg: Any, summary: dict[str, Any], out: Path) -> None:
    """An evaluation run of its own (never re-logging the training run's params), linked to the model version."""
    from vessel_lightning.tracking.runs import log_evaluation

    model = summary["model"]
    tags = {"kind": "evaluation", "model_uri": model["uri"], "dataset": cfg.data.name, "split": cfg.split}
    tags |= {k: str(v) for k, v in (("model_name", model["name"]), ("model_version", model["version"]),
                                    ("source_run_id", model["run_id"])) if v}  # fmt: skip
    params = {"split": cfg.split, "dataset": cfg.data.name, "tta": cfg.tta, "window": cfg.window,
              "blend": summary["protocol"]["blend"], "scale": cfg.scale, "n_images": summary["n_images"],
              "backend": summary["protocol"]["backend"],
              "threshold": summary["threshold"], "model_uri": model["uri"]}  # fmt: skip
    metrics = {
        f"{cfg.split}/{k}": summary[k] for k in (*SUMMARY_KEYS, "f1_per_image_mean", "iou_per_image_mean")
    } | {f"{cfg.split}/{k}_at_0.5": summary["at_threshold_0.5"][k] for k in SUMMARY_KEYS}
    log_evaluation(
        str(cfg.experiment),
        f"eval {cfg.data.name}/{cfg.split} {model['name'] or ''} v{model['version'] or '-'}".strip(),
        tags,
        params,
        metrics,
        out,
        model=(model["name"], model["version"]) if model["name"] and model["version"] else None,
        version_tags={
            f"eval.{cfg.data.name}.{cfg.split}.{key}": str(summary[key])
            for key in ("f1", "iou", "cldice", "thin_recall")
        },
    )


def _main(cfg: Any) -> None:
    from vessel_lightning.contract import ContractError
    from vessel_lightning.data.sources import DataLayoutError
    from vessel_lightning.inference.settings import BackendError, DeviceError
    from vessel_lightning.tracking.bundle import BundleError, is_exported_model

    errors: tuple[type[Exception], ...] = (
        ContractError,
        EvaluationError,
        DataLayoutError,
        DeviceError,
        BackendError,
        BundleError,
        OSError,
    )
    # An exported folder scored without logging needs no store (and no MLflow: a bare GPU box may lack it).
    store = cfg.log_to_mlflow or not is_exported_model(str(cfg.model_uri))
    try:
        if store:
            from mlflow.exceptions import MlflowException

            from vessel_lightning.tracking.registry import RegistryError, connect

            errors += (MlflowException, RegistryError)
            connect(cfg.tracking_uri)
        evaluate(cfg)
    except errors as exc:
        log.error("vessel-eval: %s", str(exc).splitlines()[0])
        raise SystemExit(1) from None


def main() -> None:
    """Console entry point ``vessel-eval`` (Hydra)."""
    import hydra

    from vessel_lightning.config import CONFIG_DIR

    hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")(_main)()


if __name__ == "__main__":
    main()
