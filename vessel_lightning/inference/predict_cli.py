"""``vessel-predict``: vessel masks, measurements and GeoJSON for a batch of photos or folders of photos.

    vessel-predict photo1.png photo2.jpg --out results/
    vessel-predict eyes/ --out results/ --model-uri runs:/<run_id>/model --threshold 0.4 --tta
    vessel-predict eyes/ --out results/ --format png,geojson --fov-degrees 30
    vessel-predict slitlamp/images --out slitlamp/annotations --format geojson   # then vessel-prepare data=geojson
    vessel-predict eyes/ --out results/ --backend openvino-bf16 --calibration-dir train-photos/
    vessel-predict study.csv --out results/ --engine ray --actors 4      # a manifest (column photo), on Ray

``--backend`` (default ``auto``, as ``vessel-serve``) picks the runtime: the fastest this CPU runs accurately, cached
per model version and CPU, or a named one (``torch``, ``onnx``, ``openvino``, ...).

For each photo (a folder stands for the image files directly inside it) writes into ``--out``: with
``--format png`` (default) ``<name>.mask.png`` ({0, 255} at the photo's size and the threshold),
``<name>.prob.png`` (probability × 255), ``<name>.overlay.png`` (vessels over the photo) and, when the field of
view was detected, ``<name>.fov.png``; with ``--format geojson`` ``<name>.geojson`` (vessel Polygons in the
pixel convention ``vessel-prepare data=geojson`` reads). Always ``measurements.csv``: one row per photo with
the field of view and the vessel measurements of ``vessel_lightning.measurements`` (inside the
field, in pixels, and in µm when ``--um-per-pixel`` or ``--fov-degrees`` gives the scale).
Photos come as files, folders, or CSV manifests (a ``photo`` column; relative paths from the manifest's folder).
A photo that cannot be read or predicted is a row with its ``error``; the exit status is 1 if any failed. Every
file is written atomically and ``measurements.csv`` (sorted by photo) when the batch ends, so a rerun into the same
``--out`` skips the photos whose outputs are complete and an interrupted batch resumes (``--overwrite``: redo all).

``--engine ray`` predicts on a pool of Ray actors (:mod:`vessel_lightning.inference.ray_engine`; the cluster at
``$RAY_ADDRESS`` or a local one) and writes the same files. From Python: :func:`predict_batch`.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vessel_lightning.inference.outputs import (  # noqa: F401  (the command's names, as before)
    CSV_LEAD,
    CSV_NAME,
    FORMATS,
    OUTPUT_SUFFIXES,
    MeasurementsTable,
    OutputSpec,
    error_row,
    measurement_columns,
    predict_to_files,
)

ENGINES = ("local", "ray")


def read_manifest(path: Path) -> list[Path]:
    """The photos a CSV manifest lists in its ``photo`` column (relative paths from the manifest's folder)."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if "photo" not in (reader.fieldnames or []):
            raise ValueError(f"{path}: a manifest needs a 'photo' column (found {reader.fieldnames})")
        return [path.parent / row["photo"] for row in reader if row["photo"].strip()]


def expand_photos(paths: Sequence[Path]) -> list[Path]:
    """Files as given; a folder becomes the image files directly inside it (sorted), except our own outputs; a
    ``.csv`` file the photos it lists."""
    from vessel_lightning.data.images import IMAGE_EXTENSIONS

    photos: list[Path] = []
    for path in paths:
        if path.suffix.lower() == ".csv" and path.is_file():
            photos.extend(read_manifest(path))
        elif path.is_dir():
            photos.extend(
                p
                for p in sorted(path.iterdir())
                if p.is_file()
                and p.suffix.lower() in IMAGE_EXTENSIONS
                and not p.name.lower().endswith(OUTPUT_SUFFIXES)
            )
        else:
            photos.append(path)
    return photos


def _formats(value: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    unknown = [v for v in chosen if v not in FORMATS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"--format takes {', '.join(FORMATS)} (comma-separated), not {value!r}"
        )
    return chosen


def _scale(value: str) -> float | str:
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--scale takes a number or 'auto', not {value!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``vessel-predict``."""
    from vessel_lightning.config import DEFAULT_MODEL_URI
    from vessel_lightning.inference.settings import BACKENDS

    parser = argparse.ArgumentParser(prog="vessel-predict", description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="+", type=Path, help="image files or folders of them")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if needed)")
    parser.add_argument("--model-uri", default=DEFAULT_MODEL_URI)
    parser.add_argument("--threshold", type=float, help="default: the model's recommended threshold")
    parser.add_argument(
        "--format", type=_formats, default=("png",), help="png (default), geojson or png,geojson"
    )
    parser.add_argument(
        "--fov",
        choices=("detect", "none"),
        default="detect",
        help="detect: find the field of view (fundus disc; whole frame otherwise), predict 0 outside it "
        "(default); none: the whole frame",
    )
    parser.add_argument(
        "--scale", type=_scale, default=1.0, help="tile models: resample factor, or 'auto' (field diameters)"
    )
    parser.add_argument(
        "--reference-fov-diameter",
        type=float,
        help="--scale auto for models whose contract has no fov_diameter: the training photos' field diameter (px)",
    )
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--um-per-pixel", type=float, help="physical scale: measurements also in µm")
    scale.add_argument(
        "--fov-degrees", type=float, help="the field's angular diameter (scale from its pixels)"
    )
    parser.add_argument("--tta", action="store_true", help="average flips (3× slower)")
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA when PyTorch sees a GPU, else CPU), cpu, cuda, cuda:N"
    )
    parser.add_argument(
        "--precision", default="auto", help="on a GPU: auto (fp16), fp32, fp16, bf16 (as VESSEL_PRECISION)"
    )
    parser.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="runtime on the CPU (auto: the fastest accurate one, as vessel-serve)",
    )
    parser.add_argument(
        "--calibration-dir",
        type=Path,
        default=os.environ.get("VESSEL_CALIBRATION_DIR") or None,
        help="photos for int8 calibration and auto's mask gate (default: $VESSEL_CALIBRATION_DIR)",
    )
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or the embedded store")
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local: this process (default); ray: a pool of Ray actors ($RAY_ADDRESS, else a local Ray)",
    )
    parser.add_argument("--actors", type=int, help="--engine ray: actors (default: one per GPU, else 2)")
    parser.add_argument(
        "--overwrite", action="store_true", help="predict every photo, also those already done"
    )
    args = parser.parse_args(argv)
    if args.actors is not None and args.actors < 1:
        parser.error("--actors must be at least 1")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        parser.error("--threshold must be within [0, 1]")
    for name in ("um_per_pixel", "fov_degrees"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")

    try:
        photos = expand_photos(args.photos)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not photos:
        print("error: no image files found in " + ", ".join(map(str, args.photos)), file=sys.stderr)
        return 1
    spec = OutputSpec(args.out, args.format, args.fov, args.um_per_pixel, args.fov_degrees)
    try:
        summary = predict_batch(
            photos,
            spec,
            model_uri=args.model_uri,
            threshold=args.threshold,
            engine=args.engine,
            actors=args.actors,
            overwrite=args.overwrite,
            backend=args.backend,
            device=args.device,
            precision=args.precision,
            calibration_dir=args.calibration_dir,
            tracking_uri=args.tracking_uri,
            tta=args.tta,
            scale=args.scale,
            reference_diameter=args.reference_fov_diameter,
        )
    except LoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, message in summary.errors.items():
        print(f"error: {message if name in message else f'{name}: {message}'}", file=sys.stderr)
    print(
        f"{summary.done} photo(s) → {args.out} ({summary.predicted} predicted, {summary.skipped} already done; "
        f"model {summary.model}, threshold {summary.threshold:.2f}, backend {summary.backend}, engine "
        f"{args.engine}, {CSV_NAME})"
    )
    return 1 if summary.errors else 0


class LoadError(RuntimeError):
    """The model or its runtime cannot be loaded (one line, for the command's error)."""


@dataclass(frozen=True)
class BatchSummary:
    """What a batch did: photos done (predicted now or skipped as complete), failed ones by photo with their error,
    the model, threshold and runtime used, and the table written."""

    predicted: int
    skipped: int
    errors: dict[str, str]
    model: str
    threshold: float
    backend: str
    csv: Path

    @property
    def done(self) -> int:
        return self.predicted + self.skipped - len(self.errors)


def predict_batch(
    photos: Sequence[Path | str],
    spec: OutputSpec | Path | str,
    *,
    model_uri: str | None = None,
    threshold: float | None = None,
    engine: str = "local",
    actors: int | None = None,
    overwrite: bool = False,
    backend: str = "auto",
    device: str = "auto",
    precision: str = "auto",
    calibration_dir: Path | None = None,
    tracking_uri: str | None = None,
    tta: bool = False,
    scale: float | str = 1.0,
    reference_diameter: float | None = None,
) -> BatchSummary:
    """Predict a batch of photos into an output folder, as ``vessel-predict`` does; return what was done.

    ``spec``: the :class:`OutputSpec` (or just the output folder: PNG masks, detected field). ``engine``:
    ``local`` (this process) or ``ray`` (``actors`` Ray actors; ``$RAY_ADDRESS`` or a local Ray). Photos whose
    outputs are complete from an earlier run are skipped unless ``overwrite``. Raises :class:`LoadError` when the
    model or runtime cannot be loaded; a photo that fails is an ``error`` row and an entry of ``errors``.
    """
    from mlflow.exceptions import MlflowException
    from tqdm.auto import tqdm

    from vessel_lightning.config import DEFAULT_MODEL_URI
    from vessel_lightning.contract import ContractError
    from vessel_lightning.inference.backends import load_predictor, resolve_device
    from vessel_lightning.inference.settings import BackendError, BackendSettings, DeviceError
    from vessel_lightning.tracking.bundle import BundleError
    from vessel_lightning.tracking.registry import RegistryError, connect

    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: one of {', '.join(ENGINES)}")
    if not isinstance(spec, OutputSpec):
        spec = OutputSpec(Path(spec))
    paths = [Path(p) for p in photos]
    model_uri = model_uri or DEFAULT_MODEL_URI
    try:
        uri = connect(tracking_uri)
        settings = BackendSettings(tracking_uri=uri, calibration_dir=calibration_dir, precision=precision)
        chosen_device = resolve_device(device, "--device")
        predictor, result = load_predictor(
            model_uri,
            backend,
            settings,
            chosen_device,
            tta=tta,
            scale=scale,
            reference_diameter=reference_diameter,
        )
    except (
        MlflowException,
        ContractError,
        RegistryError,
        BackendError,
        BundleError,
        DeviceError,
        ValueError,
    ) as exc:
        raise LoadError(str(exc).splitlines()[0]) from exc
    threshold = predictor.threshold if threshold is None else threshold
    table = MeasurementsTable(spec, paths, threshold)
    todo = [p for p in paths if overwrite or not table.complete(p)]
    try:
        if engine == "ray" and todo:
            from vessel_lightning.inference.ray_engine import ModelSpec, predict_with_ray

            model = ModelSpec(
                predictor.info.uri, result.backend, settings, "cpu", tta, scale, reference_diameter
            )
            table.add_all(predict_with_ray(todo, spec, model, threshold, actors=actors))
        else:
            inputs = {p.resolve() for p in paths}
            model_info = {"uri": predictor.info.uri, "version": predictor.info.version}
            for photo in tqdm(todo, desc="predict", unit="img"):
                try:
                    row = predict_to_files(predictor, photo, spec, threshold, inputs, model_info)
                except Exception as exc:  # the photo's row says what went wrong; the batch goes on
                    row = error_row(photo, exc)
                table.add(row)
    finally:
        csv_path = table.close()
    return BatchSummary(
        predicted=len(todo),
        skipped=len(paths) - len(todo),
        errors={name: table.rows[name]["error"] for name in table.failed},
        model=predictor.info.uri,
        threshold=threshold,
        backend=result.backend,
        csv=csv_path,
    )


if __name__ == "__main__":
    raise SystemExit(main())
