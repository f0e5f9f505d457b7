"""Field-of-view detection on synthetic fundus-like and frame-filling photos, its diameter, and the Predictor's
field (predictions outside it are 0; scale=auto follows the field's size). Real photos: tests/test_fov_real.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers.app import fundus_photo
from vessel_lightning.contract import ModelContract
from vessel_lightning.data.fov import FOVError, apply_fov, detect_fov, fov_diameter
from vessel_lightning.inference.predictor import Predictor, served_mask


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize(("height", "width", "radius"), [(240, 250, 115), (234, 350, 163), (300, 300, 140)])
def test_detects_the_disc_and_its_diameter(height: int, width: int, radius: float) -> None:
    rgb, disc = fundus_photo(height, width, radius)
    fov = detect_fov(rgb)
    assert fov.shape == (height, width) and fov.dtype == bool
    assert _iou(fov, disc) >= 0.99
    # A disc cut by the top and bottom of the frame (the 234×350 case, like HRF) still gets its full diameter.
    assert fov_diameter(fov) == pytest.approx(2 * radius, rel=0.01)


def test_a_dark_vessel_or_lesion_inside_the_disc_stays_in_the_field() -> None:
    rgb, disc = fundus_photo(240, 250, 115)
    rgb[100:140, 100:110] = 0  # darker than the threshold: a hole the field must fill
    assert _iou(detect_fov(rgb), disc) >= 0.99


def test_photos_that_fill_the_frame_get_the_whole_frame() -> None:
    rng = np.random.default_rng(1)
    slit_lamp = np.clip(rng.normal(150, 40, (120, 160, 3)), 0, 255).astype(np.uint8)
    assert detect_fov(slit_lamp).all()
    dark_corner = slit_lamp.copy()
    dark_corner[:30, :30] = 0  # a dark corner but no disc: still the whole frame
    assert detect_fov(dark_corner).all()
    assert detect_fov(np.zeros((50, 60, 3), np.uint8)).all()  # no contrast at all
    assert fov_diameter(np.ones((120, 160), bool)) == 160.0


def test_bad_input_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        detect_fov(np.zeros((10, 10), np.uint8))
    with pytest.raises(FOVError, match="empty"):
        fov_diameter(np.zeros((10, 10), bool))
    with pytest.raises(FOVError, match="field of view is 4x3, image is 5x3"):
        apply_fov(np.ones((3, 5), np.float32), np.ones((3, 4), bool))


class _Bright(nn.Module):
    """A network that calls every pixel a vessel (logit 5), whatever the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1, *x.shape[2:]), 5.0)


def test_predictor_zeroes_probabilities_outside_the_field() -> None:
    rgb, disc = fundus_photo(234, 350, 163)
    predictor = Predictor(_Bright(), ModelContract(encoder="none", mode="tiles", size=(64, 64)))
    everywhere = predictor.predict_proba(rgb)
    assert everywhere.min() > 0.99
    detected = predictor.predict_proba(rgb, "detect")
    field = detect_fov(rgb)
    assert (detected[~field] == 0).all() and (detected[field] > 0.99).all()
    given = served_mask(predictor.predict_proba(rgb, disc), predictor.threshold)
    assert np.array_equal(given, disc)
    with pytest.raises(ValueError, match="'detect' or None"):
        predictor.predict_proba(rgb, "yes")


def test_scale_auto_resamples_by_the_ratio_of_field_diameters() -> None:
    seen: list[tuple[int, ...]] = []

    class _Spy(_Bright):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(tuple(x.shape))
            return super().forward(x)

    rgb, _ = fundus_photo(234, 350, 163)  # field diameter 326 px
    tiles = ModelContract(encoder="none", mode="tiles", size=(64, 64), fov_diameter=163.0)
    predictor = Predictor(_Spy(), tiles, scale="auto", overlap=0.0, window=512)
    assert predictor.scale_for(rgb) == pytest.approx(0.5, rel=0.01)
    prob = predictor.predict_proba(rgb)
    assert prob.shape == (234, 350)
    assert seen == [(1, 3, 128, 192)]  # 117×175 after resampling, padded to the divisor 32
    # No disc, no ratio: a frame-filling photo is read at its own scale.
    flat = np.full((100, 120, 3), 150, np.uint8)
    assert predictor.scale_for(flat) == 1.0
    # The reference can be given for models whose contract predates fov_diameter.
    old = ModelContract(encoder="none", mode="tiles", size=(64, 64))
    assert Predictor(_Bright(), old, scale="auto", reference_diameter=652).scale_for(rgb) == pytest.approx(
        2, rel=0.01
    )
    with pytest.raises(ValueError, match="no fov_diameter"):
        Predictor(_Bright(), old, scale="auto")
    # Resize models always see their training size: auto is 1 for them.
    resize = ModelContract(encoder="none", mode="resize", size=(64, 64))
    assert Predictor(_Bright(), resize, scale="auto").scale_for(rgb) == 1.0
    with pytest.raises(ValueError, match="a number or 'auto'"):
        Predictor(_Bright(), tiles, scale="big")


def test_training_records_the_median_field_diameter_of_its_tile_photos(tmp_path) -> None:
    from types import SimpleNamespace

    from PIL import Image

    from vessel_lightning.training.callbacks import training_fov_diameter

    samples = []
    for i, radius in enumerate((40, 50, 60, 45)):
        rgb, disc = fundus_photo(160, 170, radius, seed=i)
        Image.fromarray(rgb).save(tmp_path / f"{i}.png")
        entry = {"split": "val" if i == 3 else "train", "image": f"{i}.png"}
        if i != 0:  # sample 0 has no FOV file: its field is detected on the photo
            Image.fromarray(disc.astype(np.uint8) * 255).save(tmp_path / f"{i}.fov.png")
            entry["fov"] = f"{i}.fov.png"
        samples.append(entry)
    tiles = SimpleNamespace(manifest={"mode": "tiles", "samples": samples}, prepared_dir=tmp_path)
    assert training_fov_diameter(tiles) == pytest.approx(100, rel=0.01)  # radii 40, 50, 60 (train only)
    resize = SimpleNamespace(manifest={"mode": "resize", "samples": samples}, prepared_dir=tmp_path)
    assert training_fov_diameter(resize) is None
