"""The edge deployment table: latency, throughput, size, cold start, memory and FLOPs of each backend.

`python benchmarks/edge_table.py [--work DIR] [--runs 30] [--out FILE.json]` measures, on this machine's CPU,
the shipped model and a random-init `embervlm-37m` in torch eager, onnxruntime fp32 and onnxruntime int8
(`ember export quantize`; the random model's accuracy gate is waived, it has no accuracy to keep):

- selection p50/p95 at batch 1 and 16, text only and with a 640x480 camera image, without reasoning;
- selection with reasoning (batch 1; each explained request decodes on its own) and its chosen tokens/s;
- the model's files on disk, cold `ember select` (a new process, wall time), the measuring process's peak RSS;
- FLOPs per selection (torch's FLOP counter on the torch path) and the fraction of this machine's peak
  that the p50 reaches (fp32 matmul peak for torch and fp32, int8 MatMulInteger peak for int8).

Exports and quantized copies are written once under --work and reused. Each backend is measured in its own
process, one after the other, so peak RSS is its own. Prints a markdown table and writes --out as JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

COLD_TASK = "Inspect the intake pipe of a flooded pump station for blockages"
TASKS = (COLD_TASK,
         "Survey the dam from above, then inspect its submerged spillway gates.",
         "Deliver medicine to the ward on the third floor of the hospital",
         "Carry boxes across the warehouse floor")
BATCH = 16
MODES = (("text", False), ("image", True))


def percentiles(values: list[float]) -> dict[str, float]:
    """Median and nearest-rank 95th percentile."""
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered), 2), "p95": round(ordered[math.ceil(0.95 * len(ordered)) - 1], 2)}


def directory_mb(path: Path) -> float:
    return round(sum(file.stat().st_size for file in Path(path).rglob("*") if file.is_file()) / 2**20, 1)


# ---- the machine's peak ---------------------------------------------------------------------------


def fp32_peak_gflops(size: int = 1024, repeats: int = 20) -> float:
    """Best of `repeats` fp32 matmuls (size^3 multiply-adds) in torch on all cores."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def int8_peak_gops(size: int = 1024, repeats: int = 20) -> float:
    """Best of `repeats` uint8 x int8 MatMulInteger runs in onnxruntime, the kernel dynamic int8 graphs use."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["c"])], "peak",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size]),
         helper.make_tensor_value_info("b", TensorProto.INT8, [size, size])],
        [helper.make_tensor_value_info("c", TensorProto.INT32, [size, size])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {"a": rng.integers(0, 255, (size, size), dtype=np.uint8),
             "b": rng.integers(-127, 127, (size, size), dtype=np.int8)}
    onnx.checker.check_model(model)
    session.run(None, feeds)
    best = min(_timed(lambda: session.run(None, feeds)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


# ---- one backend, in its own process --------------------------------------------------------------


def measure(model: str, backend: str, runs: int) -> dict:
    """Latencies and tokens/s of one backend, and the process's peak RSS at the end."""
    from ember_core.request import SelectionRequest
    from ember_core.selector import Selector

    selector = Selector(model, backend=backend, device="cpu")
    camera = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    result: dict = {}
    for mode, with_image in MODES:
        image = camera if with_image else None
        requests = [SelectionRequest(TASKS[i % len(TASKS)], image, return_reasoning=False) for i in range(BATCH)]
        selector.select_batch(requests[:1])
        selector.select_batch(requests)  # warm-up of both shapes
        result[f"batch1_{mode}"] = percentiles([_timed(lambda r=r: selector.select(r)) * 1000
                                                for r in (requests * runs)[:runs]])
        result[f"batch{BATCH}_{mode}"] = percentiles([_timed(lambda: selector.select_batch(requests)) * 1000
                                                      for _ in range(max(3, runs // 4))])
        explained = [SelectionRequest(TASKS[i % len(TASKS)], image, return_reasoning=True) for i in range(len(TASKS))]
        selector.select(explained[0])
        result[f"reasoning_{mode}"] = percentiles([_timed(lambda r=r: selector.select(r)) * 1000
                                                   for r in (explained * runs)[:runs]])
    result["reasoning_tokens_per_s"] = _reasoning_tokens_per_s(selector, camera)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; getrusage's ru_maxrss keeps the launching process's peak
    across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("/proc/self/status has no VmHWM line; peak RSS is measured on Linux only")


def _reasoning_tokens_per_s(selector, camera: np.ndarray) -> float:
    """Chosen reasoning tokens per second of reasoning time over the tasks, text only and with the image."""
    from ember_core.request import SelectionRequest

    walks = []
    decode = selector.decoder.decode
    selector.decoder.decode = lambda *args: walks.append(decode(*args)) or walks[-1]
    seconds = 0.0
    for task in TASKS:
        for image in (None, camera):
            selection = selector.select(SelectionRequest(task, image, return_reasoning=True))
            seconds += selection.latency_ms["reasoning"] / 1000
    selector.decoder.decode = decode
    return round(sum(walk.chosen_tokens for walk in walks) / seconds, 1)


def flops_per_selection(model: str) -> dict[str, int]:
    """FLOPs that torch counts in one selection without reasoning, text only and with the camera image."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ember_core.request import SelectionRequest
    from ember_core.selector import Selector

    selector = Selector(model, backend="torch", device="cpu")
    camera = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    counts = {}
    for mode, with_image in MODES:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            selector.select(SelectionRequest(COLD_TASK, camera if with_image else None, return_reasoning=False))
        counts[mode] = int(counter.get_total_flops())
    return counts


def ember_command() -> str:
    """The `ember` executable beside this interpreter."""
    return shutil.which("ember", path=str(Path(sys.executable).parent)) or "ember"


def cold_start_s(model: str, backend: str) -> float:
    """Wall time of `ember select --no-reasoning` in a new process, import to printed answer."""
    started = time.perf_counter()
    subprocess.run([ember_command(), "select", "--model", model, "--backend", backend, "--device", "cpu",
                    "--no-reasoning", "--task", COLD_TASK], check=True, capture_output=True)
    return round(time.perf_counter() - started, 2)


def in_own_process(*arguments: str) -> dict:
    run = subprocess.run([sys.executable, __file__, *arguments], check=True, capture_output=True, text=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


# ---- the models -----------------------------------------------------------------------------------


def prepare(work: Path) -> dict[str, dict[str, str]]:
    """{model name: {backend label: directory}}: the shipped model and a random-init 37M, exported and quantized."""
    import torch

    from ember_core.model.config import preset
    from ember_core.pretrained import build_model, save_pretrained, resolve_model_dir
    from ember_core.robots_file import load_fleet
    from ember_train.onnx_export import write_export

    sources = {"embervlm-edge (shipped)": resolve_model_dir(None), "embervlm-37m (random init)": work / "embervlm-37m"}
    if not (work / "embervlm-37m").exists():
        torch.manual_seed(0)
        save_pretrained(*build_model(preset("embervlm-37m"), load_fleet()), work / "embervlm-37m")
    models = {}
    for name, source in sources.items():
        slug = name.split()[0]
        fp32, int8 = work / f"{slug}-onnx", work / f"{slug}-onnx-int8"
        if not fp32.exists():
            write_export(source, fp32)
        if not int8.exists():  # a random-init model has no accuracy to keep: its gate is waived
            waive = ["--max_drop", "100"] if "random" in name else []
            subprocess.run([ember_command(), "export", "quantize", "--model", str(fp32), "--out", str(int8), *waive],
                           check=True)
        models[name] = {"torch eager": str(source), "ORT fp32": str(fp32), "ORT int8": str(int8)}
    return models


BACKEND_OF = {"torch eager": "torch", "ORT fp32": "onnx", "ORT int8": "onnx"}


def table(rows: list[dict]) -> str:
    head = ("| model | backend | files MB | cold s | peak RSS MB | b1 text p50/p95 | b1 image p50/p95 "
            f"| b{BATCH} text p50/p95 | b{BATCH} image p50/p95 | reasoning text p50/p95 | reasoning image p50/p95 "
            "| reasoning tok/s | % of peak text / image |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        pair = lambda key: f"{row[key]['p50']:.1f} / {row[key]['p95']:.1f}"  # noqa: E731
        lines.append(f"| {row['model']} | {row['backend']} | {row['files_mb']} | {row['cold_start_s']} | {row['peak_rss_mb']} "
                     f"| {pair('batch1_text')} | {pair('batch1_image')} | {pair(f'batch{BATCH}_text')} "
                     f"| {pair(f'batch{BATCH}_image')} | {pair('reasoning_text')} | {pair('reasoning_image')} "
                     f"| {row['reasoning_tokens_per_s']} | {row['peak_fraction_text']:.1%} / {row['peak_fraction_image']:.1%} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("outputs/benchmarks/edge"),
                        help="where the exports and quantized copies are written once (default %(default)s)")
    parser.add_argument("--runs", type=int, default=30, help="requests per measurement (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/edge.json"), help="JSON results")
    parser.add_argument("--measure", nargs=3, metavar=("MODEL", "BACKEND", "RUNS"), help=argparse.SUPPRESS)
    parser.add_argument("--flops", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], args.measure[1], int(args.measure[2]))))
        return 0
    if args.flops:
        print(json.dumps(flops_per_selection(args.flops)))
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    models = prepare(args.work)
    # Measured before and after the backends, the larger kept: a peak taken while something else ran is too low.
    peaks = {"fp32_gflops": fp32_peak_gflops(), "int8_gops": int8_peak_gops()}
    rows = []
    for name, backends in models.items():
        flops = in_own_process("--flops", backends["torch eager"])
        for label, directory in backends.items():
            row = {"model": name, "backend": label, "directory": directory, "flops": flops,
                   "files_mb": directory_mb(Path(directory)),
                   "cold_start_s": cold_start_s(directory, BACKEND_OF[label]),
                   **in_own_process("--measure", directory, BACKEND_OF[label], str(args.runs))}
            rows.append(row)
            print(f"measured {name}, {label}", flush=True)
    peaks = {"fp32_gflops": round(max(peaks["fp32_gflops"], fp32_peak_gflops()), 1),
             "int8_gops": round(max(peaks["int8_gops"], int8_peak_gops()), 1)}
    print(f"machine: {os.cpu_count()} cores; measured peak fp32 {peaks['fp32_gflops']} GFLOP/s, "
          f"int8 {peaks['int8_gops']} GOP/s")
    for row in rows:
        peak = peaks["int8_gops" if row["backend"] == "ORT int8" else "fp32_gflops"] * 1e9
        for mode, _ in MODES:
            row[f"peak_fraction_{mode}"] = row["flops"][mode] / (row[f"batch1_{mode}"]["p50"] / 1000) / peak
    print(table(rows))
    print("FLOPs per selection (text / image): " + "; ".join(
        f"{name}: {rows[i * 3]['flops']['text'] / 1e9:.2f} / {rows[i * 3]['flops']['image'] / 1e9:.2f} GFLOP"
        for i, name in enumerate(dict.fromkeys(row["model"] for row in rows))))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": {"cores": os.cpu_count(), **peaks}, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
