"""How long ``POST /measure`` (what the UI's Measurements panel asks after each slider stop) takes, per stage.

    python experiments/bench_measure_endpoint.py --data-dir ../shared/data [--repeats 9]

Inputs are real masks at the data sets' native sizes: CHASE_DB1 Image_01L (999×960, first observer's label) and
HRF 09_h (3504×2336, the union of the manual artery/vein labels), each with its official FOV mask, sent as {0, 255}
PNGs exactly as the UI sends the probability PNG and field PNG. The work does not depend on where the mask came
from. Interleaved, in one process: the stages of :func:`app.server.run_measurement` (decode + threshold, field,
measurements) and the whole request through FastAPI's TestClient (multipart parsing included; no network). Prints
``lscpu``'s model and the medians of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
from PIL import Image

MAX_PIXELS = 50_000_000


def _png(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buffer, format="PNG")
    return buffer.getvalue()


def _inputs(data_dir: Path) -> dict[str, tuple[bytes, bytes]]:
    chase = data_dir / "CHASE_DB1"
    hrf = data_dir / "HRF" / "test"
    label = np.asarray(Image.open(chase / "1st_label" / "Image_01L_1stHO.png").convert("L")) > 0
    fov = np.asarray(Image.open(chase / "mask" / "Image_01L.png").convert("L")) > 0
    av = np.asarray(Image.open(hrf / "av_manual" / "09_h_AVmanual.png").convert("RGB")).max(axis=2) > 0
    hrf_fov = np.asarray(Image.open(hrf / "mask" / "09_h_mask.tif").convert("L")) > 0
    return {"CHASE_DB1 999×960": (_png(label), _png(fov)), "HRF 3504×2336": (_png(av), _png(hrf_fov))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from app.measure import PhysicalScale, field_from_png, mask_from_png, readout
    from app.server import create_app
    from app.settings import Settings

    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    print(next((line for line in cpu.splitlines() if line.startswith("Model name")), "Model name: ?"))
    inputs = _inputs(args.data_dir)
    # No model is needed for /measure; reload polling off, the failed load in the background is harmless.
    settings = Settings(
        model_uri="models:/none@none", reload_interval_s=0, max_upload_mb=50, max_pixels=MAX_PIXELS
    )
    times: dict[str, dict[str, list[float]]] = {name: {} for name in inputs}
    with TestClient(create_app(settings)) as client:
        for _ in range(args.repeats):
            for name, (mask_png, fov_png) in inputs.items():
                stages = times[name]
                start = time.perf_counter()
                mask = mask_from_png(mask_png, MAX_PIXELS, 0.5)
                decoded = time.perf_counter()
                field = field_from_png(fov_png, mask.shape, MAX_PIXELS)
                fielded = time.perf_counter()
                readout(mask, field, "uploaded", 0.5, PhysicalScale())
                done = time.perf_counter()
                files = {"file": ("m.png", mask_png, "image/png"), "fov": ("f.png", fov_png, "image/png")}
                response = client.post("/measure", files=files, params={"threshold": 0.5})
                assert response.status_code == 200, response.text
                answered = time.perf_counter()
                for stage, seconds in (
                    ("decode + threshold", decoded - start),
                    ("field", fielded - decoded),
                    ("measurements (readout)", done - fielded),
                    ("whole request", answered - done),
                ):
                    stages.setdefault(stage, []).append(seconds * 1000)
    for name, stages in times.items():
        cells = ", ".join(f"{stage} {statistics.median(ms):.0f} ms" for stage, ms in stages.items())
        print(f"{name}: {cells} (medians of {args.repeats})")


if __name__ == "__main__":
    main()
