"""The one thread that owns the Selector: takes queued tasks, pairs each with the newest frame, publishes."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from ember_core.availability import FleetStatus
from ember_core.images import InvalidInputError
from ember_core.selector import Selector
from ember_ros.camera import LatestFrame, Pairing, pair
from ember_ros.image_decoding import decode_compressed, decode_image
from ember_ros.parameters import Settings
from ember_ros.requests import TaskQueue, TaskRequest
from ember_ros.stats import NodeStats


class SelectionWorker(threading.Thread):
    """Answers every queued request exactly once; no exception stops it (a failure is an `error` result)."""

    def __init__(self, selector: Selector, queue: TaskQueue, camera: LatestFrame, stats: NodeStats,
                 settings: Callable[[], Settings], fleet_status: Callable[[], FleetStatus],
                 now: Callable[[], float], publish: Callable[[dict[str, Any], TaskRequest], None], logger: Any):
        super().__init__(name="ember-selection-worker", daemon=True)
        self.selector, self.queue, self.camera, self.stats = selector, queue, camera, stats
        self._settings, self._fleet_status, self._now, self._publish, self._log = settings, fleet_status, now, publish, logger
        self._stop_requested = threading.Event()

    def stop(self, timeout: float) -> bool:
        """Ask the thread to finish its current task and exit; True when it did within `timeout` seconds."""
        self._stop_requested.set()
        self.join(timeout)
        return not self.is_alive()

    def run(self) -> None:
        while not self._stop_requested.is_set():
            request = self.queue.get(timeout=0.1)
            if request is not None:
                self._publish(self.answer(request), request)

    def answer(self, request: TaskRequest) -> dict[str, Any]:
        settings = self._settings()
        if request.error:
            return self._refuse(request, "invalid_input", request.error)
        pairing = pair(self.camera.latest(), self._now(), settings.max_image_age, settings.require_image)
        if pairing.status != "ok":
            return self._refuse(request, pairing.status, pairing.error, pairing)
        try:
            rgb = self._decode(pairing)
        except InvalidInputError as err:
            return self._refuse(request, "invalid_input", f"camera image: {err}", pairing)
        self.selector.confidence_threshold = settings.confidence_threshold
        began = time.perf_counter()
        try:
            document = self.selector.select(
                request.task, rgb, top_k=request.top_k or settings.top_k, return_reasoning=settings.return_reasoning,
                request_id=request.request_id, image_info=pairing.info, fleet_status=self._fleet_status(),
                task_id=request.task_id)
        except Exception as err:  # noqa: BLE001 - a model failure must not kill the node; it is reported
            self._log.error(f"selection failed for request {request.request_id}: {err!r}")
            return self._refuse(request, "error", f"selection failed: {err!r}", pairing)
        inference_ms = (time.perf_counter() - began) * 1000.0
        self.stats.latency(inference_ms, (time.monotonic() - request.received) * 1000.0)
        self.stats.count(document["status"])
        return document

    def _decode(self, pairing: Pairing):
        if pairing.frame is None:
            return None
        decode = decode_compressed if pairing.frame.compressed else decode_image
        return decode(pairing.frame.message)

    def _refuse(self, request: TaskRequest, status: str, message: str, pairing: Pairing | None = None) -> dict[str, Any]:
        self.stats.count(status)
        self.stats.error(f"request {request.request_id}: {status}: {message}")
        info = pairing.info if pairing is not None else None
        return self.selector.error_document(request.request_id, request.task, status, message, info, request.task_id)
