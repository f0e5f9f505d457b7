"""The request path's shortcuts give the values of the long way: one window, PyTorch's thread count, the FOV's
OpenCV labelling and histogram medians; and the CPU path runs without PyTorch."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from scipy.special import expit

from vessel_lightning.contract import ModelContract
from vessel_lightning.data import fov
from vessel_lightning.inference.backends import use_backend, window_batch
from vessel_lightning.inference.predictor import Predictor
from vessel_lightning.inference.settings import BackendSettings


class NumpyNetwork:
    """An array network (as ONNX Runtime or OpenVINO): fixed random 1×1 mixing of the channels."""

    def __init__(self) -> None:
        self.weights = np.random.default_rng(0).normal(size=3).astype(np.float32) * 4

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return (np.einsum("nchw,c->nhw", batch, self.weights)[:, None] - 2).astype(np.float32)


class Mixing(torch.nn.Module):
    """:class:`NumpyNetwork` as a PyTorch module."""

    def __init__(self) -> None:
        super().__init__()
        self.weights = torch.from_numpy(NumpyNetwork().weights)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nchw,c->nhw", batch, self.weights)[:, None] - 2


def contract(size: int = 32) -> ModelContract:
    return ModelContract(encoder="efficientnet-b0", size=(size, size), threshold=0.5, mode="tiles")


def photo(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_one_window_is_the_sigmoid_of_the_network_on_the_photo() -> None:
    network = NumpyNetwork()
    rgb = photo(64, 64)
    prob = Predictor(network, contract(), window=64).predict_proba(rgb)
    upload = (rgb.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0))[None]
    expected = np.clip(expit(network(upload)), 0, 1)[0, 0]
    assert prob.dtype == np.float32 and prob.shape == (64, 64)
    assert np.array_equal(prob, expected)


def test_one_window_with_padding_is_cut_back_to_the_photo() -> None:
    rgb = photo(50, 61)  # padded to 64×64: one window, cut back to 50×61
    predictor = Predictor(NumpyNetwork(), contract(), window=64)
    prob = predictor.predict_proba(rgb)
    assert prob.shape == (50, 61)
    padded = predictor._pad(predictor.ops.upload(rgb)[None], 64, 64)
    expected = expit(predictor.network(padded))[0, 0, :50, :61]
    assert np.array_equal(prob, expected)


def test_a_pytorch_module_gives_the_array_networks_values() -> None:
    rgb = photo(96, 80)  # several windows, blended
    array = Predictor(NumpyNetwork(), contract(), window=64).predict_proba(rgb)
    module = Predictor(Mixing(), contract(), window=64).predict_proba(rgb)
    assert np.abs(array - module).max() < 1e-6


def test_threads_apply_to_the_predicting_thread_and_leave_the_values_alone() -> None:
    rgb = photo(96, 80)
    reference = Predictor(Mixing(), contract(), window=64).predict_proba(rgb)
    seen: dict[str, object] = {}

    def predict() -> None:
        seen["prob"] = Predictor(Mixing(), contract(), window=64, threads=1).predict_proba(rgb)
        seen["threads"] = torch.get_num_threads()

    before = torch.get_num_threads()
    try:
        worker = threading.Thread(target=predict)
        worker.start()
        worker.join()
    finally:
        torch.set_num_threads(before)
    assert seen["threads"] == 1
    assert np.array_equal(seen["prob"], reference)


def test_the_serving_path_on_the_cpu_never_imports_pytorch() -> None:
    """The CPU image has no PyTorch: the app, the backends and a prediction with an array network must not
    import it (a fresh interpreter, so no other test's import hides one)."""
    script = """
import sys
import numpy as np
import app.server, app.model_manager, vessel_lightning.inference.auto, vessel_lightning.inference.photo
from vessel_lightning.contract import ModelContract
from vessel_lightning.inference.photo import predict_photo
from vessel_lightning.inference.predictor import Predictor
contract = ModelContract(encoder="efficientnet-b0", size=(32, 32), threshold=0.5, mode="tiles")
network = lambda batch: batch[:, :1] - 0.5
result = predict_photo(Predictor(network, contract, window=64), np.zeros((90, 70, 3), np.uint8), "detect")
assert result.mask.shape == (90, 70)
print(sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "lightning", "segmentation"))))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_openvino_serves_one_window_per_call_and_the_values_stay() -> None:
    assert window_batch("openvino") == window_batch("openvino-bf16") == window_batch("openvino-int8") == 1
    assert window_batch("onnx") is None and window_batch("torch") is None
    rgb = photo(150, 170)  # 12 windows of 64²
    one, four = (
        Predictor(NumpyNetwork(), contract(), window=64, batch_windows=n).predict_proba(rgb) for n in (1, 4)
    )
    assert np.array_equal(one, four)


@pytest.mark.slow  # ~10 s: exports a B0 to ONNX and compiles it in OpenVINO
def test_the_clis_backends_follow_the_servers_thread_and_window_rules(network, tmp_path) -> None:
    """vessel-eval and vessel-predict swap the network with use_backend: the predictor then takes the server's
    windows per call for the backend it got (PyTorch its threads), and its probabilities stay PyTorch's."""
    rgb = photo(150, 170)  # 12 windows of 64²
    reference = Predictor(network, contract(64), window=64).predict_proba(rgb)
    before = torch.get_num_threads()  # a predictor sets the count of the thread it predicts in
    try:
        for backend, windows in (("torch", 64), ("onnx", 64), ("openvino", 1)):  # 64 windows of 64² = 512²
            predictor = Predictor(network, contract(64), window=64, threads=2)
            result = use_backend(predictor, backend, BackendSettings(cache_dir=tmp_path, threads=2))
            assert result.backend == backend
            assert getattr(predictor.network, "threads", None) == (2 if backend == "torch" else None)
            assert predictor.windows_per_call(64, 64) == windows
            assert np.abs(predictor.predict_proba(rgb) - reference).max() < 1e-4
    finally:
        torch.set_num_threads(before)


def test_cpu_calls_hold_about_512_squared_pixels_and_an_explicit_batch_wins() -> None:
    predictor = Predictor(NumpyNetwork(), contract())
    assert [predictor.windows_per_call(s, s) for s in (512, 384, 256, 128, 1024)] == [1, 1, 4, 16, 1]
    assert Predictor(NumpyNetwork(), contract(), batch_windows=3).windows_per_call(512, 512) == 3
    calls: list[int] = []

    class Counting(NumpyNetwork):
        def __call__(self, batch: np.ndarray) -> np.ndarray:
            calls.append(batch.shape[0])
            return super().__call__(batch)

    Predictor(Counting(), contract(), window=64).predict_proba(photo(150, 170))
    assert calls == [12]  # 3 × 4 windows of 64², up to 64 per call: one call (4 per call before)


@pytest.mark.parametrize("size", [1, 2, 7, 8, 1000, 1001])
def test_histogram_median_is_numpys(size: int) -> None:
    rng = np.random.default_rng(size)
    for values in (rng.integers(0, 256, size, dtype=np.uint8), np.full(size, 7, np.uint8)):
        assert fov._median_uint8(values) == float(np.median(values))


def test_largest_region_and_holes_are_scipys() -> None:
    rng = np.random.default_rng(3)
    for _ in range(40):
        mask = rng.random((int(rng.integers(2, 60)), int(rng.integers(2, 60)))) < rng.uniform(0.2, 0.8)
        labels, count = ndi.label(mask)
        largest = fov._largest_region(mask)
        if count == 0:
            assert largest is None
            continue
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        assert np.array_equal(largest, labels == sizes.argmax())
        assert np.array_equal(fov._fill_holes(mask), ndi.binary_fill_holes(mask))


def test_a_tie_for_the_largest_region_goes_to_the_first_in_raster_order() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[12:15, 1:4] = True  # 9 pixels, lower left: second in raster order
    mask[2:5, 15:18] = True  # 9 pixels, upper right: first
    region = fov._largest_region(mask)
    assert region[3, 16] and not region[13, 2]


def test_response_png_holds_the_array_exactly() -> None:
    import io

    from PIL import Image

    from app.measure import encode_png

    rng = np.random.default_rng(4)
    values = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    values[:10] = 0  # runs, as outside the field of view
    mask = rng.random((20, 31)) < 0.3
    for array, expected in ((values, values), (mask, mask.astype(np.uint8) * 255), (values.T, values.T)):
        decoded = Image.open(io.BytesIO(encode_png(array)))
        assert decoded.format == "PNG" and decoded.mode == "L"
        assert np.array_equal(np.asarray(decoded), expected)


def test_plain_png_fast_path_gives_pillows_pixels_and_leaves_the_rest_to_pillow() -> None:
    import io

    from PIL import Image

    from app.decode import _plain_png, decode_image

    rgb = photo(45, 67)

    def png(image: Image.Image, **options: object) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", **options)
        return buffer.getvalue()

    plain = png(Image.fromarray(rgb))
    assert np.array_equal(_plain_png(plain, 67, 45), rgb)
    assert np.array_equal(decode_image(plain, 10_000), rgb)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    rotated = png(Image.fromarray(rgb), exif=exif.tobytes())
    assert _plain_png(rotated, 67, 45) is None
    assert decode_image(rotated, 10_000).shape == (67, 45, 3)
    with_transparency = png(Image.fromarray(rgb), transparency=(1, 2, 3))
    expected = np.asarray(Image.open(io.BytesIO(with_transparency)).convert("RGB"))
    assert np.array_equal(decode_image(with_transparency, 10_000), expected)
    assert _plain_png(png(Image.fromarray(rgb).convert("RGBA")), 67, 45) is None
    assert _plain_png(plain[: len(plain) // 2], 67, 45) is None
