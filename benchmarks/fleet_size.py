"""Selection latency of the shipped model for fleets of 5, 20 and 50 robots (built-ins plus generated robots).

`python benchmarks/fleet_size.py [--sizes 5 20 50] [--repeats 20] [--reasoning]` prints one row per
fleet size: how much of the cards the prompt carries, prompt tokens, and p50/p95 latency in ms.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from generated_fleet import write_fleet  # noqa: E402

from ember_core.request import SelectionRequest  # noqa: E402
from ember_core.selector import Selector  # noqa: E402

TASKS = ("Inspect the hull of a tanker under the sea", "Survey the roof of a tall warehouse for storm damage",
         "Carry survey equipment up a steep rocky trail", "Pick apples from the orchard trees")


def measure(size: int, repeats: int, reasoning: bool) -> dict[str, float | str]:
    with tempfile.TemporaryDirectory() as directory:
        selector = Selector(robots_file=write_fleet(Path(directory), size), device="cpu")
        request = SelectionRequest(TASKS[0], return_reasoning=reasoning)
        selector.select(request)  # warm-up
        times = []
        for index in range(repeats):
            started = time.perf_counter()
            selector.select(SelectionRequest(TASKS[index % len(TASKS)], return_reasoning=reasoning))
            times.append((time.perf_counter() - started) * 1000)
        prompt = selector.processor.features(TASKS[0]).input_ids.numel()
    times.sort()
    return {"robots": size, "cards in prompt": selector.processor.card_detail, "prompt tokens": prompt,
            "p50 ms": statistics.median(times), "p95 ms": times[int(0.95 * (len(times) - 1))]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 20, 50])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--reasoning", action="store_true", help="generate the reasoning and plan too")
    args = parser.parse_args()
    rows = [measure(size, args.repeats, args.reasoning) for size in args.sizes]
    print(f"selection latency, {'with' if args.reasoning else 'without'} reasoning, {args.repeats} requests each")
    print(f"{'robots':>6}  {'cards in prompt':<15}  {'prompt tokens':>13}  {'p50 ms':>8}  {'p95 ms':>8}")
    for row in rows:
        print(f"{row['robots']:>6}  {row['cards in prompt']:<15}  {row['prompt tokens']:>13}  {row['p50 ms']:>8.1f}  {row['p95 ms']:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
