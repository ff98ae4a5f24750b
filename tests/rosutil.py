"""Real rclpy for tests: an isolated domain, a spinning executor, a probe node that publishes and records, node factories."""
from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable

import numpy as np
import pytest

# Before rclpy starts: a domain of our own on this host only, so parallel runs never cross-talk.
os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from ember_msgs.msg import Selection  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from ember_ros.executor import SelectorExecutor  # noqa: E402
from ember_ros.outputs import JSON_TOPICS, SELECTION  # noqa: E402

RELIABLE = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
# Tasks and burst consumers: nothing is dropped on our side of the test, so a loss is the node's.
KEEP_ALL_RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll until predicate() is truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@contextmanager
def spinning(*nodes: Node):
    """Spin the nodes in a background thread for the duration of the block."""
    executor = SelectorExecutor(num_threads=2)
    for node in nodes:
        executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield executor
    finally:
        executor.shutdown(timeout_sec=5.0)
        thread.join(timeout=5.0)


class Probe(Node):
    """Plays camera, fleet manager and consumer: publishes images and tasks, records every output."""

    def __init__(self, namespace: str = "", task_topic: str = "task", image_topic: str = "image",
                 output_qos: QoSProfile = RELIABLE):
        super().__init__("ember_test_probe", namespace=namespace)
        self.outputs: dict[str, list[dict]] = {topic: [] for topic in JSON_TOPICS}
        self.selections: list[Selection] = []  # the typed results
        self.diagnostics: list[DiagnosticArray] = []
        self.camera = self.create_publisher(Image, image_topic, qos_profile_sensor_data)
        self.compressed = self.create_publisher(CompressedImage, f"{image_topic}/compressed", qos_profile_sensor_data)
        self.tasks = self.create_publisher(String, task_topic, KEEP_ALL_RELIABLE)
        self.status = self.create_publisher(String, "fleet_status", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        for topic in JSON_TOPICS:
            self.create_subscription(String, topic, lambda m, t=topic: self.outputs[t].append(json.loads(m.data)), output_qos)
        self.create_subscription(Selection, SELECTION, self.selections.append, output_qos)
        self.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)

    def send_task(self, task: str | dict) -> None:
        self.tasks.publish(String(data=task if isinstance(task, str) else json.dumps(task)))

    def send_image(self, rgb: np.ndarray, age: float = 0.0, frame_id: str = "camera") -> None:
        message = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", step=rgb.shape[1] * 3,
                        data=np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())
        stamp = self.get_clock().now() - rclpy.duration.Duration(seconds=age)
        message.header.stamp, message.header.frame_id = stamp.to_msg(), frame_id
        self.camera.publish(message)

    def result(self, request_id: str, topic: str = "robot_selection/json") -> dict | None:
        return next((m for m in self.outputs[topic] if m["request_id"] == request_id), None)

    def selection(self, request_id: str) -> Selection | None:
        return next((m for m in self.selections if m.request_id == request_id), None)

    def all_parts(self, request_id: str) -> list[dict] | None:
        parts = [self.result(request_id, topic) for topic in JSON_TOPICS]
        return parts if all(parts) else None


def scene(colour: tuple[int, int, int], size: int = 32) -> np.ndarray:
    return np.full((size, size, 3), colour, dtype=np.uint8)


@contextmanager
def node_factory(model_dir):
    """make(autostart=True, **params): a selector node on the model in `model_dir`, closed and destroyed at exit."""
    from ember_ros.selector_node import SelectorNode

    nodes = []

    def make(autostart: bool = True, **params) -> SelectorNode:
        overrides = [Parameter(name, value=value) for name, value in {"model_path": str(model_dir), **params}.items()]
        node = SelectorNode(parameter_overrides=overrides)
        nodes.append(node)
        if autostart:
            assert node.autostart(), node.stats.last_error
        return node

    try:
        yield make
    finally:
        for node in nodes:
            node.close()
            node.destroy_node()


@contextmanager
def probe_factory():
    """make(**kwargs): Probe nodes, destroyed at exit so no test sees another's subscriptions."""
    probes = []

    def make(**kwargs) -> Probe:
        probes.append(Probe(**kwargs))
        return probes[-1]

    try:
        yield make
    finally:
        for probe in probes:
            probe.destroy_node()


def connected(probe: Probe, node: Node) -> None:
    wait_for(lambda: probe.tasks.get_subscription_count() and probe.camera.get_subscription_count()
             and all(node.count_subscribers(f"/{t}") for t in (SELECTION, *probe.outputs)), "discovery between probe and node")


def send_frame(probe: Probe, node: Node, rgb=None, age: float = 0.0) -> None:
    """Publish one frame (best effort) until the node holds it."""
    before = node.camera.latest()
    wait_for(lambda: probe.send_image(scene((10, 60, 160)) if rgb is None else rgb, age) or node.camera.latest() is not before,
             "the node to receive a camera frame")


def hold_frame(publisher: Any, node: Node, message: Any) -> None:
    """Publish `message` (best effort) until the node holds exactly it as its newest frame."""
    wait_for(lambda: publisher.publish(message) or (node.camera.latest() and node.camera.latest().message == message),
             "the node to hold the frame")


def diagnostic_values(array: DiagnosticArray) -> dict[str, str]:
    return {kv.key: kv.value for status in array.status for kv in status.values}


# Fixtures of the node tests: test modules import them by name (`from rosutil import make_node, ...`).
@pytest.fixture(scope="module", autouse=True)
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


@pytest.fixture
def make_node(tiny_model_dir):
    with node_factory(tiny_model_dir) as make:
        yield make


@pytest.fixture
def make_probe():
    with probe_factory() as make:
        yield make
