"""`make demo`, ROS part: demo camera -> selector node -> fleet listener, with real rclpy on a private domain.

Starts the three installed executables, waits until the listener has printed one joined result per
demo task, then stops the node with Ctrl-C (SIGINT) as a user would, and fails if any of them failed.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from ember_ros.demo_camera import DEMO_TASKS

BIN = Path(sys.executable).parent
TIMEOUT_S = 600


def main() -> int:
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
           "ROS_DOMAIN_ID": os.environ.get("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))}
    print(f"ROS demo on domain {env['ROS_DOMAIN_ID']} (localhost only)", flush=True)
    selector = subprocess.Popen([str(BIN / "selector")], env=env)
    listener = subprocess.Popen([str(BIN / "fleet_listener"), "--count", str(len(DEMO_TASKS)), "--timeout", str(TIMEOUT_S)], env=env)
    camera = subprocess.Popen([str(BIN / "demo_camera")], env=env)
    codes: dict[str, int | None] = {}
    try:
        codes["fleet_listener"] = listener.wait(TIMEOUT_S)
        codes["demo_camera"] = camera.wait(TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        print(f"ROS demo: {Path(err.cmd[0]).name} did not finish within {TIMEOUT_S} s", flush=True)
    finally:
        for process in (camera, listener):
            if process.poll() is None:
                process.kill()
        selector.send_signal(signal.SIGINT)
        codes["selector"] = selector.wait(30)
    failed = {name: code for name, code in codes.items() if code != 0}
    failed.update({name: "timeout" for name in ("fleet_listener", "demo_camera") if name not in codes})
    print("ROS demo: " + ("all three exited cleanly" if not failed else f"FAILED: exit codes {failed}"), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
