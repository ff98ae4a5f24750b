"""Selection latency of the torch and onnxruntime backends on the same model, in process on the CPU.

`python benchmarks/backend_latency.py --onnx DIR [--model DIR] [--runs 50]` exports nothing: DIR is an
`ember export onnx` of --model (default: the shipped model). Each backend answers `--runs` requests per
mode (text only; with a 640x480 camera image), without reasoning, after one warm-up request, one backend
after the other; it prints p50/p95 of the whole `Selector.select` call. Torch takes its thread count from
OMP_NUM_THREADS, onnxruntime one per core.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from ember_core.request import SelectionRequest
from ember_core.selector import Selector

TASKS = ("Inspect the intake pipe of a flooded pump station for blockages",
         "Deliver medicine to the ward on the third floor of the hospital",
         "Photograph the roof of the stadium from above",
         "Carry boxes across the warehouse floor")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", required=True, help="the `ember export onnx` directory of --model")
    parser.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    parser.add_argument("--runs", type=int, default=50, help="requests per backend and mode (default %(default)s)")
    args = parser.parse_args()
    camera = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    print(f"{'backend':<18} {'mode':<18} {'p50 ms':>8} {'p95 ms':>8}")
    for name, load in (("torch eager", lambda: Selector(args.model, device="cpu")),
                       ("onnxruntime fp32", lambda: Selector(args.onnx))):
        selector = load()
        for mode, image in (("text only", None), ("640x480 image", camera)):
            requests = [SelectionRequest(TASKS[run % len(TASKS)], image, return_reasoning=False) for run in range(args.runs)]
            selector.select(requests[0])  # warm-up
            times = []
            for request in requests:
                start = time.perf_counter()
                selector.select(request)
                times.append((time.perf_counter() - start) * 1000)
            ordered = sorted(times)
            print(f"{name:<18} {mode:<18} {statistics.median(ordered):8.1f} {ordered[int(0.95 * (len(ordered) - 1))]:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
