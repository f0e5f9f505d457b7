"""How long a small photo waits behind a huge one in ``vessel-serve``: one lane for all vs. a lane for large photos.

For each variant the script starts the server (``python -m app.server`` on a free 127.0.0.1 port; a temporary
random-weight B0 tile model unless ``--tracking-uri`` is given), posts one flat ``--huge`` PNG (default
7000×7000 = 49 MP, ~160 KB on the wire, full price to predict) from a thread, then, while it runs, posts a
``--small`` photo every ``--every`` seconds and records each one's latency. Variants: ``one lane``
(``VESSEL_LARGE_IMAGE_PIXELS=0``: every photo queues in the same pool, the behaviour before issue 22) and
``large lane`` (the default threshold, 12 MP). The time budget is raised so the huge photo runs to its end.

    python experiments/starvation_test.py --tracking-uri sqlite:////tmp/store/mlflow.db
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import synthetic_png, temporary_registry  # a sibling script, not a package

from tests.helpers.server import HOST, flat_png, multipart, served


def post(port: int, data: bytes) -> tuple[int, float]:
    """POST ``data`` to /predict?format=json; returns (status, seconds)."""
    body, content_type = multipart(data)
    connection = http.client.HTTPConnection(HOST, port, timeout=900)
    start = time.perf_counter()
    try:
        connection.request("POST", "/predict?format=json", body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - start
    finally:
        connection.close()


def run_variant(env: dict[str, str], log: Path, huge: bytes, small: bytes, every: float) -> dict[str, object]:
    """Start a server with ``env``; the huge photo's time and the small photos' latencies while it ran."""
    with served(env, log, ready_timeout_s=600) as (port, _):
        assert post(port, small)[0] == 200  # warm-up: the first call pays one-off costs
        result: dict[str, object] = {}

        def huge_request() -> None:
            result["huge"] = post(port, huge)

        thread = threading.Thread(target=huge_request)
        thread.start()
        time.sleep(every)  # the huge photo is decoded and in the network by now
        waits: list[float] = []
        while thread.is_alive():
            status, seconds = post(port, small)
            if thread.is_alive() or not waits:
                waits.append(seconds)
            assert status == 200, status
            time.sleep(every)
        thread.join()
        result["small"] = waits
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tracking-uri", help="a store with models:/vessel-unet@champion (default: temporary)"
    )
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--huge", type=int, default=7000, help="side of the flat huge photo (px)")
    parser.add_argument("--small", type=int, default=512, help="side of the small photo (px)")
    parser.add_argument("--every", type=float, default=3.0, help="seconds between small photos")
    args = parser.parse_args()
    print(subprocess.run(["lscpu"], capture_output=True, text=True).stdout, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        uri = args.tracking_uri or temporary_registry(root)
        base = {
            "MLFLOW_TRACKING_URI": uri,
            "VESSEL_BACKEND": args.backend,
            "VESSEL_CACHE_DIR": str(root / "onnx-cache"),
            "VESSEL_RELOAD_INTERVAL_S": "0",
            "VESSEL_UI_DIR": str(root / "no-ui"),
            "VESSEL_REQUEST_TIMEOUT_S": "900",
        }
        huge, small = flat_png(args.huge, args.huge), synthetic_png(args.small, args.small)
        print(
            f"huge: {args.huge}x{args.huge} flat PNG, {len(huge) / 1024:.0f} KB; small: {args.small}² photo"
        )
        for name, extra in (("one lane", {"VESSEL_LARGE_IMAGE_PIXELS": "0"}), ("large lane", {})):
            result = run_variant(base | extra, root / f"{name}.log", huge, small, args.every)
            waits = result["small"]
            status, seconds = result["huge"]
            print(
                f"{name:>10}: huge photo {status} in {seconds:.1f} s; small photos while it ran: n={len(waits)} "
                f"median {statistics.median(waits):.2f} s, max {max(waits):.2f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
