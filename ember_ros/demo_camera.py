"""Demo camera: publishes a rendered scene per demo task at a camera rate, then the task itself.

`ros2 run ember_ros demo_camera [--rate 30] [--period 4]`: for each task, frames of its scene start,
the task follows once the selector subscribes, and frames keep coming for `--period` seconds.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String

from ember_core.scenes import render_scene

# (task, what the camera shows): the scene is drawn from the second text, as a camera at the site would see it.
DEMO_TASKS = (
    ("Inspect the intake pipe of a flooded pump station for blockages", "murky water inside the flooded intake, under water"),
    ("Survey the roof of a tall warehouse for storm damage from above", "aerial view of a warehouse roof"),
    ("Deliver medicine to patient rooms along the hospital corridor", "indoor hospital corridor"),
    # A job for two robots together: the answer is a team (Drone, then Robot with Legs) and its ordered plan.
    ("Fly over the ridge to find the stranded hikers, then carry the medical kit up the rocky trail to them",
     "steep rocky trail outdoors"),
)


def image_message(scene: str, size: int = 224) -> Image:
    """The scene rendered as an rgb8 sensor_msgs/Image (stamp it before publishing)."""
    pixels = np.asarray(render_scene(scene, size), dtype=np.uint8)
    message = Image(height=size, width=size, encoding="rgb8", is_bigendian=0, step=size * 3, data=pixels.tobytes())
    message.header.frame_id = "demo_camera"
    return message


def main(args: list[str] | None = None) -> int:
    argv = rclpy.utilities.remove_ros_args(args if args is not None else sys.argv)[1:]
    parser = argparse.ArgumentParser(prog="demo_camera", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second (default 30)")
    parser.add_argument("--period", type=float, default=4.0, help="seconds of frames per task (default 4)")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the selector to subscribe")
    options = parser.parse_args(argv)
    rclpy.init(args=args if args is not None else sys.argv)
    try:
        node = Node("ember_demo_camera")
        camera = node.create_publisher(Image, "image", qos_profile_sensor_data)
        tasks = node.create_publisher(String, "task", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        deadline = time.monotonic() + options.wait
        while tasks.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                print(f"demo_camera: nobody subscribed to {tasks.topic_name} within {options.wait:g} s", file=sys.stderr)
                return 1
            time.sleep(0.1)
        for number, (task, scene) in enumerate(DEMO_TASKS, start=1):
            frame = image_message(scene)  # rendered once; each publish gets a fresh stamp
            sent, start = False, time.monotonic()
            while time.monotonic() - start < options.period:
                frame.header.stamp = node.get_clock().now().to_msg()
                camera.publish(frame)
                if not sent and time.monotonic() - start > 0.2:  # a few frames first, so the task has an image
                    tasks.publish(String(data=json.dumps({"task": task, "request_id": f"demo-{number}", "task_id": f"T{number}"})))
                    print(f"demo_camera: sent task demo-{number}: {task}", flush=True)
                    sent = True
                time.sleep(1.0 / options.rate)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        rclpy.try_shutdown()
