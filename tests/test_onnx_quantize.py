"""`ember export quantize`: int8 graphs that load and select, a manifest that lists them, and a gate that fails."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import REPO
from ember_core.cli import main
from ember_core.digest import file_sha256
from ember_core.onnx_layout import (LANGUAGE, MANIFEST_FILE, ROBOT_HEAD, TEXT_ENCODER, TOKEN_SCORES, VISION, Manifest,
                                   graph_file)
from ember_core.request import SelectionRequest
from ember_core.scenes import render_scene
from ember_core.selector import Selector
from ember_train.onnx_int8 import gemm_as_matmul, quantize_graph
from ember_train.onnx_quantize import write_export_dir

DATA = REPO / "tests" / "data"
TASK = "Inspect the hull of a ship under water for cracks"


def task_lines(path, start: int, count: int) -> list[str]:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    return lines[start:start + count]


@pytest.fixture(scope="module")
def task_files(tmp_path_factory):
    """Small, disjoint task sets: a stand-in for the public data (split by seed), a report set, a development set."""
    directory = tmp_path_factory.mktemp("quantize-tasks")
    sets = {"data.jsonl": task_lines(DATA / "novel_tasks.jsonl", 0, 20),
            "report.jsonl": task_lines(DATA / "novel_tasks.jsonl", 20, 6),
            "dev.jsonl": task_lines(DATA / "novel_dev_tasks.jsonl", 0, 6)}
    for name, lines in sets.items():
        (directory / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


def quantize_args(source, out, task_files, *extra: str) -> list[str]:
    return ["export", "quantize", "--model", str(source), "--out", str(out), "--data", str(task_files / "data.jsonl"),
            "--tasks", str(task_files / "report.jsonl"), "--dev", str(task_files / "dev.jsonl"), *extra]


@pytest.fixture(scope="module")
def quantized(tiny_onnx_dir, task_files, tmp_path_factory):
    """`ember export quantize` of the tiny export: its exit status, what it printed, and the directory it wrote."""
    out = tmp_path_factory.mktemp("tiny-int8") / "int8"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(quantize_args(tiny_onnx_dir, out, task_files))
    return code, printed.getvalue(), out


def test_quantize_writes_a_complete_export_with_a_choice_per_graph_that_passes_its_gate(quantized, tiny_onnx_dir):
    code, printed, out = quantized
    assert code == 0, printed
    source = json.loads((tiny_onnx_dir / MANIFEST_FILE).read_text())
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    record = manifest["quantization"]
    assert set(record["graphs"]) == set(source["graphs"]) == set(manifest["graphs"])
    assert record["fp32_sha256"] == {graph: entry["sha256"] for graph, entry in source["graphs"].items()}
    for graph, choice in record["graphs"].items():
        assert file_sha256(out / graph_file(graph)) == manifest["graphs"][graph]["sha256"]
        assert (manifest["graphs"][graph]["sha256"] == source["graphs"][graph]["sha256"]) == (choice["kept"] == "fp32")
        assert choice["changed"] is not None and choice["selections"] == 6
        assert f"\n{graph} " in printed  # a row of the per-graph table
    assert len(record["gate"]["rows"]) == 4 and all(row["drop_points"] <= 1.0 for row in record["gate"]["rows"])
    assert sum(line.endswith(" ok") for line in printed.splitlines()) == 4 and "FAILED" not in printed
    assert {path.name for path in tiny_onnx_dir.iterdir()} == {path.name for path in out.iterdir()}
    Manifest.read(out)  # every hash checks


def test_ember_select_runs_the_quantized_export(capsys, quantized):
    _, _, out = quantized
    code = main(["select", "--backend", "onnx", "--model", str(out), "--task", TASK, "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0 and document["status"] == "ok" and document["reasoning"]["reasoning_valid"]


def test_a_gate_past_its_tolerance_fails_and_writes_nothing(capsys, tiny_onnx_dir, task_files, tmp_path):
    # Every graph kept fp32: hit@1 is unchanged, a drop of 0 points, which a tolerance of -1 point does not accept.
    out = tmp_path / "int8"
    keep = [arg for graph in json.loads((tiny_onnx_dir / MANIFEST_FILE).read_text())["graphs"]
            for arg in ("--keep_fp32", graph)]
    code = main(quantize_args(tiny_onnx_dir, out, task_files, "--max_drop", "-1", *keep))
    printed, err = capsys.readouterr()
    assert code == 2
    assert printed.count("FAILED") == 4 and "kept fp32 as asked" in printed
    assert "loses more than -1 point(s) of hit@1" in err and "nothing was written" in err
    assert not out.exists()


def test_a_development_set_that_is_also_reported_on_is_refused(capsys, tiny_onnx_dir, task_files, tmp_path):
    args = quantize_args(tiny_onnx_dir, tmp_path / "int8", task_files)
    args[args.index("--dev") + 1] = str(task_files / "report.jsonl")
    assert main(args) == 2
    assert "development task(s) are also in a report set" in capsys.readouterr().err


def test_an_export_is_quantized_once(capsys, quantized, task_files, tmp_path):
    assert main(quantize_args(quantized[2], tmp_path / "again", task_files)) == 2
    assert "is already quantized" in capsys.readouterr().err


def test_int8_graphs_are_integer_graphs_that_the_backend_loads_and_selects_with(tiny_onnx_dir, tmp_path):
    size = json.loads((tiny_onnx_dir / "config.json").read_text())["image_size"]
    selector = Selector(tiny_onnx_dir, backend="onnx")
    pixels = np.stack([selector.processor.pixels(render_scene(task, size), return_tensors="np")
                       for task in (TASK, "Photograph the roof from above")])
    int8 = {}
    for graph in (VISION, LANGUAGE, ROBOT_HEAD, TOKEN_SCORES):
        int8[graph] = tmp_path / "work" / graph_file(graph)
        int8[graph].parent.mkdir(exist_ok=True)
        quantize_graph(graph, tiny_onnx_dir / graph_file(graph), int8[graph], pixels if graph == VISION else None)
    ops = {graph: {node.op_type for node in onnx.load(path).graph.node} for graph, path in int8.items()}
    assert "QuantizeLinear" in ops[VISION] and "DequantizeLinear" in ops[VISION]
    assert all("DynamicQuantizeLinear" in ops[graph] for graph in (LANGUAGE, ROBOT_HEAD))
    out = tmp_path / "export"
    write_export_dir(tiny_onnx_dir, out, int8, {"graphs": "all int8"})
    manifest = Manifest.read(out)
    assert manifest.quantization == {"graphs": "all int8"} and manifest.opset == Manifest.read(tiny_onnx_dir).opset
    document = Selector(out, backend="onnx").select(SelectionRequest(TASK, render_scene(TASK, size))).to_document()
    assert document["status"] == "ok" and document["reasoning"]["reasoning_valid"]


def test_gemm_as_matmul_computes_what_the_gemm_did():
    rng = np.random.default_rng(0)
    weight, bias = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "weight", "bias"], ["y"], name="linear", transB=1)], "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((2, 3)).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    rewritten = gemm_as_matmul(model)
    assert [node.op_type for node in rewritten.graph.node] == ["MatMul", "Add"]
    after = ort.InferenceSession(rewritten.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(after, before, rtol=1e-6)
    np.testing.assert_allclose(before, x @ weight.T + bias, rtol=1e-5)


def test_a_graph_with_fused_attention_is_quantized(tmp_path):
    # The export fuses the sentence encoder's attention into com.microsoft Attention, whose outputs onnx's shape
    # inference leaves untyped; the MatMul after it is quantized all the same.
    rng = np.random.default_rng(0)
    width = 8
    graph = helper.make_graph(
        [helper.make_node("Attention", ["x", "qkv", "qkv_bias", "lengths"], ["attended"], domain="com.microsoft",
                          num_heads=2),
         helper.make_node("MatMul", ["attended", "weight"], ["projected"]),
         helper.make_node("Add", ["projected", "x"], ["y"])], "fused attention",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "tokens", width]),
         helper.make_tensor_value_info("lengths", TensorProto.INT32, ["batch"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "tokens", width])],
        [numpy_helper.from_array(rng.standard_normal((width, 3 * width)).astype(np.float32), "qkv"),
         numpy_helper.from_array(np.zeros(3 * width, np.float32), "qkv_bias"),
         numpy_helper.from_array(rng.standard_normal((width, width)).astype(np.float32), "weight")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    onnx.save(model, fp32)
    quantize_graph(TEXT_ENCODER, fp32, int8)
    assert {"QAttention", "MatMulInteger"} <= {node.op_type for node in onnx.load(int8).graph.node}
    inputs = {"x": rng.standard_normal((2, 3, width)).astype(np.float32), "lengths": np.array([3, 2], dtype=np.int32)}
    before, after = (ort.InferenceSession(str(path)).run(None, inputs)[0] for path in (fp32, int8))
    np.testing.assert_allclose(after, before, atol=0.1 * np.abs(before).max())  # int8 steps of random weights
