"""The training callback that writes a run's files (figures, learning curves, best checkpoint, network file and
contract) and logs them, and the network as a bundle-format MLflow model, to the run's MLflow store.

It lives in tracking, not training (which never imports tracking): ``conf/callbacks/default.yaml`` names it."""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer

from vessel_lightning.contract import CONTRACT_FILE, NETWORK_FILE, ModelContract
from vessel_lightning.training.callbacks import (
    CURVE_KEYS,
    find_mlflow_logger,
    learning_curves_figure,
    overlay_figure,
    training_fov_diameter,
)

log = logging.getLogger(__name__)


def validation_crops(datamodule: Any, contract: ModelContract, count: int) -> list[np.ndarray]:
    """Up to ``count`` crops of validation photos (training photos when there is no validation split) as the
    network sees them (:func:`~vessel_lightning.data.images.network_crops`), for the registered bundle."""
    from vessel_lightning.data.images import network_crops, read_rgb

    manifest = getattr(datamodule, "manifest", None)
    prepared = getattr(datamodule, "prepared_dir", None)
    if count <= 0 or not manifest or prepared is None:
        return []
    samples = [s for s in manifest["samples"] if s["split"] == "val"] or manifest["samples"]
    crops: list[np.ndarray] = []
    per_photo = max(1, -(-count // len(samples)))  # spread over as many photos as there are
    for sample in samples:
        rgb = read_rgb(Path(prepared) / sample["image"])
        crops += network_crops(rgb, contract.mode, contract.size, per_photo)
        if len(crops) >= count:
            break
    return crops[:count]


class MlflowArtifacts(Callback):
    """Writes figures and files to ``<output_dir>/artifacts`` and, with an MLflow logger, logs them to the run.

    - every ``figure_every_n_epochs`` validation epochs and at the end: sample predictions overlaid on images;
    - at the end: learning curves, the best checkpoint, ``network.pt`` (the best weights + plain config,
      loadable by ``vessel_lightning.models.load_network`` without training code), ``contract.json`` beside it
      (so a run trained where no store is reachable can be imported later: ``vessel-import-run``) and, with
      ``log_model``, the best network as a bundle-format MLflow model with that contract
      (``vessel_lightning.tracking.model_logging.log_network_file``; the threshold is the one tuned on validation when that
      checkpoint was saved);
    - in every checkpoint: the MLflow run id, so a resumed training continues the same run.
    The per-epoch history lives in the checkpoint too, so curves of a resumed run are complete.
    """

    def __init__(
        self,
        figure_every_n_epochs: int = 10,
        log_best_checkpoint: bool = True,
        log_model: bool = True,
        output_dir: str | None = None,
        calibration_crops: int = 8,
    ) -> None:
        self.figure_every_n_epochs = figure_every_n_epochs
        self.log_best_checkpoint = log_best_checkpoint
        self.log_model = log_model
        self.calibration_crops = calibration_crops
        self.output_dir = output_dir
        self.history: list[dict[str, float]] = []

    def _dir(self, trainer: Trainer) -> Path:
        return Path(self.output_dir or trainer.default_root_dir) / "artifacts"

    def _log_file(self, trainer: Trainer, path: Path, artifact_path: str) -> None:
        logger = find_mlflow_logger(trainer)
        if logger is not None and trainer.is_global_zero:
            logger.experiment.log_artifact(logger.run_id, str(path), artifact_path)

    def _save_figure(self, trainer: Trainer, pl_module: LightningModule, name: str) -> None:
        samples = getattr(pl_module, "val_samples", None)
        if not samples or not trainer.is_global_zero:
            return
        from PIL import Image

        path = self._dir(trainer) / "figures" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(overlay_figure(samples, pl_module.hparams.get("threshold", 0.5))).save(path)
        self._log_file(trainer, path, "figures")

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or self.figure_every_n_epochs <= 0:
            return
        if (trainer.current_epoch + 1) % self.figure_every_n_epochs == 0:
            self._save_figure(trainer, pl_module, f"predictions_epoch_{trainer.current_epoch:03d}.png")

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        metrics = trainer.callback_metrics
        entry = {"epoch": float(trainer.current_epoch)}
        entry.update({k: float(metrics[k]) for k in CURVE_KEYS if k in metrics})
        self.history.append(entry)

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        logger = find_mlflow_logger(trainer)
        if logger is not None:
            checkpoint["mlflow_run_id"] = logger.run_id

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero or trainer.fast_dev_run:  # type: ignore[attr-defined]  # Lightning sets it from a connector
            return
        self._save_figure(trainer, pl_module, "predictions_final.png")
        if self.history and importlib.util.find_spec("matplotlib") is not None:
            curves = learning_curves_figure(self.history, self._dir(trainer) / "learning_curves.png")
            self._log_file(trainer, curves, "figures")
        elif self.history:  # a bare GPU box may lack it; the curves are in the logged metrics anyway
            log.warning("matplotlib is not installed: learning_curves.png not drawn")
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")  # "" without a ModelCheckpoint
        if best and self.log_best_checkpoint:
            self._log_file(trainer, Path(best), "checkpoints")
        self._export_network(trainer, pl_module, best)

    def _export_network(self, trainer: Trainer, pl_module: LightningModule, best: str) -> None:
        from vessel_lightning.models.networks import save_network

        net = getattr(pl_module, "net", None)
        config = pl_module.hparams.get("net")
        if net is None or config is None:
            return
        full = pl_module.state_dict()
        if best:
            full = torch.load(best, map_location="cpu", weights_only=False, mmap=True)["state_dict"]
        state = {k[len("net.") :]: v for k, v in full.items() if k.startswith("net.")}
        path = save_network(self._dir(trainer) / NETWORK_FILE, state, config)
        threshold = float(full.get("val_threshold", pl_module.hparams.get("threshold", 0.5)))
        contract = self._contract(trainer, dict(config), threshold)
        contract_path = path.with_name(CONTRACT_FILE)
        contract_path.write_text(json.dumps(contract.to_dict(), indent=2))
        self._log_file(trainer, path, "network")
        self._log_file(trainer, contract_path, "network")
        logger = find_mlflow_logger(trainer)
        if self.log_model and logger is not None:
            from vessel_lightning.tracking.model_logging import log_network_file  # imports mlflow

            datamodule = getattr(trainer, "datamodule", None)
            crops = validation_crops(datamodule, contract, self.calibration_crops)
            assert logger.run_id is not None  # the logger's run exists once it has logged
            log_network_file(path, contract, logger.run_id, calibration=crops)

    @staticmethod
    def _contract(trainer: Trainer, config: Mapping[str, Any], threshold: float) -> ModelContract:
        """The model contract of the exported network: architecture, data mode and size, tuned threshold."""
        from vessel_lightning.contract import ModelContract
        from vessel_lightning.data.prepare import size_hw

        datamodule = getattr(trainer, "datamodule", None)
        data = getattr(datamodule, "cfg", None) or {}
        ckpt = trainer.checkpoint_callback
        score = getattr(ckpt, "best_model_score", None) if ckpt else None
        metrics = {"val/f1": float(score)} if score is not None else {}
        return ModelContract(
            encoder=config.get("encoder_name", ""),
            arch=config.get("arch", "unet"),
            mode=str(data.get("mode", "resize")),
            size=size_hw(data.get("size", 512)),
            threshold=threshold,
            dataset=str(data.get("name", "")),
            metrics=metrics,
            split={k: float(data[k]) for k in ("val_fraction", "test_fraction", "seed") if k in data},
            fov_diameter=training_fov_diameter(datamodule),
        )


def dataset_input(manifest: Mapping[str, Any], context: str = "train") -> Any:
    """An MLflow dataset input for a prepared data set's ``manifest``: its name, the first 12 characters of its
    fingerprint (the digest of its settings and of every sample's image, label and sidecar), its raw folder as
    the source and its size per split as the profile."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    counts = dict(manifest.get("counts") or {})
    profile = {"samples": len(manifest["samples"]), **counts, "fingerprint": manifest["fingerprint"]}
    dataset = Dataset(
        name=str(manifest["name"]),
        digest=str(manifest["fingerprint"])[:12],
        source_type="local",
        source=json.dumps({"uri": str((manifest.get("config") or {}).get("root", ""))}),
        profile=json.dumps(profile),
    )
    return DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])


class DatasetInputs(Callback):
    """Logs the prepared data the run trains on (and a ``data.mix_with`` folder joined to it) as MLflow dataset
    inputs, so MLflow's Dataset column says what each run saw: name, digest and size."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        logger = find_mlflow_logger(trainer)
        datamodule = getattr(trainer, "datamodule", None)
        manifest = getattr(datamodule, "manifest", None)
        if logger is None or not trainer.is_global_zero or not manifest or "fingerprint" not in manifest:
            return
        inputs = [dataset_input(manifest)]
        data = getattr(datamodule, "cfg", None)
        mixed = data.get("mix_with") if data is not None else None
        if mixed:
            from vessel_lightning.data.prepare import read_manifest

            inputs.append(dataset_input(read_manifest(Path(str(mixed)).expanduser()), "train"))
        logger.experiment.log_inputs(logger.run_id, datasets=inputs)
