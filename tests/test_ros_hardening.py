"""The selector node under failure: bad inputs, a burst, exceptions anywhere, a stalled or dead worker; it answers on."""
from __future__ import annotations

import signal
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="ROS 2 rclpy is not installed (pip install '.[ros]')")
from rosutil import (  # noqa: E402
    KEEP_ALL_RELIABLE, connected, hold_frame, make_node, make_probe, ros, send_frame, spinning, wait_for)

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from rclpy.exceptions import InvalidHandle  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from rclpy.waitable import NumberOfEntities, Waitable  # noqa: E402
from sensor_msgs.msg import CompressedImage  # noqa: E402
from sensor_msgs.msg import Image as RawImage  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from ember_core.selection import validate_document  # noqa: E402
from ember_ros import worker as worker_module  # noqa: E402
from ember_ros.outputs import JSON_TOPICS  # noqa: E402

TASK = "Inspect the intake pipe of a flooded pump station for blockages"
BURST = 1000
FROZEN_S = 15.0  # the longest the consumer stays frozen: under DDS's 20 s lease
# A fleet manager in its own process: a reliable KEEP_ALL reader on the three result topics that
# prints how many distinct answers each got once it has BURST of each (or after 150 s: generous for a loaded CI).
CONSUMER = f"""
import json, sys, time
import rclpy
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
rclpy.init()
node = Node("ember_test_consumer")
qos = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
seen = {{topic: set() for topic in {JSON_TOPICS!r}}}
for topic in seen:
    node.create_subscription(String, topic, lambda m, t=topic: seen[t].add(json.loads(m.data)["request_id"]), qos)
print("ready", flush=True)
deadline = time.monotonic() + 150
while time.monotonic() < deadline and min(len(ids) for ids in seen.values()) < {BURST}:
    rclpy.spin_once(node, timeout_sec=0.1)
print(json.dumps({{topic: len(ids) for topic, ids in seen.items()}}), flush=True)
"""


def test_a_burst_of_1000_tasks_reaches_a_consumer_that_paused_on_every_result_topic(make_node, make_probe):
    """With keep-last 10 result publishers this consumer, frozen for 3 s while the node answered, got only 70-80%
    of the answers: when it asked for resends, the writer had replaced the rest."""
    node, probe = make_node(require_image=False, return_reasoning=False, queue_size=4), make_probe(output_qos=KEEP_ALL_RELIABLE)
    consumer = subprocess.Popen([sys.executable, "-c", CONSUMER], stdout=subprocess.PIPE, text=True)
    try:
        assert consumer.stdout.readline().strip() == "ready"
        with spinning(node, probe):
            connected(probe, node)
            wait_for(lambda: all(node.count_subscribers(f"/{topic}") == 2 for topic in JSON_TOPICS), "the consumer")
            consumer.send_signal(signal.SIGSTOP)  # briefly: DDS drops a peer silent past its lease (20 s)
            try:
                for i in range(BURST):
                    probe.send_task({"task": TASK, "request_id": f"burst-{i}"})
                wait_for(lambda: len(probe.outputs["subtask_plan"]) > 50, "the node to answer while the consumer froze",
                         timeout=FROZEN_S)
            finally:
                consumer.send_signal(signal.SIGCONT)
            wait_for(lambda: len(probe.outputs["subtask_plan"]) >= BURST, "the node to answer the burst", timeout=120)
            received = consumer.communicate(timeout=160)[0].strip().splitlines()[-1]
    finally:
        consumer.kill()
        consumer.wait(10)
    assert received == '{"robot_selection/json": 1000, "selection_reasoning": 1000, "subtask_plan": 1000}'
    for topic in JSON_TOPICS:
        assert sorted(m["request_id"] for m in probe.outputs[topic]) == sorted(f"burst-{i}" for i in range(BURST))
    statuses = {m["status"] for m in probe.outputs["robot_selection/json"]}
    assert statuses == {"ok", "rejected_busy"} and node.stats.counts["results_published"] == BURST


class DestroyedWhileWaiting(Waitable):
    """A QoS event handler destroyed by a lifecycle transition while the executor built its wait set: rclpy 9
    adds it anyway, and adding it raises InvalidHandle (once; the next wait set no longer has it)."""

    def __init__(self, callback_group):
        super().__init__(callback_group)
        self.raised = 0

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None

    def is_ready(self, wait_set) -> bool:
        return False

    def take_data(self):
        return None

    async def execute(self, taken_data) -> None:
        return None

    def get_num_entities(self) -> NumberOfEntities:
        return NumberOfEntities()

    def add_to_wait_set(self, wait_set) -> None:
        if not self.raised:
            self.raised += 1
            raise InvalidHandle("cannot use Destroyable because destruction was requested")


def test_an_entity_destroyed_while_the_executor_waits_costs_one_turn_and_the_node_answers_on(make_node, make_probe):
    """With rclpy's own MultiThreadedExecutor this ended spin(): deactivating the node then hung 4 times in 15."""
    node, probe = make_node(require_image=False, return_reasoning=False), make_probe()
    destroyed = DestroyedWhileWaiting(node.default_callback_group)
    node.add_waitable(destroyed)
    with spinning(node, probe):
        connected(probe, node)
        probe.send_task({"task": TASK, "request_id": "after"})
        answer = wait_for(lambda: probe.result("after"), "the answer after the destroyed entity")
    assert destroyed.raised == 1 and answer["status"] == "ok"


def test_an_exception_anywhere_in_answering_is_an_error_result_and_the_worker_goes_on(make_node, make_probe, monkeypatch):
    node, probe = make_node(return_reasoning=False, max_image_age=60.0), make_probe()
    real_publish, publish_calls = node.publish_result, []

    def conditions_fails():
        raise KeyError("clock")

    def decode_fails(message):
        raise RuntimeError("decoder bug")

    def publish_fails_first(selection, task, inference_ms=None, frame=None):
        publish_calls.append(selection.status)
        if len(publish_calls) == 1:  # the answer; the error result that replaces it goes out
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        real_publish(selection, task, inference_ms, frame)

    breakers = {"conditions": lambda: monkeypatch.setattr(node, "conditions", conditions_fails),
                "decode": lambda: monkeypatch.setattr(worker_module, "decode_image", decode_fails),
                "publish": lambda: monkeypatch.setattr(node, "publish_result", publish_fails_first)}
    results = {}
    with spinning(node, probe):
        connected(probe, node)
        send_frame(probe, node)
        for step in breakers:
            breakers[step]()
            probe.send_task({"task": TASK, "request_id": step})
            results[step] = wait_for(lambda: probe.result(step), f"the answer to {step}")
            monkeypatch.undo()
        probe.send_task({"task": TASK, "request_id": "after"})
        after = wait_for(lambda: probe.result("after"), "the next answer")
    for step, message in (("conditions", "answering the task failed: KeyError('clock')"),
                          ("decode", "answering the task failed: RuntimeError('decoder bug')"),
                          ("publish", "publishing the result failed: UnicodeEncodeError")):
        validate_document(results[step])
        assert results[step]["status"] == "error" and results[step]["errors"][0].startswith(message), results[step]
    assert after["status"] == "ok" and node.worker.is_alive() and node.stats.counts["worker_exceptions"] == 3
    assert publish_calls == ["ok", "error"]
    assert [m["request_id"] for m in probe.outputs["robot_selection/json"]] == ["conditions", "decode", "publish", "after"]


def _latest_status(probe) -> DiagnosticStatus | None:
    return probe.diagnostics[-1].status[0] if probe.diagnostics else None


def test_the_watchdog_reports_a_stalled_and_a_dead_worker(make_node, make_probe, monkeypatch):
    node, probe = make_node(require_image=False, return_reasoning=False, stall_timeout=1.0), make_probe()
    release, real_select = threading.Event(), node.selector.select

    def hangs(request):
        release.wait(20)
        return real_select(request)

    with spinning(node, probe):
        connected(probe, node)
        monkeypatch.setattr(node.selector, "select", hangs)
        probe.send_task({"task": TASK, "request_id": "hangs"})
        stalled = wait_for(lambda: (s := _latest_status(probe)) and "stalled" in s.message and s, "a stall report", timeout=10)
        release.set()
        assert wait_for(lambda: probe.result("hangs"), "the late answer")["status"] == "ok"
        healthy = wait_for(lambda: (s := _latest_status(probe)) and s.level == DiagnosticStatus.OK and s, "OK again", timeout=5)
        assert node.worker.stop(5)  # the thread ends while the node stays active, as a crashed thread would
        dead = wait_for(lambda: (s := _latest_status(probe)) and "dead" in s.message and s, "a dead-worker report", timeout=5)
    assert stalled.level == DiagnosticStatus.ERROR and "on request hangs for" in stalled.message
    assert "stall_timeout 1 s" in stalled.message and healthy.message == "active"
    assert dead.level == DiagnosticStatus.ERROR and node.state == "active"


def test_a_raising_callback_is_counted_and_the_node_keeps_receiving(make_node, make_probe, monkeypatch):
    """A callback exception reaching rclpy's executor ends spin(): nothing would be received again."""
    from ember_ros import selector_node

    node, probe = make_node(require_image=False, return_reasoning=False), make_probe()
    with spinning(node, probe):
        connected(probe, node)
        monkeypatch.setattr(selector_node, "parse_task", lambda text: 1 / 0)
        probe.send_task({"task": TASK, "request_id": "lost"})
        wait_for(lambda: node.stats.counts["callback_exceptions"] == 1, "the callback failure to be counted")
        monkeypatch.undo()
        probe.send_task({"task": TASK, "request_id": "after"})
        assert wait_for(lambda: probe.result("after"), "the next answer")["status"] == "ok"
    assert "task callback failed: ZeroDivisionError" in node.stats.last_error


def _invalid_utf8_task() -> bytes:
    """A serialized std_msgs/String whose bytes are not UTF-8, as a C++ or a buggy publisher could send."""
    serialized = serialize_message(String(data=f"{TASK} XXXX"))
    return serialized.replace(b"XXXX", b"\xff\xfe\xc3\x28")


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


CORPUS = Path(__file__).parent / "data" / "fuzz" / "images"
# name -> (topic, message, fragment of the reason it is refused)
BAD_INPUTS = {
    "deep JSON task": ("task", "[" * 100_000, "MAX_JSON_DEPTH"),
    "unpaired surrogate in a JSON task": ("task", '{"task": "Inspect \\ud800", "request_id": "s"}', "valid Unicode"),
    "task bytes that are not UTF-8": ("task", None, None),  # arrives as U+FFFD text: answered like any text
    "deep JSON fleet_status": ("fleet_status", '{"busy": ' + "[" * 100_000 + "]" * 100_000 + "}", "MAX_JSON_DEPTH"),
    "unpaired surrogate in fleet_status": ("fleet_status", '{"busy": ["\\ud800"]}', "valid Unicode"),
    "DDS compressed frame": ("image/compressed", (CORPUS / "dds_unimplemented_fourcc.dds").read_bytes(), "is not a JPEG"),
    "SPIDER compressed frame": ("image/compressed", (CORPUS / "spider_stack_without_offset.spi").read_bytes(), "is not a JPEG"),
    "BLP compressed frame": ("image/compressed", (CORPUS / "blp2_unknown_compression.blp").read_bytes(), "is not a JPEG"),
    "PNG frame declaring 100000x100000": ("image/compressed", _png_header(100_000, 100_000), "pixel limit"),
    "raw frame declaring 100000x100000": ("image", None, "pixel limit"),
}


def test_after_each_bad_input_the_node_is_active_and_answers_the_next_task(make_node, make_probe):
    node, probe = make_node(return_reasoning=False, max_image_age=60.0), make_probe()
    with spinning(node, probe):
        connected(probe, node)
        wait_for(lambda: probe.status.get_subscription_count(), "the fleet_status subscription")
        for case, (topic, payload, reason) in BAD_INPUTS.items():
            send_frame(probe, node)
            if topic == "task":
                answered = len(probe.outputs["robot_selection/json"])  # its request_id is generated: take the next answer
                probe.tasks.publish(_invalid_utf8_task() if payload is None else String(data=payload))
                wait_for(lambda: len(probe.outputs["robot_selection/json"]) > answered, f"the answer to the {case}")
                answer = probe.outputs["robot_selection/json"][answered]
                assert answer["status"] == ("ok" if payload is None else "invalid_input"), (case, answer)
                assert "\ufffd" in answer["task"] if payload is None else reason in answer["errors"][0], (case, answer)
            elif topic == "fleet_status":
                node.stats.error("")
                probe.status.publish(String(data=payload))
                wait_for(lambda: node.stats.last_error.startswith("fleet_status ignored") and reason in node.stats.last_error,
                         f"the {case} to be reported")
            else:
                frame = (RawImage(height=100_000, width=100_000, encoding="rgb8", step=300_000, data=bytes(64))
                         if payload is None else CompressedImage(format="png", data=payload))
                hold_frame(probe.camera if payload is None else probe.compressed, node, frame)
                probe.send_task({"task": TASK, "request_id": f"with {case}"})
                answer = wait_for(lambda: probe.result(f"with {case}"), f"the answer with the {case}")
                assert answer["status"] == "invalid_input" and reason in answer["errors"][0], (case, answer)
                send_frame(probe, node)
            probe.send_task({"task": TASK, "request_id": f"after {case}"})
            after = wait_for(lambda: probe.result(f"after {case}"), f"the answer to the valid task after the {case}")
            assert after["status"] == "ok" and node.state == "active" and node.worker.is_alive(), (case, after)
    assert node.stats.counts["worker_exceptions"] == 0 and node.stats.counts["callback_exceptions"] == 0
    for document in probe.outputs["robot_selection/json"]:
        validate_document(document)
