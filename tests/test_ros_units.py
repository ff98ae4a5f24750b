"""The node's plain-Python parts: task parsing, the bounded queue, frame pairing, topic split, launch values,
and the one parameter table that the params file, the README and the launch arguments follow."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from ember_core.availability import FleetStatus
from ember_core.request import DEFAULT_CONFIDENCE_THRESHOLD, DEFAULT_TOP_K
from ember_core.selection import ImageInfo
from ember_ros import launch_defaults
from ember_ros.camera import Frame, LatestFrame, pair
from ember_ros.outputs import split_document
from ember_ros.parameters import SPEC_BY_NAME, SPECS, Settings
from ember_ros.requests import TaskQueue, TaskRequest, parse_task
from ember_ros.worker import GIL_SWITCH_INTERVAL_S, SelectionWorker, selection_request


def test_plain_and_json_tasks():
    plain = parse_task("Inspect the bridge")
    assert plain.task == "Inspect the bridge" and plain.error is None and len(plain.request_id) == 32
    full = parse_task(json.dumps({"task": "Inspect", "request_id": "r1", "task_id": "T9", "top_k": 2}))
    assert (full.task, full.request_id, full.task_id, full.top_k, full.error) == ("Inspect", "r1", "T9", 2, None)


@pytest.mark.parametrize("text, message, request_id", [
    ("", "task is empty", None),
    ('{"task": "x", ', "does not parse", None),
    ('["task"]', "must be an object", None),
    ('{"request_id": "r2"}', 'non-empty "task"', "r2"),
    ('{"task": "x", "request_id": "r3", "top_k": "2"}', "top_k must be", "r3"),
    ('{"task": "x", "request_id": "r4", "colour": "red"}', "unknown key(s) ['colour']", "r4"),
    ('{"task": "x", "request_id": 5}', "request_id must be a non-empty string", None),
])
def test_unreadable_tasks_keep_their_ids_and_say_why(text, message, request_id):
    request = parse_task(text)
    assert message in request.error
    assert request.request_id == request_id if request_id else len(request.request_id) == 32


def test_queue_drops_the_oldest_when_full_and_on_shrink():
    queue = TaskQueue(2)
    requests = [TaskRequest(str(i), "t") for i in range(4)]
    assert queue.put(requests[0]) == [] and queue.put(requests[1]) == []
    assert queue.put(requests[2]) == [requests[0]] and len(queue) == 2 and queue.high_water == 2
    assert queue.resize(1) == [requests[1]]
    assert queue.get(timeout=0.01) is requests[2] and queue.get(timeout=0.01) is None
    queue.put(requests[3])
    assert queue.drain() == [requests[3]] and len(queue) == 0


def frame(stamp: float | None, received: float = 100.0) -> Frame:
    return Frame(message=None, compressed=False, stamp=stamp, frame_id="cam", received=received)


def test_pairing_by_age_and_require_image():
    assert pair(None, 100.0, 1.0, True).status == "no_image"
    assert pair(None, 100.0, 1.0, False) == pair(None, 0.0, 0.0, False) and pair(None, 1, 1, False).frame is None
    fresh = pair(frame(99.5), 100.0, 1.0, True)
    assert fresh.status == "ok" and fresh.info == ImageInfo(stamp=99.5, frame_id="cam", age_ms=500.0)
    stale = pair(frame(97.0), 100.0, 1.0, True)
    assert stale.status == "stale_image" and stale.info.age_ms == 3000.0 and "3.00 s old" in stale.error
    assert pair(frame(97.0), 100.0, 1.0, False).frame is None  # text only
    unstamped = pair(frame(None, received=99.8), 100.0, 1.0, True)
    assert unstamped.status == "ok" and unstamped.info.stamp is None and unstamped.info.age_ms == pytest.approx(200.0)
    assert pair(frame(100.5), 100.0, 1.0, True).info.age_ms == 0.0  # clock skew is not age


def test_latest_frame_keeps_only_the_newest():
    camera = LatestFrame()
    assert camera.latest() is None and camera.rate_hz() == 0.0
    for i in range(50):
        camera.store(frame(float(i)))
    assert camera.latest().stamp == 49.0 and camera.rate_hz() > 0
    camera.clear()
    assert camera.latest() is None


def test_split_document_shares_the_join_keys():
    document = {"schema": "ember.selection/1", "request_id": "r", "task_id": None, "task": "t", "status": "ok",
                "stamp": 1.0, "image": None, "candidates": [], "team": ["drone", "humanoid"], "reasoning": {"steps": []},
                "plan": {"subtasks": []}}
    parts = {topic: json.loads(text) for topic, text in split_document(document).items()}
    assert parts["robot_selection/json"] == document
    assert parts["selection_reasoning"]["reasoning"] == {"steps": []}
    assert parts["subtask_plan"]["plan"] == {"subtasks": []} and parts["subtask_plan"]["team"] == ["drone", "humanoid"]
    for part in parts.values():
        assert (part["request_id"], part["stamp"], part["image"]) == ("r", 1.0, None)


def test_launch_command_line_from_defaults_and_overrides():
    line = launch_defaults.command_line({})
    assert line[:3] == ["--ros-args", "-r", "__node:=ember_selector"]
    assert line[line.index("--params-file") + 1] == str(launch_defaults.default_params_file())
    assert "robots_file" not in " ".join(line)  # empty launch values keep the params file's
    line = launch_defaults.command_line({"namespace": "site_a", "image_topic": "/cam/image_raw", "model_path": "/m",
                                         "autostart": "false", "log_level": "debug"})
    assert "__ns:=/site_a" in line and "image:=/cam/image_raw" in line and "image/compressed:=/cam/image_raw/compressed" in line
    assert "model_path:=/m" in line and "autostart:=false" in line and line[-2:] == ["--log-level", "debug"]
    with pytest.raises(ValueError, match="true or false"):
        launch_defaults.command_line({"use_sim_time": "yes"})


def test_launch_arguments_that_set_parameters_default_to_the_params_file():
    """An argument's default must not override the params file: `autostart: false` there once lost to `true`."""
    line = launch_defaults.command_line({})
    assert not [arg for arg in line if arg.split(":=")[0] in SPEC_BY_NAME]
    assert launch_defaults.parameter_overrides({**launch_defaults.DEFAULTS, "autostart": "False", "robots_file": "/r.yaml"}) \
        == {"use_sim_time": False, "autostart": False, "robots_file": "/r.yaml"}


def test_launch_arguments_that_set_parameters_describe_them_from_the_specs():
    setting = [argument for argument in launch_defaults.ARGUMENTS if argument.name in SPEC_BY_NAME]
    assert [argument.name for argument in setting] == ["robots_file", "model_path", "autostart"]
    for argument in setting:
        spec = SPEC_BY_NAME[argument.name]
        assert argument.default == "" and argument.description.startswith(f"parameter {spec.name}: {spec.description}")
    autostart = next(argument for argument in setting if argument.name == "autostart")
    assert "(default true)" in autostart.description


def test_shipped_params_file_lists_every_parameter_with_its_default_in_order():
    values = yaml.safe_load(launch_defaults.default_params_file().read_text())["/**"]["ros__parameters"]
    assert list(values) == [spec.name for spec in SPECS]
    assert [(type(v), v) for v in values.values()] == [(type(spec.default), spec.default) for spec in SPECS]


def _readme_parameter_rows() -> list[list[str]]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = re.search(r"<!-- ros parameters.*?-->\n(.*?)\n\n", readme, re.S)
    assert table, "README.md has no table after a '<!-- ros parameters ... -->' marker"
    lines = table.group(1).splitlines()[2:]  # after the header and the |---| line
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]


def test_readme_parameter_table_is_the_spec_table():
    rows = _readme_parameter_rows()
    assert [row[0].strip("`") for row in rows] == [spec.name for spec in SPECS]
    for (name, default, limits, notes), spec in zip(rows, SPECS):
        shown = yaml.safe_load(default.strip("`"))
        assert (type(shown), shown) == (type(spec.default), spec.default), f"README default of {spec.name}: {default}"
        assert limits == ("" if spec.low is None else f"{spec.low:g}-{spec.high:g}"), f"README range of {spec.name}"
        assert notes.startswith("read-only" if spec.read_only else "dynamic"), f"README notes of {spec.name}"


def test_top_k_and_threshold_defaults_are_the_core_ones():
    assert (SPEC_BY_NAME["top_k"].default, SPEC_BY_NAME["confidence_threshold"].default) == \
        (DEFAULT_TOP_K, DEFAULT_CONFIDENCE_THRESHOLD)


def test_selection_request_takes_the_tasks_top_k_and_the_nodes_other_settings():
    settings = Settings(top_k=4, confidence_threshold=0.8, return_reasoning=False, max_image_age=1.0,
                        require_image=True, queue_size=4, stall_timeout=60.0)
    status = FleetStatus({"drone": "busy"})
    info = ImageInfo(stamp=1.0, frame_id="cam", age_ms=5.0)
    own = selection_request(TaskRequest("r1", "Inspect", task_id="T1", top_k=2), settings, status, image_info=info)
    assert (own.request_id, own.task_id, own.task, own.top_k) == ("r1", "T1", "Inspect", 2)
    assert (own.confidence_threshold, own.return_reasoning, own.fleet_status, own.image_info) == (0.8, False, status, info)
    assert selection_request(TaskRequest("r2", "Inspect"), settings, status).top_k == 4


@pytest.mark.parametrize("command, expected", [
    (["selector", "--help"], ["usage: ros2 run ember_ros selector", *(f"  {spec.name} " for spec in SPECS),
                              "serves:     ~/select_robots"]),
    (["demo_camera", "--help"], ["usage: demo_camera", "--rate"]),
    (["fleet_listener", "--help"], ["usage: fleet_listener", "--count"]),
    (["ember", "--version"], ["ember 0.1.0"]),
])
def test_the_executables_print_help_and_exit_without_starting_a_node(command, expected):
    executable = Path(sys.executable).with_name(command[0])
    result = subprocess.run([str(executable), *command[1:]], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    for text in expected:
        assert text in result.stdout, text


@pytest.mark.parametrize("before", [0.005, GIL_SWITCH_INTERVAL_S / 2])
def test_the_worker_shortens_the_gil_switch_interval_and_never_lengthens_it(before):
    saved = sys.getswitchinterval()
    try:
        sys.setswitchinterval(before)
        SelectionWorker(selector=None, host=None)
        assert sys.getswitchinterval() == pytest.approx(min(before, GIL_SWITCH_INTERVAL_S))
    finally:
        sys.setswitchinterval(saved)
