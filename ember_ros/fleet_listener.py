"""Example fleet-manager consumer: joins the three result topics by request_id and prints each result.

`ros2 run ember_ros fleet_listener [--count N] [--timeout S]`. A real fleet manager would dispatch the
selected robots where this prints them.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from ember_core.presentation import render_selection
from ember_ros.outputs import OUTPUT_TOPICS, PLAN, REASONING, SELECTION


class FleetListener(Node):
    """Keeps partial results per request_id until all three topics have delivered their part."""

    def __init__(self):
        super().__init__("ember_fleet_listener")
        self.pending: dict[str, dict[str, dict]] = {}
        self.joined: list[dict] = []
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for topic in OUTPUT_TOPICS:
            self.create_subscription(String, topic, lambda message, t=topic: self._on_part(t, message), qos)

    def _on_part(self, topic: str, message: String) -> None:
        part = json.loads(message.data)
        parts = self.pending.setdefault(part["request_id"], {})
        parts[topic] = part
        if len(parts) == len(OUTPUT_TOPICS):
            del self.pending[part["request_id"]]
            document = {**parts[SELECTION], "reasoning": parts[REASONING]["reasoning"], "plan": parts[PLAN]["plan"]}
            self.joined.append(document)
            print(f"--- request {document['request_id']} ({document['status']})", flush=True)
            print(render_selection(document), flush=True)


def main(args: list[str] | None = None) -> int:
    argv = rclpy.utilities.remove_ros_args(args if args is not None else sys.argv)[1:]
    parser = argparse.ArgumentParser(prog="fleet_listener", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=0, help="exit after this many results (default 0: run until stopped)")
    parser.add_argument("--timeout", type=float, default=0.0, help="give up after this many seconds (default 0: never)")
    options = parser.parse_args(argv)
    rclpy.init(args=args if args is not None else sys.argv)
    try:
        node = FleetListener()
        deadline = time.monotonic() + options.timeout if options.timeout else float("inf")
        while rclpy.ok() and time.monotonic() < deadline and not (options.count and len(node.joined) >= options.count):
            rclpy.spin_once(node, timeout_sec=0.1)
        if options.count and len(node.joined) < options.count:
            print(f"fleet_listener: got {len(node.joined)} of {options.count} results before the timeout", file=sys.stderr)
            return 1
        return 0
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        rclpy.try_shutdown()
