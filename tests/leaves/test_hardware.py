"""The CPU's features decide the training precision of trainer=cpu (bf16-mixed only with bf16 units), and the
override wins; the features are faked, nothing trains."""

from __future__ import annotations

import pytest

from tests.helpers.data import compose
from vessel_lightning import hardware
from vessel_lightning.hardware import CpuFeatures, cpu_training_precision, parse_cpu_features

AVX2 = CpuFeatures("AMD EPYC (AVX2 only)", frozenset({"avx2", "fma"}))
AVX512_BF16 = CpuFeatures("AMD EPYC (Zen 4)", frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}))
AMX = CpuFeatures("Intel Xeon (Sapphire Rapids)", frozenset({"avx512f", "amx_bf16", "amx_tile", "amx_int8"}))


def test_bf16_units_decide_the_training_precision() -> None:
    assert cpu_training_precision(AVX2) == "32-true"
    assert cpu_training_precision(AVX512_BF16) == "bf16-mixed"
    assert cpu_training_precision(AMX) == "bf16-mixed"
    parsed = parse_cpu_features("processor : 0\nmodel name : Some CPU\nflags : fpu avx2 fma\n")
    assert parsed.model == "Some CPU" and cpu_training_precision(parsed) == "32-true"


@pytest.mark.parametrize(("features", "expected"), [(AVX2, "32-true"), (AMX, "bf16-mixed")])
def test_trainer_cpu_resolves_by_the_cpu_and_the_override_wins(
    monkeypatch: pytest.MonkeyPatch, features: CpuFeatures, expected: str
) -> None:
    monkeypatch.setattr(hardware, "cpu_features", lambda: features)
    assert compose("train", ["trainer=cpu"]).trainer.precision == expected
    assert compose("train", ["trainer=cpu", "trainer.precision=32-true"]).trainer.precision == "32-true"
    assert (
        compose("train", ["trainer=gpu"]).trainer.precision == "bf16-mixed"
    )  # GPUs are not the CPU's choice
