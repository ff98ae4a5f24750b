"""Task -> result latency of the selector node with a 30 Hz camera running; prints a table.

    python benchmarks/ros_latency.py [--tasks 30] [--rate 30] [--size 640x480] [--jpeg] [--service] [--model DIR]

Starts the installed `selector` executable on a private ROS domain (once with reasoning, once
without), publishes rendered rgb8 frames at --rate from this process, sends tasks one at a time and
times each from publish to the typed robot_selection message arriving here; with --service, from
the call of ~/select_robots to its response arriving here (the service round trip).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ["ROS_DOMAIN_ID"] = os.environ.get("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from ember_msgs.msg import Selection  # noqa: E402
from ember_msgs.srv import SelectRobots  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from ember_core.scenes import render_scene  # noqa: E402
from ember_ros.demo_camera import DEMO_TASKS  # noqa: E402

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class Bench(Node):
    def __init__(self, width: int, height: int, jpeg: bool, service: bool):
        super().__init__("ember_latency_bench")
        self.use_service = service  # a result arrives with the service response, not on the topic
        scene = render_scene(DEMO_TASKS[0][1], 224).resize((width, height))
        if jpeg:
            buffer = io.BytesIO()
            scene.save(buffer, format="JPEG", quality=90)
            self.frame = CompressedImage(format="jpeg", data=buffer.getvalue())
            self.camera = self.create_publisher(CompressedImage, "image/compressed", qos_profile_sensor_data)
        else:
            pixels = np.asarray(scene, dtype=np.uint8)
            self.frame = Image(height=height, width=width, encoding="rgb8", step=width * 3, data=pixels.tobytes())
            self.camera = self.create_publisher(Image, "image", qos_profile_sensor_data)
        self.frame.header.frame_id = "bench_camera"
        self.tasks = self.create_publisher(String, "task", RELIABLE)
        self.arrived: dict[str, float] = {}
        self.statuses: list[str] = []
        self.image_rate = 0.0
        self.frames_sent = 0
        self.create_subscription(Selection, "robot_selection", self._on_result, RELIABLE)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.service = self.create_client(SelectRobots, "/ember_selector/select_robots")

    def _on_result(self, message: Selection) -> None:
        if not self.use_service:
            self.arrived[message.request_id] = time.perf_counter()
            self.statuses.append(message.status)

    def ask(self, task: str, request_id: str) -> None:
        """Send one task (on the topic, or as a service call whose response counts as its arrival)."""
        if not self.use_service:
            self.tasks.publish(String(data=json.dumps({"task": task, "request_id": request_id})))
            return
        future = self.service.call_async(SelectRobots.Request(task=task, request_id=request_id))
        future.add_done_callback(lambda done: self._on_response(request_id, done.result().selection))

    def _on_response(self, request_id: str, selection: Selection) -> None:
        self.arrived[request_id] = time.perf_counter()
        self.statuses.append(selection.status)

    def _on_diagnostics(self, message: DiagnosticArray) -> None:
        values = {kv.key: kv.value for status in message.status for kv in status.values}
        self.image_rate = float(values.get("image_rate_hz", self.image_rate))

    def publish_frames(self, rate: float, stop: threading.Event) -> None:
        while not stop.is_set():
            self.frame.header.stamp = self.get_clock().now().to_msg()
            self.camera.publish(self.frame)
            self.frames_sent += 1
            time.sleep(1.0 / rate)


def run(reasoning: bool, options: argparse.Namespace) -> dict[str, float]:
    params = ["-p", f"return_reasoning:={str(reasoning).lower()}"] + (["-p", f"model_path:={options.model}"] if options.model else [])
    node_process = subprocess.Popen([str(Path(sys.executable).with_name("selector")), "--ros-args", *params],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rclpy.init()
    bench = Bench(*options.size, options.jpeg, options.service)
    executor = SingleThreadedExecutor()
    executor.add_node(bench)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    stop = threading.Event()
    camera = threading.Thread(target=bench.publish_frames, args=(options.rate, stop), daemon=True)
    spinner.start()
    camera.start()
    try:
        deadline = time.monotonic() + 120
        while not bench.tasks.get_subscription_count() or not bench.count_publishers("robot_selection") \
                or not bench.service.service_is_ready():
            if time.monotonic() > deadline:
                raise RuntimeError("the selector node did not come up within 120 s")
            time.sleep(0.1)
        time.sleep(1.0)  # let the node see frames first
        latencies, began, sent_before = [], time.perf_counter(), bench.frames_sent
        for i in range(options.tasks + 1):  # the first task warms up and is not counted
            request_id = f"bench-{reasoning}-{i}"
            sent = time.perf_counter()
            bench.ask(DEMO_TASKS[i % len(DEMO_TASKS)][0], request_id)
            while request_id not in bench.arrived:
                if time.perf_counter() - sent > 120:
                    raise RuntimeError(f"no result for {request_id} within 120 s")
                time.sleep(0.001)
            if i:
                latencies.append((bench.arrived[request_id] - sent) * 1000.0)
        refused = [status for status in bench.statuses if status != "ok"]
        if refused:
            raise RuntimeError(f"{len(refused)} results were not ok ({sorted(set(refused))}); the timings would be meaningless")
        data = np.asarray(latencies)
        return {"p50": float(np.percentile(data, 50)), "p95": float(np.percentile(data, 95)), "mean": float(data.mean()),
                "sent_rate": (bench.frames_sent - sent_before) / (time.perf_counter() - began), "image_rate": bench.image_rate}
    finally:
        stop.set()
        camera.join()
        executor.shutdown()
        rclpy.try_shutdown()
        node_process.send_signal(signal.SIGINT)
        node_process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=30, help="timed tasks per configuration (default 30)")
    parser.add_argument("--rate", type=float, default=30.0, help="camera frames per second (default 30)")
    parser.add_argument("--size", type=lambda s: tuple(map(int, s.split("x"))), default=(640, 480), help="WxH (default 640x480)")
    parser.add_argument("--jpeg", action="store_true", help="send JPEG on image/compressed instead of raw rgb8")
    parser.add_argument("--service", action="store_true", help="ask through the ~/select_robots service, not the task topic")
    parser.add_argument("--model", default="", help="model directory (default: the shipped model)")
    options = parser.parse_args()
    print(f"{'service ~/select_robots' if options.service else 'task topic'}; "
          f"camera {options.size[0]}x{options.size[1]} {'jpeg' if options.jpeg else 'rgb8'} at {options.rate:g} Hz, {options.tasks} tasks each, "
          f"{os.cpu_count()} CPUs, ROS_DOMAIN_ID {os.environ['ROS_DOMAIN_ID']}")
    print(f"{'reasoning':<10} {'p50 ms':>9} {'p95 ms':>9} {'mean ms':>9} {'frames/s sent':>14} {'frames/s at node':>17}")
    for reasoning in (False, True):
        row = run(reasoning, options)
        print(f"{str(reasoning).lower():<10} {row['p50']:>9.1f} {row['p95']:>9.1f} {row['mean']:>9.1f} {row['sent_rate']:>14.1f} {row['image_rate']:>17.1f}", flush=True)


if __name__ == "__main__":
    main()
