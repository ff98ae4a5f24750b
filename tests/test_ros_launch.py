"""What `ros2 launch ember_ros selector.launch.py` starts, checked on the installed `selector` executable."""
from __future__ import annotations

import ast
import importlib.util
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="ROS 2 rclpy is not installed (pip install '.[ros]')")
from rosutil import Probe, spinning, wait_for  # noqa: E402

import rclpy  # noqa: E402

from conftest import REPO  # noqa: E402
from ember_ros import launch_defaults  # noqa: E402

LAUNCH_FILE = REPO / "launch" / "selector.launch.py"
TASK = "Inspect the intake pipe of a flooded pump station for blockages"


def test_command_line_of_the_launch_file_drives_the_executable(tiny_model_dir, tmp_path):
    """Params file (`/**:` keys), namespace and remaps as the launch file passes them, on the real executable."""
    params = tmp_path / "site.yaml"
    params.write_text(f"/**:\n  ros__parameters:\n    model_path: {tiny_model_dir}\n    top_k: 2\n"
                      "    require_image: false\n    return_reasoning: false\n")
    values = {"namespace": "site_a", "params_file": str(params), "image_topic": "/cam/image_raw",
              "task_topic": "/fleet/task", "robots_file": str(REPO / "robots.yaml")}
    executable = Path(sys.executable).with_name(launch_defaults.EXECUTABLE)
    process = subprocess.Popen([str(executable), *launch_defaults.command_line(values)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rclpy.init()
    try:
        probe = Probe(namespace="site_a", task_topic="/fleet/task", image_topic="/cam/image_raw")
        with spinning(probe):
            wait_for(lambda: probe.tasks.get_subscription_count() and probe.camera.get_subscription_count()
                     and probe.count_publishers("/site_a/robot_selection"), "the node on the remapped topics", timeout=120)
            wait_for(lambda: ("ember_selector", "/site_a") in probe.get_node_names_and_namespaces(), "the node's name")
            probe.send_task({"task": TASK, "request_id": "launched"})
            document = wait_for(lambda: probe.result("launched"), "a result on /site_a/robot_selection")
        assert document["status"] == "ok" and len(document["candidates"]) == 2 and document["reasoning"] is None
    finally:
        rclpy.try_shutdown()
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
    assert "configured: model" in output and "active: listening on /cam/image_raw, /cam/image_raw/compressed, /fleet/task" in output


def test_launch_file_declares_every_argument_from_launch_defaults():
    """`launch` is not installable here, so the file is checked as source: thin, and driven by launch_defaults."""
    tree = ast.parse(LAUNCH_FILE.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert {"launch_defaults", "Node", "DeclareLaunchArgument", "LaunchDescription"} <= imported
    assert {f.name for f in tree.body if isinstance(f, ast.FunctionDef)} == {"_selector_node", "generate_launch_description"}
    assert [a.name for a in launch_defaults.ARGUMENTS] == ["namespace", "params_file", "robots_file", "model_path",
                                                          "image_topic", "task_topic", "use_sim_time", "log_level", "autostart"]


def test_launch_file_with_launch_testing():
    """Runs only where ROS 2 `launch` and `launch_testing` are installed (not from PyPI, so skipped here)."""
    pytest.importorskip("launch_testing", reason="launch/launch_testing are not available from PyPI; "
                        "test_command_line_of_the_launch_file_drives_the_executable covers what the launch file does")
    import launch

    spec = importlib.util.spec_from_file_location("selector_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    arguments = [e for e in description.entities if isinstance(e, launch.actions.DeclareLaunchArgument)]
    assert [a.name for a in arguments] == [a.name for a in launch_defaults.ARGUMENTS]
    context = launch.LaunchContext()
    for argument in arguments:
        argument.visit(context)  # sets each argument's default in the context
    (node,) = module._selector_node(context)
    assert node.node_package == launch_defaults.PACKAGE and node.node_executable == launch_defaults.EXECUTABLE
