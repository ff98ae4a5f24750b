"""Example fleet-manager consumer: subscribes to the typed selections and prints each result.

`ros2 run ember_ros fleet_listener [--count N] [--timeout S]`. A real fleet manager would dispatch the
selected robots (or the team, following its plan) where this prints them.
"""
from __future__ import annotations

import argparse
import sys
import time

import rclpy
from ember_msgs.msg import Selection
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from ember_core.presentation import render_selection
from ember_ros.outputs import SELECTION
from ember_ros.typed import time_to_seconds, to_document


class FleetListener(Node):
    """Prints every ember_msgs/Selection on robot_selection: the ranked robots, team, plan and reasoning."""

    def __init__(self):
        super().__init__("ember_fleet_listener")
        self.received: list[Selection] = []
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(Selection, SELECTION, self._on_selection, qos)

    def _on_selection(self, message: Selection) -> None:
        self.received.append(message)
        header = message.header
        source = f"image {header.frame_id!r}" if message.image else "text only"
        print(f"--- ember_msgs/Selection, request {message.request_id} ({message.status}; {source}, "
              f"header stamp {time_to_seconds(header.stamp):.3f})", flush=True)
        print(render_selection(to_document(message)), flush=True)


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
        while rclpy.ok() and time.monotonic() < deadline and not (options.count and len(node.received) >= options.count):
            rclpy.spin_once(node, timeout_sec=0.1)
        if options.count and len(node.received) < options.count:
            print(f"fleet_listener: got {len(node.received)} of {options.count} results before the timeout", file=sys.stderr)
            return 1
        return 0
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        rclpy.try_shutdown()
