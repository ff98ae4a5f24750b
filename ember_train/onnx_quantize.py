"""`ember export quantize`: an fp32 ONNX export made int8 where it pays, behind an accuracy gate.

Every graph gets an int8 candidate (ember_train.onnx_int8: dynamic int8, or static QDQ for vision,
calibrated on rendered scenes of the public train split), measured and chosen on development selections
(ember_train.quantize_choice). The chosen graphs and the source's other files make a complete export;
its manifest lists the new hashes and records, under `quantization`, every graph's measurements and choice,
the fp32 graphs' hashes and the gate. The gate (ember_train.quantize_gate) scores it beside the source on
the report sets; past the tolerance nothing is written.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ember_core.atomic import atomic_directory
from ember_core.backend import load_backend
from ember_core.onnx_layout import GRAPHS, MANIFEST_FILE, VISION, Manifest, graph_file
from ember_core.processor import saved_fleet
from ember_core.scenes import render_scene
from ember_core.selector import Selector
from ember_train.data import TaskRecord, task_key
from ember_train.onnx_int8 import int8_method, quantize_graph
from ember_train.quantize_choice import INT8, Development, GraphChoice, kept_fp32, measure, record_development
from ember_train.quantize_gate import GateRow, GateSet, gate_rows

CALIBRATION_SCENES = 32  # rendered scenes that fix the vision graph's activation ranges


@dataclass
class QuantizeRequest:
    """What to quantize, where to, and on which tasks to choose, calibrate and gate."""

    model: Path  # a directory written by `ember export onnx`
    out: Path
    development: list[TaskRecord]  # the per-graph choice is measured on these; never a report set
    calibration: list[TaskRecord]  # their rendered scenes calibrate the vision graph
    gate: list[GateSet]
    max_drop: float  # points of hit@1 the gate accepts losing on a report set
    keep_fp32: tuple[str, ...] = ()  # graphs left fp32 without measuring an int8 candidate


@dataclass
class Quantized:
    """Each graph's choice and the gate's rows."""

    choices: list[GraphChoice]
    rows: list[GateRow]


class GateError(ValueError):
    """The quantized export loses more hit@1 than the tolerance on a report set; nothing was written."""

    def __init__(self, result: Quantized, max_drop: float):
        failed = [row for row in result.rows if not row.passes(max_drop)]
        super().__init__(
            f"the quantized export loses more than {max_drop:g} point(s) of hit@1 on: " + "; ".join(
                f"{row.label}: {row.hit_before:.3f} -> {row.hit_after:.3f}" for row in failed)
            + "; nothing was written. Keep a graph fp32 with --keep_fp32 GRAPH, or accept the drop with --max_drop")
        self.result = result


def write_quantized(request: QuantizeRequest) -> Quantized:
    """Quantize the export in `request.model` into `request.out` (replaced atomically); GateError past the gate."""
    source, out = Path(request.model), Path(request.out)
    manifest = Manifest.read(source)
    _check_request(request, manifest)
    fleet = saved_fleet(source)
    baseline = Selector(source, fleet=fleet, backend="onnx")
    development = record_development(baseline, request.development)
    with tempfile.TemporaryDirectory(prefix="ember-quantize-") as work, atomic_directory(out) as staging:
        choices = [_choose(graph, request, development, Path(work)) for graph in manifest.graphs]
        int8 = {choice.graph: _int8_file(Path(work), choice.graph) for choice in choices if choice.kept == INT8}
        record = {"fp32_sha256": {graph: entry["sha256"] for graph, entry in manifest.graphs.items()},
                  "development_selections": len(development.requests),
                  "graphs": {choice.graph: asdict(choice) for choice in choices}}
        written = write_export_dir(source, staging, int8, record)
        result = Quantized(choices, gate_rows(baseline.backend, load_backend(staging, fleet, "onnx"), request.gate))
        record["gate"] = {"max_drop_points": request.max_drop,
                          "rows": [{**asdict(row), "drop_points": row.drop_points} for row in result.rows]}
        written.quantization = record
        written.write(staging)
        if not all(row.passes(request.max_drop) for row in result.rows):
            raise GateError(result, request.max_drop)
    return result


def write_export_dir(source: Path, target: Path, int8: dict[str, Path], quantization: dict,
                     link: bool = False) -> Manifest:
    """A complete export in `target`: the files of the export in `source` (symbolic links with `link`), the graphs
    named in `int8` replaced by those files, and a manifest with their hashes and the `quantization` record."""
    manifest = Manifest.read(source)
    graph_of_file = {graph_file(graph): graph for graph in manifest.graphs}
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.name == MANIFEST_FILE:
            continue
        origin, destination = int8.get(graph_of_file.get(entry.name, ""), entry), target / entry.name
        if link:
            destination.symlink_to(origin.resolve())
        elif origin.is_dir():
            shutil.copytree(origin, destination)
        else:
            shutil.copyfile(origin, destination)
    written = Manifest.of(target, manifest.opset, manifest.model, list(manifest.graphs))
    written.parity, written.quantization = manifest.parity, quantization  # the parity of the fp32 graphs with torch
    written.write(target)
    return written


def _check_request(request: QuantizeRequest, manifest: Manifest) -> None:
    if manifest.quantization:
        raise ValueError(f"{request.model} is already quantized ({MANIFEST_FILE} has a quantization record); "
                         f"pass the fp32 directory `ember export onnx` wrote")
    if Path(request.out).resolve() == Path(request.model).resolve():
        raise ValueError(f"--out {request.out} is the export itself; write the quantized one into another directory")
    unknown = sorted(set(request.keep_fp32) - set(GRAPHS))
    if unknown:
        raise ValueError(f"unknown graph(s) {', '.join(unknown)} to keep fp32; graphs: {', '.join(GRAPHS)}")
    if not request.gate or not all(gate_set.records for gate_set in request.gate):
        raise ValueError("the accuracy gate needs report sets with tasks")
    reported = {task_key(record.task) for gate_set in request.gate for record in gate_set.records}
    shared = [record.task for record in request.development if task_key(record.task) in reported]
    if shared:
        raise ValueError(f"{len(shared)} development task(s) are also in a report set of the gate "
                         f"(e.g. {shared[0]!r}); choose on tasks the gate does not report on")


def _choose(graph: str, request: QuantizeRequest, development: Development, work: Path) -> GraphChoice:
    fp32_file = Path(request.model) / graph_file(graph)
    if graph in request.keep_fp32:
        return kept_fp32(graph, fp32_file, "kept fp32 as asked (--keep_fp32)")
    int8_file = _int8_file(work, graph)
    int8_file.parent.mkdir(parents=True)
    pixels = _calibration_pixels(development.selector, request.calibration) if graph == VISION else None
    quantize_graph(graph, fp32_file, int8_file, pixels)
    candidate_dir = work / graph / "export"
    write_export_dir(Path(request.model), candidate_dir, {graph: int8_file}, {}, link=True)
    candidate = Selector(candidate_dir, fleet=development.selector.fleet, backend="onnx")
    return measure(graph, int8_method(graph), development, candidate, fp32_file, int8_file)


def _int8_file(work: Path, graph: str) -> Path:
    return work / graph / graph_file(graph)


def _calibration_pixels(selector: Selector, records: list[TaskRecord]) -> np.ndarray:
    """(B,3,S,S) pixels of the first CALIBRATION_SCENES records' images or rendered scenes."""
    if not records:
        raise ValueError("no calibration tasks for the vision graph; keep it fp32 with --keep_fp32 vision")
    size, processor = selector.backend.config.image_size, selector.processor
    return np.stack([processor.pixels(record.image or render_scene(record.task, size), return_tensors="np")
                     for record in records[:CALIBRATION_SCENES]])
