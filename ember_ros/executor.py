"""The node's executor: rclpy's MultiThreadedExecutor, made to survive an entity destroyed while it waits."""
from __future__ import annotations

from rclpy.exceptions import InvalidHandle
from rclpy.executors import MultiThreadedExecutor


class SelectorExecutor(MultiThreadedExecutor):
    """A lifecycle transition runs in one of the executor's threads and destroys the node's subscriptions,
    with their QoS event handlers, while another thread builds the next wait set. rclpy 9 then adds a
    handler it could not enter (destruction requested) to the wait set anyway, and the InvalidHandle
    that raises ends spin(): the node stopped answering, its deactivation never replied. Here that
    costs one turn: the next turn builds the wait set without the destroyed entity."""

    def spin_once(self, timeout_sec: float | None = None) -> None:
        try:
            super().spin_once(timeout_sec)
        except InvalidHandle:
            pass
