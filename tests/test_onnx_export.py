"""`ember export onnx`: the export directory is a complete model, and the parity check fails loudly."""
from __future__ import annotations

import json
import shutil

import pytest

from ember_core.cli import main
from ember_core.digest import file_sha256
from ember_core.onnx_layout import FORMAT, GRAPHS, MANIFEST_FILE, NEW_ROBOT_ENCODER, TEXT_ENCODER
from ember_core.selector import Selector


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_export_writes_graphs_processor_files_and_a_manifest_after_a_passing_parity_check(capsys, tiny_model_dir, tmp_path):
    out = tmp_path / "onnx"
    code, printed, _ = run(capsys, "export", "onnx", "--model", str(tiny_model_dir), "--out", str(out), "--opset", "17")
    assert code == 0
    rows = [line for line in printed.splitlines() if line.startswith(("vision", "language", "robot", "token", "selection"))]
    assert len(rows) >= 8 and all(line.endswith(" ok") for line in rows)
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["format"] == FORMAT and manifest["opset"] == 17
    assert set(manifest["graphs"]) == set(GRAPHS) - {TEXT_ENCODER, NEW_ROBOT_ENCODER}  # the tiny preset has no sentence encoder
    for entry in manifest["graphs"].values():
        assert file_sha256(out / entry["file"]) == entry["sha256"]
    assert manifest["parity"] and all(check["passed"] for check in manifest["parity"])
    assert json.loads((out / "processor_config.json").read_text())["calibration"] == {"scale": 1.0, "margin": 0.0,
                                                                                       "bias": 0.0}
    fleet = json.loads((out / "fleet.json").read_text())
    assert fleet["ids"] == json.loads((tiny_model_dir / "config.json").read_text())["robot_ids"]
    assert {"config.json", "tokenizer.json", "tokenizer_config.json"} <= {path.name for path in out.iterdir()}
    assert not (out / "model.safetensors").exists()  # the graphs carry the weights


def test_a_parity_check_past_its_tolerance_fails_the_export_and_writes_nothing(capsys, monkeypatch, tiny_model_dir, tmp_path):
    monkeypatch.setattr("ember_train.onnx_parity.TENSOR_TOLERANCE", 0.0)
    out = tmp_path / "onnx"
    code, printed, err = run(capsys, "export", "onnx", "--model", str(tiny_model_dir), "--out", str(out))
    assert code == 2
    assert "FAILED" in printed and "max abs diff" in printed
    assert "does not match the torch model" in err and "nothing was written" in err
    assert not out.exists()


def test_export_refuses_to_write_over_the_model_it_reads(capsys, tiny_model_dir):
    code, _, err = run(capsys, "export", "onnx", "--model", str(tiny_model_dir), "--out", str(tiny_model_dir))
    assert code == 2 and "is the model directory itself" in err
    assert (tiny_model_dir / "model.safetensors").is_file()


def test_a_graph_that_is_not_the_one_the_manifest_lists_is_refused(tiny_onnx_dir, tmp_path):
    copy = shutil.copytree(tiny_onnx_dir, tmp_path / "onnx")
    with (copy / "robot_head.onnx").open("ab") as graph:
        graph.write(b"\0")
    with pytest.raises(ValueError, match=r"robot_head\.onnx: missing, or not the file manifest\.json lists"):
        Selector(copy)


def test_the_backend_must_fit_the_model_directory(capsys, tiny_model_dir, tiny_onnx_dir):
    code, _, err = run(capsys, "select", "--model", str(tiny_onnx_dir), "--backend", "torch", "--task", "Inspect a roof")
    assert code == 2 and "is an ONNX export" in err
    code, _, err = run(capsys, "select", "--model", str(tiny_model_dir), "--backend", "onnx", "--task", "Inspect a roof")
    assert code == 2 and "needs a directory written by `ember export onnx`" in err
