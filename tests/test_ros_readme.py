"""The README's 20-line fleet manager, run verbatim against a selector node started as the README says."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
import threading

import pytest
import yaml

pytest.importorskip("rclpy", reason="ROS 2 rclpy is not installed (pip install '.[ros]')")
from rosutil import spinning, wait_for  # noqa: E402

import rclpy  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from ember_core import load_fleet  # noqa: E402
from ember_ros.selector_node import SelectorNode  # noqa: E402
from test_readme import _example  # noqa: E402


def test_readme_consumer_gets_a_dispatch_decision(tiny_model_dir, tmp_path):
    script = tmp_path / "consumer.py"
    script.write_text(_example("consumer.py"), encoding="utf-8")
    rclpy.init()
    # The node as the README starts it for this example (its -p values), on the tiny model.
    given = re.findall(r"-p (\w+):=(\S+)", _example("selector for the consumer"))
    assert given == [("require_image", "false")]
    node = SelectorNode(parameter_overrides=[Parameter("model_path", value=str(tiny_model_dir))]
                        + [Parameter(name, value=yaml.safe_load(value)) for name, value in given])
    consumer = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(consumer.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        assert node.autostart()
        with spinning(node):
            line = wait_for(lambda: next((x for x in lines if x.startswith("job-17: dispatch [")), None),
                            "the consumer's dispatch line", timeout=60)
    finally:
        consumer.kill()
        consumer.wait(10)
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()
    chosen = ast.literal_eval(line.split("dispatch ", 1)[1])  # the printed list of robot ids
    assert chosen and set(chosen) <= set(load_fleet().ids)
