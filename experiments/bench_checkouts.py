"""Side by side: ``/predict`` latency of the same model served by two checkouts (a regression check).

    git worktree add ../before <commit>
    python experiments/bench_checkouts.py ../before . --model-uri runs:/<run>/model --backend onnx

Each round starts ``vessel-serve`` from each checkout in turn (its own code on PYTHONPATH; same model, settings and
photo), posts the photo ``--requests`` times from one client and stops it; rounds alternate the order so drift on a
shared machine hits both. Prints the CPU, the median and p95 per checkout over all rounds and the ratio.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import percentile, synthetic_png  # a sibling script, not a package

from tests.helpers.server import HOST, multipart, served
from vessel_lightning.hardware import cpu_features


def one_round(
    checkout: Path, env: dict[str, str], body: bytes, content_type: str, requests: int
) -> list[float]:
    """Latencies (ms) of ``requests`` sequential ``/predict`` calls to a server run from ``checkout``."""
    log = Path(tempfile.gettempdir()) / f"bench-checkout-{checkout.name or 'repo'}.log"
    with served(env | {"PYTHONPATH": str(checkout)}, log, cwd=checkout) as (port, _):
        connection = http.client.HTTPConnection(HOST, port, timeout=300)
        times = []
        for i in range(requests + 2):
            start = time.perf_counter()
            connection.request("POST", "/predict", body=body, headers={"Content-Type": content_type})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{checkout}: /predict answered {response.status}")
            if i >= 2:  # the first two pay for lazy initialisation
                times.append((time.perf_counter() - start) * 1000)
        connection.close()
    return times


def main() -> None:
    """Alternate the two checkouts for ``--rounds`` rounds; print medians, p95 and the ratio."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--model-uri", required=True)
    parser.add_argument("--tracking-uri", default="")
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--size", type=int, default=512, help="side of the square test photo")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = {
        "VESSEL_MODEL_URI": args.model_uri,
        "VESSEL_BACKEND": args.backend,
        "VESSEL_RELOAD_INTERVAL_S": "0",
    }
    if args.tracking_uri:
        env["MLFLOW_TRACKING_URI"] = args.tracking_uri
    body, content_type = multipart(synthetic_png(args.size, args.size))
    checkouts = [args.before.resolve(), args.after.resolve()]
    print(
        f"CPU {cpu_features().model}; {args.size}² PNG, backend {args.backend}, {args.rounds} rounds × {args.requests}"
    )
    times: dict[Path, list[float]] = {c: [] for c in checkouts}
    for round_ in range(args.rounds):
        for checkout in checkouts if round_ % 2 == 0 else checkouts[::-1]:
            got = one_round(checkout, env, body, content_type, args.requests)
            times[checkout] += got
            print(f"round {round_ + 1} {checkout}: median {statistics.median(got):.1f} ms", flush=True)
    medians = {c: statistics.median(t) for c, t in times.items()}
    for checkout in checkouts:
        print(
            f"{checkout}: median {medians[checkout]:.1f} ms, p95 {percentile(times[checkout], 0.95):.1f} ms"
        )
    print(f"after / before: {medians[checkouts[1]] / medians[checkouts[0]]:.3f}")


if __name__ == "__main__":
    main()
