"""The Docker build files, without Docker: the training image repeats the GPU target's first stages line for line
(so the two share PyTorch's layers on disk), and the build context lets no checkout state in."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _instructions(path: Path, first: str, last: str) -> list[str]:
    """The instructions from the one starting with ``first`` to the one starting with ``last``, comments out and
    continuation lines joined (what the builder's cache compares)."""
    joined, current = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            joined.append(" ".join(current.split()))
            current = ""
    start = next(i for i, line in enumerate(joined) if line.startswith(first))
    end = next(i for i, line in enumerate(joined) if i > start and line.startswith(last))
    return joined[start : end + 1]


def test_train_image_repeats_the_gpu_target_s_pytorch_stages() -> None:
    first, last = "FROM ${PYTHON_IMAGE} AS python", "RUN pip install --no-deps ."
    app = _instructions(REPO / "docker" / "app.Dockerfile", first, last)
    train = _instructions(REPO / "docker" / "train.Dockerfile", first, last)
    assert app == train
    assert any(line.startswith("RUN pip install torch==") for line in app)


def test_cpu_target_installs_no_pytorch_itself() -> None:
    cpu = _instructions(REPO / "docker" / "app.Dockerfile", "FROM python AS cpu", "CMD")
    assert not [line for line in cpu if "torch" in line.lower()]
    installs = [line for line in cpu if line.startswith("RUN") and "pip install" in line]
    assert any('".[serve]"' in line for line in installs) and not any("[train" in line for line in installs)


def test_build_context_is_an_allow_list() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # everything out, then what the images need back in
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed <= {
        "pyproject.toml",
        "constraints.txt",
        "README.md",
        "vessel_lightning",
        "conf",
        "app",
        "ui",
    } | {"docker/mlflow-entrypoint.sh"}
    for generated in ("ui/node_modules", "ui/out", "ui/.next"):
        assert generated in lines, f"{generated} would reach the build context"
