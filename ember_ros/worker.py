"""The one thread that owns the Selector: takes queued tasks, pairs each with the newest frame, hands back results."""
from __future__ import annotations

import sys
import threading
import time
import traceback
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ember_core.availability import FleetStatus
from ember_core.errors import InvalidInputError
from ember_core.images import ImageInput
from ember_core.request import SelectionRequest
from ember_core.selection import ImageInfo, Selection
from ember_core.selector import Selector
from ember_ros.camera import Frame, Pairing, pair
from ember_ros.image_decoding import decode_compressed, decode_image
from ember_ros.parameters import Settings
from ember_ros.requests import TaskQueue, TaskRequest
from ember_ros.stats import NodeStats, shorten

# The worker shares the GIL with the executor's threads, which run Python for every message. At CPython's
# default 5 ms switch interval each of the many GIL releases of a selection (torch ops, DDS writes) waited
# up to 5 ms for the GIL back under a burst: 300 queued tasks took 64 s to answer, with 0.5 ms 1.8 s.
GIL_SWITCH_INTERVAL_S = 0.0005


@dataclass(frozen=True)
class Conditions:
    """What the node knows when the worker takes a task; read once, so one task sees one consistent view."""

    settings: Settings
    frame: Frame | None  # the newest camera frame, undecoded
    now: float  # node-clock seconds, for the frame's age
    fleet_status: FleetStatus


class WorkerHost(Protocol):
    """What the worker needs from the node (SelectorNode implements it)."""

    queue: TaskQueue
    stats: NodeStats

    def conditions(self) -> Conditions: ...

    def publish_result(self, selection: Selection, task: TaskRequest, inference_ms: float | None = None,
                       frame: Frame | None = None) -> None: ...

    def get_logger(self) -> Any: ...


def selection_request(task: TaskRequest, settings: Settings, fleet_status: FleetStatus,
                      image: ImageInput = None, image_info: ImageInfo | None = None) -> SelectionRequest:
    """The Selector's request for a queued task: the task's own top_k wins over the node's parameter."""
    return SelectionRequest(
        task=task.task, image=image, request_id=task.request_id, task_id=task.task_id, image_info=image_info,
        top_k=task.top_k if task.top_k is not None else settings.top_k,
        confidence_threshold=settings.confidence_threshold, return_reasoning=settings.return_reasoning,
        fleet_status=fleet_status)


class SelectionWorker(threading.Thread):
    """Answers every queued task exactly once; no exception stops it (a failure is an `error` result).

    It only reads the Selector: per-task settings travel in the SelectionRequest, so a parameter
    change applies from the next task and never reaches into the Selector. `busy()` tells the node's
    watchdog which request it is on and for how long.
    """

    def __init__(self, selector: Selector, host: WorkerHost):
        super().__init__(name="ember-selection-worker", daemon=True)
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))  # process-wide; never lengthened
        self.selector, self.host = selector, host
        self._stop_requested = threading.Event()
        self._current: tuple[str, float] | None = None  # (request_id, monotonic start); replaced whole, never mutated

    def stop(self, timeout: float) -> bool:
        """Ask the thread to finish its current task and exit; True when it did within `timeout` seconds."""
        self._stop_requested.set()
        self.join(timeout)
        return not self.is_alive()

    def busy(self) -> tuple[str, float] | None:
        """The request being answered and how many seconds it has taken so far; None when idle."""
        current = self._current
        return None if current is None else (current[0], time.monotonic() - current[1])

    def run(self) -> None:
        while not self._stop_requested.is_set():
            task = self.host.queue.get(timeout=0.1)
            if task is None:
                continue
            self._current = (task.request_id, time.monotonic())
            try:
                self.handle(task)
            except Exception as err:  # noqa: BLE001 - last resort: even building the error result failed
                message = f"request {task.request_id} got no answer: {err!r}"
                self.host.stats.error(message)
                self.host.get_logger().error(shorten(message))
            finally:
                self._current = None

    def handle(self, task: TaskRequest) -> None:
        """Answer one task and publish the answer. Nothing escapes: a failure anywhere (pairing, decoding,
        selecting, publishing) is published as an `error` result and counted in diagnostics."""
        try:
            selection, inference_ms, frame = self.answer(task)
        except Exception as err:  # noqa: BLE001 - a bug or a decoder we did not foresee must not end the thread
            selection, inference_ms, frame = self._failed(task, "answering the task", err), None, None
        try:
            self.host.publish_result(selection, task, inference_ms, frame)
        except Exception as err:  # noqa: BLE001 - e.g. DDS refused the message; try to say so
            try:
                self.host.publish_result(self._failed(task, "publishing the result", err), task)
            except Exception as again:  # noqa: BLE001 - nothing can be published (rclpy shut down?): log it
                message = f"request {task.request_id}: the error result could not be published either: {again!r}"
                self.host.stats.error(message)
                self.host.get_logger().error(shorten(message))

    def answer(self, task: TaskRequest) -> tuple[Selection, float | None, Frame | None]:
        """The result for one task, how long the Selector took (None when it was not asked) and the frame
        it was computed on (None: text only, or refused before an image was chosen)."""
        conditions = self.host.conditions()
        settings = conditions.settings
        if task.error:
            request = selection_request(task, settings, conditions.fleet_status)
            return self.selector.error(request, "invalid_input", task.error), None, None
        if task.image is not None:  # sent with the request: used whatever its age
            pairing = Pairing(task.image, task.image.info(conditions.now))
        else:
            pairing = pair(conditions.frame, conditions.now, settings.max_image_age, settings.require_image)
        request = selection_request(task, settings, conditions.fleet_status, image_info=pairing.info)
        frame = pairing.frame
        if pairing.status != "ok":
            return self.selector.error(request, pairing.status, pairing.error), None, None
        if frame is not None:
            decode = decode_compressed if frame.compressed else decode_image
            try:
                request = replace(request, image=decode(frame.message))
            except InvalidInputError as err:
                where = "request image" if task.image is not None else "camera image"
                return self.selector.error(request, "invalid_input", f"{where}: {err}"), None, frame
        began = time.perf_counter()
        try:
            selection = self.selector.select(request)
        except Exception as err:  # noqa: BLE001 - a model failure must not kill the node; it is reported
            message = shorten(f"selection failed: {err!r}")
            self.host.get_logger().error(f"request {task.request_id}: {message}")
            return self.selector.error(request, "error", message), None, frame
        return selection, (time.perf_counter() - began) * 1000.0, frame

    def _failed(self, task: TaskRequest, step: str, err: Exception) -> Selection:
        """The `error` result for a task whose `step` raised; the task text is escaped so it can be published."""
        self.host.stats.count("worker_exceptions")
        message = shorten(f"{step} failed: {err!r}")
        self.host.get_logger().error(f"request {task.request_id}: {message}")
        self.host.get_logger().debug(traceback.format_exc())
        task_text = task.task.encode("utf-8", "backslashreplace").decode("utf-8")
        request = SelectionRequest(task=task_text, request_id=task.request_id, task_id=task.task_id)
        return self.selector.error(request, "error", message)
