"""Which graphs of an export go int8: each int8 candidate measured against its fp32 graph, and the rule that decides.

The measurements come from development selections (a task set never reported on, each task with its rendered
scene and with reasoning) run on the fp32 export: every graph's inputs are recorded, then timed on the fp32
and the int8 session, interleaved so that a change in the machine's load falls on both; and the selections
are run again with the candidate in the export, counting those whose top robot, selected robots or
explanation text change. The rule, in this order: a candidate that changes any development selection stays
fp32; one that is at least 1/FASTER times as fast is kept; one at most SMALLER of the size that saves at least
MIN_SAVED_MB and is not slower than NOT_SLOWER is kept (disk and memory count on an edge box); any other stays
fp32. The timings are of the machine that runs it, so the choice is best made on (a machine like) the target.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ember_core.request import SelectionRequest
from ember_core.scenes import render_scene
from ember_core.selector import Selector
from ember_train.data import TaskRecord

INT8, FP32 = "int8", "fp32"
FASTER = 0.9  # int8 time / fp32 time at or below this: faster by 10% or more
SMALLER = 0.5  # int8 size / fp32 size at or below this pays by size ...
MIN_SAVED_MB = 5.0  # ... when it saves this much (the shipped export's graphs are 165 MB) ...
NOT_SLOWER = 1.1  # ... and int8 time / fp32 time is at or below this
TIMING_REPEATS = 7  # the median of this many timings of each session
MAX_TIMED_CALLS = 200  # recorded inputs timed per graph at most (evenly spaced): a long decode records hundreds


@dataclass
class GraphChoice:
    """One graph's measurements and what was kept. Without a candidate (kept fp32 as asked), only the fp32 size."""

    graph: str
    kept: str  # INT8 or FP32
    why: str
    fp32_mb: float
    method: str | None = None  # how the int8 candidate was made
    int8_mb: float | None = None
    fp32_ms: float | None = None  # mean time per call, median over TIMING_REPEATS
    int8_ms: float | None = None
    changed: int | None = None  # development selections whose top robot, selected robots or explanation it changes
    selections: int = 0


@dataclass
class Development:
    """The fp32 export's development selections: requests, documents and every graph's recorded inputs."""

    selector: Selector
    requests: list[SelectionRequest]
    documents: list[dict[str, Any]]
    inputs: dict[str, list[dict[str, np.ndarray]]]


def record_development(selector: Selector, records: list[TaskRecord]) -> Development:
    """Run the development selections on the fp32 export of `selector`, recording each graph's inputs."""
    if not records:
        raise ValueError("no development tasks: the per-graph choice needs some")
    size = selector.backend.config.image_size
    requests = [SelectionRequest(record.task, record.image or render_scene(record.task, size),
                                 top_k=len(selector.fleet)) for record in records]
    with selector.backend.model.recording() as inputs:
        documents = [selection.to_document() for selection in selector.select_batch(requests)]
    return Development(selector, requests, documents, inputs)


def measure(graph: str, method: str, development: Development, candidate: Selector, fp32_file: Path,
            int8_file: Path) -> GraphChoice:
    """The choice for `graph`, whose int8 version (`int8_file`, made by `method`) is in `candidate`'s export."""
    documents = [selection.to_document() for selection in candidate.select_batch(development.requests)]
    changed = sum(_decision(ours) != _decision(theirs) for ours, theirs in zip(development.documents, documents))
    fp32_ms, int8_ms = _time_per_call(development.selector.backend.model.sessions[graph],
                                      candidate.backend.model.sessions[graph], development.inputs.get(graph, []))
    fp32_mb, int8_mb = _megabytes(fp32_file), _megabytes(int8_file)
    kept, why = _rule(changed, len(documents), fp32_ms, int8_ms, fp32_mb, int8_mb)
    return GraphChoice(graph, kept, why, fp32_mb, method, int8_mb, fp32_ms, int8_ms, changed, len(documents))


def kept_fp32(graph: str, fp32_file: Path, why: str) -> GraphChoice:
    """The choice for a graph left fp32 without a candidate."""
    return GraphChoice(graph, FP32, why, _megabytes(fp32_file))


def _rule(changed: int, selections: int, fp32_ms: float, int8_ms: float, fp32_mb: float,
          int8_mb: float) -> tuple[str, str]:
    if changed:
        return FP32, f"int8 changes {changed} of {selections} development selections"
    ratio = int8_ms / fp32_ms if fp32_ms > 0 else 1.0
    if ratio <= FASTER:
        return INT8, f"{1 / ratio:.1f}x as fast, same selections"
    smaller = int8_mb <= SMALLER * fp32_mb and fp32_mb - int8_mb >= MIN_SAVED_MB
    if smaller and ratio <= NOT_SLOWER:
        return INT8, f"{fp32_mb / int8_mb:.1f}x smaller, time x{ratio:.2f}, same selections"
    if smaller:
        return FP32, f"int8 is {fp32_mb / int8_mb:.1f}x smaller but its time is x{ratio:.2f}"
    return FP32, f"int8 time x{ratio:.2f}, {fp32_mb - int8_mb:.1f} MB saved: it does not pay"


def _decision(document: dict[str, Any]) -> tuple[str | None, list[str], str | None]:
    """What a fleet manager acts on: the top robot, the selected robots and the explanation."""
    candidates = document["candidates"]
    return (candidates[0]["robot_id"] if candidates else None,
            [candidate["robot_id"] for candidate in candidates if candidate["selected"]],
            (document.get("reasoning") or {}).get("text"))


def _time_per_call(fp32: Any, int8: Any, inputs: list[dict[str, np.ndarray]]) -> tuple[float, float]:
    """Each session's mean milliseconds per call on the same inputs (at most MAX_TIMED_CALLS, evenly spaced),
    the median of TIMING_REPEATS runs, the two sessions taking turns."""
    if not inputs:
        return 0.0, 0.0
    timed = inputs[::math.ceil(len(inputs) / MAX_TIMED_CALLS)]
    times: dict[int, list[float]] = {0: [], 1: []}
    for session in (fp32, int8):
        session.run(None, timed[0])  # the first run of a session allocates its buffers
    for _ in range(TIMING_REPEATS):
        for index, session in enumerate((fp32, int8)):
            started = time.perf_counter()
            for feed in timed:
                session.run(None, feed)
            times[index].append((time.perf_counter() - started) * 1e3 / len(timed))
    return float(np.median(times[0])), float(np.median(times[1]))


def _megabytes(path: Path) -> float:
    return os.path.getsize(path) / 1e6


def format_choices(choices: list[GraphChoice]) -> str:
    """The choices as a table: sizes, times per call, development selections changed, what was kept and why."""
    def number(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [f"{'graph':<13}{'int8 method':<17}{'fp32 MB':>8}{'int8 MB':>8}{'fp32 ms':>9}{'int8 ms':>9}"
             f"{'changed':>9}  {'kept':<5} why"]
    for c in choices:
        changed = "-" if c.changed is None else f"{c.changed}/{c.selections}"
        lines.append(f"{c.graph:<13}{c.method or '-':<17}{number(c.fp32_mb, 1):>8}{number(c.int8_mb, 1):>8}"
                     f"{number(c.fp32_ms, 3):>9}{number(c.int8_ms, 3):>9}{changed:>9}  {c.kept:<5} {c.why}")
    return "\n".join(lines)
