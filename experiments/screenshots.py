"""Screenshots of the browser UI for the documentation, taken in Chromium against a served, really trained model.

    make screenshots                      # after `make demo`: the champion, a CHASE_DB1 test photo → docs/images/
    python experiments/screenshots.py --model-uri runs:/<run id>/model --photo eye.jpg --out docs/images

Starts ``vessel-serve`` on a free loopback port (the built UI in ``ui/out`` or ``$VESSEL_UI_DIR``), opens the page in
Debian's Chromium (``/usr/bin/chromium``, driven by Playwright; nothing downloads a browser), uploads the photo,
waits for the overlay and the Measurements panel, and writes each view as a palette PNG no larger than 300 KB.
A model with random weights draws noise: point it at a trained one.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
from pathlib import Path

from tests.helpers.server import HOST, served

REPO = Path(__file__).resolve().parents[1]
MAX_BYTES = 300 * 1024
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip


def small_png(png: bytes, path: Path) -> int:
    """Write ``png`` as a 256-colour palette PNG (screenshots are flat colours and one photo); returns its size."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    for colours in (256, 128, 64):
        buffer = io.BytesIO()
        image.quantize(colors=colours, method=Image.Quantize.MEDIANCUT).save(buffer, "PNG", optimize=True)
        if buffer.tell() <= MAX_BYTES:
            break
    else:
        raise SystemExit(f"{path.name}: {buffer.tell()} bytes even at 64 colours (limit {MAX_BYTES})")
    temporary = path.with_name(path.name + ".partial")
    temporary.write_bytes(buffer.getvalue())
    temporary.replace(path)
    return buffer.tell()


def shoot(url: str, photo: Path, out: Path, chromium: str, width: int, height: int) -> list[Path]:
    """Upload ``photo`` in the UI at ``url`` and write the views into ``out``."""
    from playwright.sync_api import expect, sync_playwright

    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
        page.goto(url + "/")
        expect(page.get_by_test_id("model-info")).to_contain_text("vessel-unet", timeout=60_000)
        page.get_by_test_id("photo-input").set_input_files(str(photo))
        expect(page.get_by_test_id("vessel-layer")).to_be_visible(timeout=180_000)
        expect(page.get_by_test_id("measure-area_density")).not_to_be_empty(timeout=60_000)
        page.wait_for_timeout(500)  # the panel's debounced request and the last paint
        path = out / "ui-measurements.png"
        size = small_png(page.screenshot(full_page=False), path)
        print(f"{path}: {size / 1024:.0f} KB")
        written.append(path)
        browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    """Serve the model, take the screenshots, stop the server."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-uri", default="models:/vessel-unet@champion")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or the embedded store")
    data_dir = Path(os.environ.get("VESSEL_DATA_DIR", "data"))
    parser.add_argument("--photo", type=Path, default=data_dir / "CHASE_DB1" / "images" / "Image_11L.jpg",
                        help="default: a CHASE_DB1 test photo under $VESSEL_DATA_DIR")  # fmt: skip
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    parser.add_argument(
        "--backend", default="onnx", help="the server's VESSEL_BACKEND (default onnx: no calibration)"
    )
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--height", type=int, default=860)
    parser.add_argument("--timeout", type=float, default=300, help="seconds for the server to become ready")
    args = parser.parse_args(argv)
    if not args.photo.is_file():
        parser.error(f"--photo {args.photo}: no such file (set VESSEL_DATA_DIR or give --photo)")
    if not Path(args.chromium).is_file():
        parser.error(f"--chromium {args.chromium}: not found (apt-get install -y chromium)")
    ui_dir = Path(os.environ.get("VESSEL_UI_DIR", REPO / "ui" / "out"))
    if not (ui_dir / "index.html").is_file():
        parser.error(f"{ui_dir}/index.html: build the UI first (make ui) or set VESSEL_UI_DIR")
    args.out.mkdir(parents=True, exist_ok=True)
    env = {
        "VESSEL_UI_DIR": str(ui_dir),
        "VESSEL_RELOAD_INTERVAL_S": "0",
        "VESSEL_MODEL_URI": args.model_uri,
        "VESSEL_BACKEND": args.backend,
    }
    if args.tracking_uri:
        env["MLFLOW_TRACKING_URI"] = args.tracking_uri
    with (
        tempfile.TemporaryDirectory(prefix="vessel-screenshots-") as work,
        served(env, Path(work) / "server.log", ready_timeout_s=args.timeout) as (port, _),
    ):
        shoot(f"http://{HOST}:{port}", args.photo, args.out, args.chromium, args.width, args.height)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
