"""Vessel measurements on synthetic shapes whose answers are known exactly (or to a stated pixel tolerance)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import line
from skimage.morphology import skeletonize

from vessel_lightning.measurements import (
    MeasurementError,
    box_counting_dimension,
    measure_vessels,
    um_per_pixel_from_fov,
)


def _bar(length: int, width: int, shape: tuple[int, int] = (64, 320)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    top = shape[0] // 2 - width // 2
    mask[top : top + width, 40 : 40 + length] = True
    return mask


def _ring_arc(radius: float, half_width: float, keep) -> np.ndarray:
    size = int(2 * radius + 40)
    rows, cols = np.mgrid[:size, :size]
    centre = size / 2
    distance = np.hypot(rows - centre, cols - centre)
    return (np.abs(distance - radius) <= half_width) & keep(rows - centre, cols - centre)


@pytest.mark.parametrize("width", [1, 3, 7, 11])
def test_straight_bar_has_its_width_and_length_and_no_tortuosity(width: int) -> None:
    m = measure_vessels(_bar(200, width))
    assert m.vessel_area_px == 200 * width
    assert (
        m.calibre_p50_px == width and abs(m.calibre_mean_px - width) < 0.05
    )  # 2·d − 1, exact for odd widths
    # The length is exactly the centre line's span, which thinning stops about half a width from each end.
    _, cols = np.nonzero(skeletonize(_bar(200, width)))
    assert m.skeleton_length_px == pytest.approx(cols.max() - cols.min(), abs=0.2)  # thinning hooks its ends
    assert 200 - width - 1 <= m.skeleton_length_px <= 199
    assert m.tortuosity_arc_chord == pytest.approx(1.0, abs=1e-3)
    assert m.tortuosity_curvature < 1e-3
    assert (m.branch_points, m.end_points, m.segments) == (0, 2, 1)


@pytest.mark.parametrize("degrees", [10, 22.5, 30, 45, 60])
def test_oblique_lines_keep_their_length_and_stay_straight(degrees: float) -> None:
    mask = np.zeros((400, 400), dtype=bool)
    angle = math.radians(degrees)
    rr, cc = line(50, 50, round(50 + 300 * math.sin(angle)), round(50 + 300 * math.cos(angle)))
    mask[rr, cc] = True
    m = measure_vessels(mask)
    # The smoothed path removes the staircase: the (1, √2) chain code would read up to 8 % long at 22.5°.
    assert m.skeleton_length_px == pytest.approx(300, rel=0.01)
    assert m.tortuosity_arc_chord == pytest.approx(1.0, abs=2e-3)
    assert m.tortuosity_curvature < 2e-3


def test_semicircle_has_tortuosity_pi_over_two_and_curvature_one_over_radius() -> None:
    m = measure_vessels(_ring_arc(100, 1.5, lambda dy, dx: dy < 0))
    assert m.tortuosity_arc_chord == pytest.approx(math.pi / 2, rel=0.03)
    assert m.tortuosity_curvature == pytest.approx(1 / 100, rel=0.05)
    assert m.skeleton_length_px == pytest.approx(math.pi * 100, rel=0.03)


def test_quarter_circle_has_its_arc_over_chord() -> None:
    m = measure_vessels(_ring_arc(150, 1.5, lambda dy, dx: (dy < 0) & (dx > 0)))
    expected = (math.pi / 2) / (2 * math.sin(math.pi / 4))  # θ / (2 sin θ/2) for θ = 90°
    assert m.tortuosity_arc_chord == pytest.approx(expected, rel=0.01)
    assert m.tortuosity_curvature == pytest.approx(1 / 150, rel=0.1)


def test_y_junction_has_one_branch_point_and_three_end_points() -> None:
    mask = np.zeros((300, 300), dtype=bool)
    for end in ((20, 150), (280, 30), (280, 270)):
        rr, cc = line(150, 150, *end)
        mask[rr, cc] = True
    for thick in (mask, ndi.binary_dilation(mask, iterations=2)):
        m = measure_vessels(thick)
        assert (m.branch_points, m.end_points, m.segments) == (1, 3, 3)


def test_cross_has_one_branch_point_and_four_end_points() -> None:
    mask = np.zeros((101, 101), dtype=bool)
    mask[50, 10:91] = True
    mask[10:91, 50] = True
    m = measure_vessels(mask)
    assert (m.branch_points, m.end_points) == (1, 4)


def test_fractal_dimension_of_a_filled_square_is_2_and_of_a_line_1() -> None:
    square = np.zeros((512, 512), dtype=bool)
    square[128:384, 128:384] = True
    assert box_counting_dimension(square) == pytest.approx(2.0, abs=1e-9)
    assert measure_vessels(square).fractal_dimension == pytest.approx(2.0, abs=1e-9)
    row = np.zeros((512, 512), dtype=bool)
    row[200, 128:384] = True
    assert box_counting_dimension(row) == pytest.approx(1.0, abs=1e-9)
    diagonal = np.eye(512, dtype=bool)
    assert box_counting_dimension(diagonal) == pytest.approx(1.0, abs=0.02)
    assert box_counting_dimension(np.zeros((64, 64), dtype=bool)) is None


def test_densities_count_only_inside_the_field_of_view() -> None:
    mask = _bar(200, 5)
    fov = np.zeros_like(mask)
    fov[:, :140] = True  # keeps 100 of the bar's 200 columns
    m = measure_vessels(mask, fov)
    assert m.fov_area_px == fov.sum() and m.vessel_area_px == 500
    assert m.area_density == pytest.approx(500 / fov.sum())
    assert m.skeleton_length_density_per_px == pytest.approx(m.skeleton_length_px / fov.sum())
    assert m.skeleton_length_px == pytest.approx(100 - 3, abs=2)


def test_physical_units_follow_the_scale() -> None:
    px = measure_vessels(_bar(200, 7))
    um = measure_vessels(_bar(200, 7), um_per_pixel=2.5)
    assert um.calibre_mean_um == pytest.approx(px.calibre_mean_px * 2.5)
    assert um.skeleton_length_um == pytest.approx(px.skeleton_length_px * 2.5)
    assert um.fov_area_mm2 == pytest.approx(64 * 320 * 2.5**2 / 1e6)
    assert um.skeleton_length_density_per_mm == pytest.approx(um.skeleton_length_um / 1000 / um.fov_area_mm2)
    assert px.calibre_mean_um is None and px.to_dict()["skeleton_length_um"] is None
    # CHASE_DB1: 30° over a ~921 px field at 288 µm per degree.
    assert um_per_pixel_from_fov(921, 30) == pytest.approx(30 * 288 / 921)
    with pytest.raises(MeasurementError):
        um_per_pixel_from_fov(0, 30)


def test_to_dict_is_flat_and_json_ready() -> None:
    import json

    d = measure_vessels(_bar(200, 7), um_per_pixel=3.0).to_dict(histogram=True)
    assert json.loads(json.dumps(d)) == d
    assert all(isinstance(v, int | float) or v is None for v in d.values())
    assert d["calibre_hist_7px"] == measure_vessels(_bar(200, 7)).calibre_hist[6] > 0
    assert "calibre_hist_16px_plus" in d


def test_empty_mask_measures_zero_and_bad_input_is_an_error() -> None:
    m = measure_vessels(np.zeros((50, 60), dtype=bool))
    assert (m.vessel_area_px, m.skeleton_length_px, m.branch_points, m.end_points) == (0, 0.0, 0, 0)
    assert m.calibre_mean_px is None and m.tortuosity_arc_chord is None and m.fractal_dimension is None
    with pytest.raises(MeasurementError, match="field of view is empty"):
        measure_vessels(np.ones((5, 5)), np.zeros((5, 5), dtype=bool))
    with pytest.raises(MeasurementError, match="field of view is 6x5, mask is 5x5"):
        measure_vessels(np.ones((5, 5)), np.ones((5, 6), dtype=bool))
    with pytest.raises(MeasurementError, match="2-D"):
        measure_vessels(np.ones((5, 5, 3)))
