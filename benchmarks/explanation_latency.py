"""Latency of the shipped model's selection alone and with its reasoning, team and plan, in process on the CPU.

`python benchmarks/explanation_latency.py [--repeats 40] [--model DIR] [--threads N]` runs every task of
TASKS (single-robot and team tasks, text only and with a rendered scene) `--repeats` times in turn,
after one warm-up request each, and prints p50/p95 of the whole request with and without reasoning,
the reasoning part alone, the model's decisions per request and the chosen tokens per second.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

import torch

from ember_core.request import SelectionRequest
from ember_core.scenes import render_scene
from ember_core.selector import Selector

TASKS = ("Inspect the intake pipe of a flooded pump station for blockages",
         "Survey the dam from above, then inspect its submerged spillway gates.",
         "Deliver medicine to the ward on the third floor of the hospital",
         "Carry the 20 kg tool bag over the boulders to the weather station, then fly over the ridge and film it.")


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40, help="requests per task and mode (default %(default)s)")
    parser.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    selector = Selector(args.model, device="cpu")
    size = selector.processor.config.image_size
    requests = [(task, image) for task in TASKS for image in (None, render_scene(task, size))]
    totals: dict[bool, list[float]] = {False: [], True: []}
    reasoning_ms: list[float] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a deprecation warning per request would be a bug here
        for task, image in requests:  # warm-up
            selector.select(SelectionRequest(task, image, return_reasoning=True))
        for _ in range(args.repeats):
            for task, image in requests:
                for explain in (False, True):
                    started = time.perf_counter()
                    selection = selector.select(SelectionRequest(task, image, return_reasoning=explain))
                    totals[explain].append((time.perf_counter() - started) * 1000)
                    if explain:
                        reasoning_ms.append(selection.latency_ms["reasoning"])
    # Decisions and chosen tokens of one pass over the tasks, from the decoder's walks.
    walks = []
    decode = selector.decoder.decode
    selector.decoder.decode = lambda *args: walks.append(decode(*args)) or walks[-1]
    for task, image in requests:
        selector.select(SelectionRequest(task, image, return_reasoning=True))
    decisions = [len(walk.points) for walk in walks]
    tokens = sum(walk.chosen_tokens for walk in walks)
    print(f"{selector.model_name}, {len(requests)} requests x {args.repeats}, torch threads {torch.get_num_threads()}")
    print(f"{'':<28}{'p50 ms':>9}{'p95 ms':>9}")
    for label, values in (("selection only", totals[False]), ("selection + reasoning", totals[True]),
                          ("reasoning part", reasoning_ms)):
        p50, p95 = percentiles(values)
        print(f"{label:<28}{p50:>9.1f}{p95:>9.1f}")
    print(f"model decisions per request: {statistics.mean(decisions):.1f}; chosen tokens per request: "
          f"{tokens / len(requests):.1f}; chosen tokens/s at the reasoning p50: "
          f"{tokens / len(requests) / (percentiles(reasoning_ms)[0] / 1000):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
