"""Device selection, GPU precision rules, dynamic batching and serving from an exported folder (CPU), plus the
GPU backend's accuracy condition where CUDA exists."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from torch import nn

from app.batching import DynamicBatcher
from app.server import create_app, main
from app.settings import Settings, SettingsError
from tests.helpers.app import png_bytes
from vessel_lightning.contract import ModelContract
from vessel_lightning.inference.backends import build_backend, describe_device
from vessel_lightning.inference.predictor import Predictor
from vessel_lightning.inference.settings import BackendError, BackendSettings, DeviceError
from vessel_lightning.inference.torch_runtime import resolve_device, resolve_precision
from vessel_lightning.models.onnx import TorchArrays
from vessel_lightning.tracking.bundle import ModelInfo

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")


def _fake_gpus(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


# --- device selection ---------------------------------------------------------------------------------------


def test_auto_takes_the_gpu_when_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_gpus(monkeypatch, 0)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device(None) == torch.device("cpu")
    _fake_gpus(monkeypatch, 2)
    assert resolve_device("auto") == torch.device("cuda:0")
    assert resolve_device("cuda") == torch.device("cuda:0") and resolve_device("CUDA:1") == torch.device(
        "cuda:1"
    )
    assert resolve_device("cpu") == torch.device("cpu")


def test_cuda_without_a_gpu_is_an_error_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_gpus(monkeypatch, 0)
    with pytest.raises(DeviceError, match=r"VESSEL_DEVICE=cuda: PyTorch sees no CUDA GPU"):
        resolve_device("cuda", "VESSEL_DEVICE")
    _fake_gpus(monkeypatch, 1)
    with pytest.raises(DeviceError, match=r"--device=cuda:1: this machine has 1 CUDA device"):
        resolve_device("cuda:1", "--device")
    for bad in ("gpu", "cuda:x", "cuda0", "mps"):
        with pytest.raises(DeviceError, match=r"use auto, cpu, cuda or cuda:N"):
            resolve_device(bad, "VESSEL_DEVICE")


def test_settings_refuse_bad_gpu_knobs(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value, message in (
        ("VESSEL_DEVICE", "gpu", "VESSEL_DEVICE='gpu'"),
        ("VESSEL_PRECISION", "fp8", "VESSEL_PRECISION='fp8'"),
        ("VESSEL_BATCHING", "maybe", "VESSEL_BATCHING='maybe'"),
        ("VESSEL_COMPILE", "perhaps", "VESSEL_COMPILE='perhaps'"),
        ("VESSEL_BATCH_MAX", "0", "VESSEL_BATCH_MAX='0'"),
    ):
        with monkeypatch.context() as patch:
            patch.setenv(name, value)
            with pytest.raises(SettingsError, match=message):
                Settings.from_env()
    monkeypatch.setenv("VESSEL_DEVICE", "cuda:1")
    monkeypatch.setenv("VESSEL_PRECISION", "bf16")
    monkeypatch.setenv("VESSEL_BATCHING", "on")
    monkeypatch.setenv("VESSEL_COMPILE", "1")
    monkeypatch.setenv("VESSEL_BATCH_WAIT_MS", "2.5")
    settings = Settings.from_env()
    assert (settings.device, settings.precision, settings.batching) == ("cuda:1", "bf16", "on")
    assert settings.compile and settings.batch_wait_ms == 2.5 and settings.batch_max == 16
    assert (
        settings.batching_on("cpu") and Settings().batching_on("cuda") and not Settings().batching_on("cpu")
    )
    assert Settings().resolved_workers("cpu") == 1 and Settings().resolved_workers("cuda") == 4
    assert Settings(workers=3).resolved_workers("cuda") == 3


@no_cuda
def test_serve_with_cuda_on_a_cpu_machine_stops_at_start_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VESSEL_DEVICE", "cuda")
    assert main([]) == 2
    assert "error: VESSEL_DEVICE=cuda: PyTorch sees no CUDA GPU" in capsys.readouterr().out
    monkeypatch.setenv("VESSEL_DEVICE", "auto")
    assert main(["--device", "cuda:0"]) == 2
    assert "error: --device=cuda:0: PyTorch sees no CUDA GPU" in capsys.readouterr().out
    with pytest.raises(DeviceError, match="VESSEL_DEVICE=cuda"):
        create_app(Settings(device="cuda"))


def test_precision_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32" and resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(BackendError, match="precision fp16 is for a CUDA device"):
        resolve_precision("fp16", cpu)
    with pytest.raises(BackendError, match="unknown precision 'int4'"):
        resolve_precision("int4", cpu)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    gpu = torch.device("cuda:0")
    assert resolve_precision("auto", gpu) == "fp16" and resolve_precision("fp32", gpu) == "fp32"
    with pytest.raises(BackendError, match=r"bf16 needs a GPU of compute capability ≥ 8\.0"):
        resolve_precision("bf16", gpu)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert resolve_precision("bf16", gpu) == "bf16"


def test_cpu_backend_refuses_half_precision_and_gpu_refuses_onnx() -> None:
    net, contract = _tiny_network(), _contract()
    info = ModelInfo("<test>")
    with pytest.raises(BackendError, match="precision fp16 is for a CUDA device"):
        build_backend("torch", net, contract, info, BackendSettings(precision="fp16"))
    with pytest.raises(BackendError, match="backend onnx runs on the CPU"):
        build_backend("onnx", net, contract, info, device="cuda:0")
    result = build_backend("torch", net, contract, info)
    assert (result.device, result.precision) == ("cpu", "fp32")
    assert result.network.module is net


def test_describe_cpu() -> None:
    described = describe_device("cpu", 3)
    assert described["type"] == "cpu" and described["name"] and described["threads"] == 3


# --- dynamic batching ---------------------------------------------------------------------------------------


class _Recorder(nn.Module):
    """Doubles its input after a pause, recording every batch size it saw (so calls queue up meanwhile)."""

    def __init__(self, pause_s: float = 0.05) -> None:
        super().__init__()
        self.sizes: list[int] = []
        self.pause_s = pause_s

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        self.sizes.append(batch.shape[0])
        time.sleep(self.pause_s)
        if (batch < 0).any():
            raise ValueError("negative input")
        return batch * 2


def _concurrently(batcher: DynamicBatcher, inputs: list[torch.Tensor]) -> list[torch.Tensor | BaseException]:
    results: list[torch.Tensor | BaseException] = [None] * len(inputs)  # type: ignore[list-item]
    start = threading.Barrier(len(inputs))

    def call(i: int) -> None:
        start.wait()
        try:
            results[i] = batcher(inputs[i])
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_concurrent_calls_share_a_forward_and_get_their_own_rows() -> None:
    recorder = _Recorder()
    batcher = DynamicBatcher(recorder, max_batch=8, max_wait_ms=200)
    inputs = [torch.full((2, 3, 4, 4), float(i)) for i in range(8)]
    try:
        results = _concurrently(batcher, inputs)
        for i, result in enumerate(results):
            assert isinstance(result, torch.Tensor) and torch.equal(result, inputs[i] * 2)
        # 16 windows, at most 8 per forward: 2 forwards when all calls queue together, never one per call
        assert sum(recorder.sizes) == 16 and max(recorder.sizes) <= 8 and len(recorder.sizes) < 8
        stats = batcher.stats()
        assert stats["calls"] == 8 and stats["batches"] == len(recorder.sizes) and stats["largest_batch"] <= 8
    finally:
        batcher.close()


def test_shapes_do_not_mix_large_calls_run_alone_and_errors_reach_every_caller() -> None:
    recorder = _Recorder()
    batcher = DynamicBatcher(recorder, max_batch=4, max_wait_ms=100)
    try:
        mixed = [torch.ones(1, 3, 4, 4), torch.ones(1, 3, 8, 8), torch.ones(6, 3, 4, 4)]
        results = _concurrently(batcher, mixed)
        assert all(torch.equal(r, x * 2) for r, x in zip(results, mixed, strict=True))
        assert 6 in recorder.sizes  # the oversized call ran alone, whole
        recorder.sizes.clear()
        bad = [torch.ones(1, 3, 4, 4), -torch.ones(1, 3, 4, 4)]
        results = _concurrently(batcher, bad)
        if len(recorder.sizes) == 1:  # batched together: both callers see the failure
            assert all(isinstance(r, ValueError) for r in results)
        else:
            assert torch.equal(results[0], bad[0] * 2) and isinstance(results[1], ValueError)
        assert torch.equal(batcher(torch.ones(1, 3, 4, 4)), torch.full((1, 3, 4, 4), 2.0))  # still serving
    finally:
        batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher(torch.ones(1, 3, 4, 4))


def test_a_lone_call_waits_at_most_the_bound() -> None:
    batcher = DynamicBatcher(_Recorder(pause_s=0), max_batch=16, max_wait_ms=5)
    try:
        batcher(torch.ones(1, 3, 4, 4))  # first call starts the thread's loop
        times = []
        for _ in range(20):
            start = time.perf_counter()
            batcher(torch.ones(1, 3, 4, 4))
            times.append(time.perf_counter() - start)
        assert sorted(times)[10] < 0.05  # median: the 5 ms wait plus scheduling, not a stall
    finally:
        batcher.close()
    with pytest.raises(ValueError, match="max_batch"):
        DynamicBatcher(_Recorder(), max_batch=0)


def _tiny_network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1)).eval()


def _contract(mode: str = "tiles") -> ModelContract:
    return ModelContract(encoder="tiny", mode=mode, size=(64, 64), threshold=0.5)


def test_predictor_through_the_batcher_matches_the_plain_network() -> None:
    net, contract = _tiny_network(), _contract()
    rgb = np.random.default_rng(0).integers(0, 256, (150, 170, 3), dtype=np.uint8)
    plain = Predictor(net, contract, overlap=0.25).predict_proba(rgb)
    batcher = DynamicBatcher(TorchArrays(net), max_batch=16, max_wait_ms=1)  # on the CPU, arrays flow
    try:
        batched = Predictor(batcher, contract, overlap=0.25).predict_proba(rgb)
    finally:
        batcher.close()
    np.testing.assert_allclose(batched, plain, atol=1e-6)


# --- serving an exported folder with batching on (CPU) -----------------------------------------------------


def _exported_folder(root: Path) -> Path:
    from vessel_lightning.models.networks import build_network, save_network

    config = {
        "encoder_name": "efficientnet-b0",
        "encoder_weights": None,
        "decoder_channels": [32, 16, 8, 8, 8],
    }
    torch.manual_seed(0)
    network = build_network(**config)
    folder = root / "artifacts"
    save_network(folder / "network.pt", network, config)
    contract = ModelContract(encoder="efficientnet-b0", mode="tiles", size=(64, 64), threshold=0.45)
    (folder / "contract.json").write_text(json.dumps(contract.to_dict()))
    return folder


def test_an_exported_folder_serves_without_a_store_and_batching_changes_no_pixel(tmp_path: Path) -> None:
    folder = _exported_folder(tmp_path)
    base = Settings(
        model_uri=str(folder),
        tracking_uri="sqlite:///" + str(tmp_path / "absent.db"),  # never opened for a folder
        backend="torch",
        reload_interval_s=0,
        ui_dir=tmp_path / "no-ui",
        window=128,
        workers=4,
    )
    bodies = {}
    for batching in ("off", "on"):
        settings = dataclasses.replace(base, batching=batching, batch_wait_ms=20)
        with TestClient(create_app(settings)) as client:
            assert client.app.state.manager.wait_ready(60), client.app.state.manager.error
            model = client.get("/model").json()
            # the folder by name, never where it lies on the server
            assert model["uri"] == folder.name and model["contract"]["threshold"] == 0.45
            data = png_bytes()
            results = []

            def post(out: list = results, c: TestClient = client, d: bytes = data) -> None:
                out.append(c.post("/predict", files={"file": ("eye.png", d, "image/png")}))

            threads = [threading.Thread(target=post) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert [r.status_code for r in results] == [200] * 4
            assert len({r.content for r in results}) == 1
            bodies[batching] = results[0].content
            batching_stats = client.get("/model").json()["batching"]
            if batching == "off":
                assert batching_stats is None
            else:
                assert batching_stats["calls"] >= 4 and batching_stats["batches"] <= batching_stats["calls"]
    assert bodies["on"] == bodies["off"]


# --- the GPU backend (runs wherever CUDA exists) ----------------------------------------------------------


def _f1(pred: np.ndarray, truth: np.ndarray) -> float:
    tp = np.logical_and(pred, truth).sum()
    return float(2 * tp / max(pred.sum() + truth.sum(), 1))


@cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_gpu_half_precision_keeps_f1_within_0_001(precision: str) -> None:
    from tests.helpers.data import synthetic_eye
    from vessel_lightning.models.networks import build_network

    device = resolve_device("cuda")
    if precision == "bf16" and torch.cuda.get_device_capability(device)[0] < 8:
        pytest.skip("bf16 needs compute capability ≥ 8.0")
    torch.manual_seed(0)
    network = build_network(encoder_name="efficientnet-b0", encoder_weights=None).eval()
    contract = ModelContract(encoder="efficientnet-b0", mode="tiles", size=(256, 256), threshold=0.5)
    rng = np.random.default_rng(0)
    eyes = [synthetic_eye(rng, 600, 640) for _ in range(4)]
    fp32 = Predictor(
        build_backend(
            "torch", network, contract, ModelInfo("t"), BackendSettings(precision="fp32"), str(device)
        ).network,
        contract,
        device=device,
    )
    half = build_backend(
        "torch", network, contract, ModelInfo("t"), BackendSettings(precision=precision), str(device)
    )
    fast = Predictor(half.network, contract, device=device)
    probs32 = [fp32.predict_proba(photo) for photo, _ in eyes]
    threshold = float(
        np.median(np.concatenate([p.ravel() for p in probs32]))
    )  # a threshold that splits pixels
    f1_32 = _f1(
        np.concatenate([(p >= threshold).ravel() for p in probs32]),
        np.concatenate([m.ravel() > 0 for _, m in eyes]),
    )
    probs = [fast.predict_proba(photo) for photo, _ in eyes]
    f1_half = _f1(
        np.concatenate([(p >= threshold).ravel() for p in probs]),
        np.concatenate([m.ravel() > 0 for _, m in eyes]),
    )
    assert abs(f1_half - f1_32) <= 0.001, (f1_half, f1_32, half.describe())
    assert half.precision == precision and half.check["max_abs_diff_vs_fp32"]["probability"] < 0.05
