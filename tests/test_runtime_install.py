"""The runtime install carries no torch: `pip install '.[serve]'` into a virtualenv of its own, then `ember select
--backend onnx` and `ember serve --backend onnx` run an export there and answer what the development install
answers, and the torch backend says what to install.

The virtualenv is `.venv-runtime/` in the checkout (gitignored), kept between runs: the first builds it from
the package registries, later ones reinstall Ember into it (pip's wheel cache keeps both short). The ROS node
needs `ember_msgs`, which is built with cmake and the ROS build wheels (`tools/build_ember_msgs.py`), so it
runs here in the development virtualenv with the torch stack's imports made to fail, which is what a
runtime install without it does. Marked `runtime_install`: `pytest -m "not runtime_install"` skips it offline.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.runtime_install

RUNTIME_VENV = REPO / ".venv-runtime"
TORCH_STACK = ("torch", "torchvision", "timm", "transformers", "safetensors")
TASK = "Inspect the hull of a ship below the waterline for cracks"
READY_TIMEOUT_S = 120
VOLATILE = ("request_id", "stamp", "latency_ms")  # differ between any two runs


def clean_env(**extra: str) -> dict[str, str]:
    """No checkout or development virtualenv on the path, one thread, no network for models, no cache."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "EMBER_ROBOTS")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", EMBER_CACHE_DIR="", **extra)
    return env


def steady(document: dict) -> dict:
    return {key: value for key, value in document.items() if key not in VOLATILE}


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory) -> Path:
    """.venv-runtime with Ember and its `serve` extra from a copy of this checkout, and nothing of the torch stack."""
    source = tmp_path_factory.mktemp("src") / "ember_ros"
    ignore = shutil.ignore_patterns(".git", ".venv*", "build", "install", "log", "outputs", "*.egg-info", "__pycache__",
                                    ".pytest_cache")
    shutil.copytree(REPO, source, ignore=ignore)
    python = RUNTIME_VENV / "bin" / "python"
    if not python.is_file() or subprocess.run([str(python), "-c", ""], env=clean_env()).returncode != 0:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(RUNTIME_VENV)], check=True)  # none, or broken
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"{source}[serve]"], capture_output=True,
                          text=True, env=clean_env(), timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return RUNTIME_VENV


@pytest.fixture(scope="module")
def text_onnx_dir(tmp_path_factory) -> Path:
    """A tiny random-init model with the MiniLM sentence encoder and a scene head, exported (parity checked)."""
    import torch

    from ember_core import load_fleet
    from ember_core.model.config import preset
    from ember_core.pretrained import build_model, save_pretrained
    from ember_train.onnx_export import write_export

    torch.manual_seed(2)
    config = preset("tiny", text_encoder="minilm", scene_tags=["aerial", "underwater", "indoor", "outdoor"])
    model_dir = save_pretrained(*build_model(config, load_fleet()), tmp_path_factory.mktemp("tiny-text") / "model")
    out = tmp_path_factory.mktemp("tiny-text-onnx") / "onnx"
    write_export(model_dir, out)
    return out


@pytest.fixture(scope="module")
def scene_image(tmp_path_factory) -> Path:
    from ember_core.scenes import render_scene

    path = tmp_path_factory.mktemp("image") / "scene.png"
    render_scene(TASK, 96).save(path)
    return path


def ember(executable: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(executable), *args], cwd=cwd, capture_output=True, text=True, env=clean_env(), timeout=300)


def test_the_runtime_install_has_no_torch_stack(runtime_venv):
    python = runtime_venv / "bin" / "python"
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True,
                            env=clean_env(), check=True)
    installed = {re.sub(r"[-_.]+", "-", package["name"]).lower() for package in json.loads(listed.stdout)}
    assert {"onnxruntime", "tokenizers", "numpy", "pillow", "pluggy", "pyyaml", "ember-ros"} <= installed
    assert not installed & set(TORCH_STACK), installed & set(TORCH_STACK)
    for module in TORCH_STACK:
        done = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, text=True, env=clean_env())
        assert done.returncode == 1 and f"No module named '{module}'" in done.stderr


def test_ember_select_runs_an_export_in_the_runtime_install_as_in_the_development_one(
        runtime_venv, text_onnx_dir, scene_image, tmp_path):
    args = ("select", "--backend", "onnx", "--model", str(text_onnx_dir), "--task", TASK, "--image", str(scene_image),
            "--top-k", "5", "--json")
    runtime = ember(runtime_venv / "bin" / "ember", *args, cwd=tmp_path)
    assert runtime.returncode == 0, runtime.stderr
    document = json.loads(runtime.stdout)
    assert document["status"] == "ok" and document["model"]["name"].endswith("(onnx)")
    assert document["reasoning"]["reasoning_valid"] and document["image"]["scene"] is not None
    development = ember(Path(sys.executable).with_name("ember"), *args, cwd=tmp_path)
    assert development.returncode == 0, development.stderr
    assert steady(document) == steady(json.loads(development.stdout))


def test_the_torch_backend_says_what_to_install_in_the_runtime_install(runtime_venv, tmp_path):
    done = ember(runtime_venv / "bin" / "ember", "select", "--task", TASK, cwd=tmp_path)  # the shipped model: torch
    assert done.returncode == 2 and done.stdout == ""
    assert "the torch backend" in done.stderr and "pip install 'ember_ros[torch]'" in done.stderr
    assert "ember export onnx" in done.stderr and "--backend onnx" in done.stderr


def test_ember_serve_answers_over_http_in_the_runtime_install(runtime_venv, text_onnx_dir, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(runtime_venv / "bin" / "ember"), "serve", "--backend", "onnx", "--model",
                               str(text_onnx_dir), "--port", str(port)], cwd=tmp_path, env=clean_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _ready(port):
            assert server.poll() is None, server.stdout.read().decode()
            assert time.monotonic() < deadline, "ember serve did not become ready"
            time.sleep(0.2)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/select", headers={"content-type": "application/json"},
                                         data=json.dumps({"task": TASK, "top_k": 5}).encode())
        with urllib.request.urlopen(request, timeout=60) as answer:
            document = json.loads(answer.read())
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=30)[0].decode()
    assert document["status"] == "ok" and document["reasoning"]["reasoning_valid"], output
    selected = ember(Path(sys.executable).with_name("ember"), "select", "--model", str(text_onnx_dir), "--task", TASK,
                     "--top-k", "5", "--json", cwd=tmp_path)
    assert steady(document) == steady(json.loads(selected.stdout))


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as answer:
            return answer.status == 200
    except (urllib.error.URLError, ConnectionError):
        return False


# The selector node, with the torch stack's imports failing as in an install without it.
NODE_SCRIPT = textwrap.dedent("""
    import importlib.abc, json, sys

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {stack}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

    sys.meta_path.insert(0, NotInstalled())
    sys.path.insert(0, sys.argv[2])  # tests/, for rosutil
    import rclpy
    from rosutil import connected, node_factory, probe_factory, send_frame, spinning, wait_for

    rclpy.init()
    with node_factory(sys.argv[1]) as make_node, probe_factory() as make_probe:
        node, probe = make_node(backend="onnx"), make_probe()
        with spinning(node, probe):
            connected(probe, node)
            send_frame(probe, node)
            probe.send_task({{"task": sys.argv[3], "request_id": "r-1", "top_k": 5}})
            document = wait_for(lambda: probe.result("r-1"), "the selection")
    rclpy.try_shutdown()
    print(json.dumps({{"document": document, "torch_stack": sorted(m for m in sys.modules if m.split(".")[0] in {stack})}}))
""").format(stack=set(TORCH_STACK))


def test_the_ros_node_selects_with_an_export_where_the_torch_stack_cannot_be_imported(text_onnx_dir, tmp_path):
    pytest.importorskip("rclpy", reason="ROS 2 rclpy is not installed (pip install '.[ros]')")
    done = subprocess.run([sys.executable, "-c", NODE_SCRIPT, str(text_onnx_dir), str(REPO / "tests"), TASK],
                          cwd=tmp_path, capture_output=True, text=True, env=clean_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["torch_stack"] == []
    document = result["document"]
    assert document["status"] == "ok" and document["model"]["name"].endswith("(onnx)")
    assert document["image"]["frame_id"] == "camera" and document["reasoning"]["reasoning_valid"]
