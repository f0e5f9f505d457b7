"""vessel-download: fails fast offline, checks the archive, unpacks the official flat layout with FOV masks."""

from __future__ import annotations

import io
import socket
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vessel_lightning.data.download import DownloadError, derive_fov, main, unpack_chase


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_fails_fast_with_where_to_get_it(tmp_path: Path, capsys) -> None:
    start = time.monotonic()
    code = main(["chase_db1", "--data-dir", str(tmp_path), "--url", f"http://127.0.0.1:{_closed_port()}/x.zip",
                 "--timeout", "3"])  # fmt: skip
    assert code == 1 and time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert "could not download" in err and "Get CHASEDB1.zip from" in err and "--archive" in err
    assert not (tmp_path / "CHASE_DB1").exists()


def _official_zip(data_dir: Path, count: int) -> bytes:
    """A zip in the official flat layout (images and both observers' labels side by side)."""
    buffer = io.BytesIO()
    chase = data_dir / "CHASE_DB1"
    with zipfile.ZipFile(buffer, "w") as archive:
        for image in sorted((chase / "images").glob("*.jpg"))[:count]:
            archive.write(image, image.name)
            for folder, suffix in (("1st_label", "1stHO"), ("2nd_label", "2ndHO")):
                label = chase / folder / f"{image.stem}_{suffix}.png"
                archive.write(label, label.name)
    return buffer.getvalue()


@pytest.mark.data
def test_archive_unpacks_into_the_chase_layout_with_fov_masks(data_dir: Path, tmp_path: Path, capsys) -> None:
    zip_path = tmp_path / "CHASEDB1.zip"
    zip_path.write_bytes(_official_zip(data_dir, 4))
    assert (
        main(["chase_db1", "--data-dir", str(tmp_path / "data"), "--archive", str(zip_path), "--sha256", ""])
        == 0
    )
    target = tmp_path / "data" / "CHASE_DB1"
    assert len(list((target / "images").glob("*.jpg"))) == 4
    assert len(list((target / "1st_label").glob("*_1stHO.png"))) == 4
    for mask in sorted((target / "mask").glob("*.png")):
        derived = np.asarray(Image.open(mask)) > 127
        shipped = np.asarray(Image.open(data_dir / "CHASE_DB1" / "mask" / mask.name)) > 127
        assert (derived & shipped).sum() / (derived | shipped).sum() > 0.95, mask.name
    assert "4 images" in capsys.readouterr().out


def test_checksum_mismatch_and_non_zip_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="checksum mismatch"):
        unpack_chase(b"not the archive", tmp_path / "CHASE_DB1")
    with pytest.raises(DownloadError, match="not a zip"):
        unpack_chase(b"not a zip", tmp_path / "CHASE_DB1", expected_sha256=None)
    assert not (tmp_path / "CHASE_DB1").exists()


def test_derive_fov_finds_the_bright_disc() -> None:
    yy, xx = np.mgrid[:100, :120]
    disc = (yy - 50) ** 2 + (xx - 60) ** 2 < 40**2
    rgb = np.zeros((100, 120, 3), np.uint8)
    rgb[disc] = (150, 60, 30)
    rgb[50, 60] = 0  # a dark vessel pixel inside is still inside the FOV
    assert np.array_equal(derive_fov(rgb) > 0, disc)
