"""What the CPU under us can do, read once and shared: its model name and feature flags.

The serving backend choice (bf16/int8 candidates only where the CPU has those units), the training precision
(``trainer=cpu``: bf16-mixed where the CPU has bf16 units) and every benchmark's machine line read them here.
A leaf module: it imports nothing of the project.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
# The flags that decide speed here, in the order a machine line prints them.
NOTABLE_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU's model name and feature flags (as ``/proc/cpuinfo`` spells them)."""

    model: str
    flags: frozenset[str]

    @property
    def bf16(self) -> bool:
        """Whether the CPU has bf16 dot products (``avx512_bf16`` or AMX)."""
        return bool(self.flags & BF16_FLAGS)

    @property
    def int8(self) -> bool:
        """Whether the CPU has int8 dot products (AVX-512 VNNI, AVX-VNNI or AMX)."""
        return bool(self.flags & INT8_FLAGS)

    def describe(self) -> str:
        """``<model> (<the notable flags it has>)``, e.g. ``Intel(R) Xeon(R) Processor (avx2 fma avx512f …)``."""
        notable = [flag for flag in NOTABLE_FLAGS if flag in self.flags]
        return f"{self.model} ({' '.join(notable) or 'no AVX2'})"


def parse_cpu_features(text: str) -> CpuFeatures:
    """Features from ``/proc/cpuinfo`` text (first processor) or ``lscpu`` output; unknown fields are ignored."""
    model, flags = "", ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if not sep:
            continue
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = value
    return CpuFeatures(model or platform.processor() or platform.machine(), frozenset(flags.split()))


def read_cpu_features() -> CpuFeatures:
    """This machine's CPU features: ``/proc/cpuinfo``, else ``lscpu``, else no flags (fp32 candidates only)."""
    try:
        return parse_cpu_features(Path("/proc/cpuinfo").read_text())
    except OSError:
        pass
    lscpu = shutil.which("lscpu")
    if lscpu:
        try:
            output = subprocess.run([lscpu], capture_output=True, text=True, timeout=10, check=False).stdout
            return parse_cpu_features(output)
        except (OSError, subprocess.SubprocessError):
            pass
    return CpuFeatures(platform.processor() or platform.machine(), frozenset())


@cache
def cpu_features() -> CpuFeatures:
    """:func:`read_cpu_features`, read once per process."""
    return read_cpu_features()


def cpu_training_precision(features: CpuFeatures | None = None) -> str:
    """Lightning's ``precision`` for training on this CPU: ``bf16-mixed`` where it has bf16 units
    (``avx512_bf16`` or AMX; measured 1.5× faster steps at the same accuracy, ``experiments/RESULTS.md``), else
    ``32-true`` (bf16 emulated on AVX2 is slower than fp32)."""
    return "bf16-mixed" if (features or cpu_features()).bf16 else "32-true"
