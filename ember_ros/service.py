"""The select service (`~/select_robots`, ember_msgs/srv/SelectRobots): a request as a queued task, and its answer.

A service request joins the task queue like a task message, so the one worker answers it in turn and
the answer is also published on the result topics. The service callback waits for it (the node's
executor keeps serving the camera and the other callbacks meanwhile).
"""
from __future__ import annotations

import threading
import uuid
from typing import Any

from ember_ros.camera import Frame
from ember_ros.requests import TaskRequest, refused, text_problem, top_k_problem


class Reply:
    """Where the worker hands the typed result of one service request; the callback waits on it."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self.message: Any = None

    def __call__(self, message: Any) -> None:
        self.message = message
        self._done.set()

    def wait(self, timeout: float) -> Any:
        """The result, or None when none came within `timeout` seconds."""
        return self.message if self._done.wait(timeout) else None


def read_request(request: Any, stamp: Any, now: float, reply: Reply) -> TaskRequest:
    """The queued task of a SelectRobots request received at `stamp` (node-clock `now` seconds).

    Never raises: a malformed request becomes a task with `error` set, answered invalid_input with the
    caller's ids.
    """
    request_id = request.request_id or uuid.uuid4().hex
    fields = {"task_id": request.task_id or None, "stamp": stamp, "reply": reply}
    top_k = request.top_k or None
    problem = (text_problem(request.task, "task") or top_k_problem(top_k)
               or (None if request.task.strip() else "task is empty; say what the robots should do")
               or ("send the image as image or as compressed_image, not both"
                   if request.image and request.compressed_image else None))
    if problem:
        return refused(request.task, problem, request_id, **fields)
    image = None
    if request.image or request.compressed_image:
        compressed = bool(request.compressed_image)
        image = Frame.of((request.compressed_image or request.image)[0], compressed, now)
    return TaskRequest(request_id, request.task, top_k=top_k, image=image, **fields)
