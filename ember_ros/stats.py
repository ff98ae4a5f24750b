"""Counters and latency windows of the selector node, read by its 1 Hz diagnostics."""
from __future__ import annotations

import threading
from collections import Counter, deque

import numpy as np

from ember_core.selection import STATUSES

# Always reported, zero until they happen, so a dashboard sees every key from the first message.
# worker_exceptions: tasks whose answering or publishing raised (each was answered `error`);
# callback_exceptions: topic or timer callbacks that raised (the message was dropped, the node went on).
COUNTERS = ("tasks_received", "service_requests", "results_published", *STATUSES, "qos_incompatible",
            "fleet_status_received", "worker_exceptions", "callback_exceptions")
# Messages kept for diagnostics and logs are cut here: an error may quote a 256 kB message.
MAX_MESSAGE_CHARS = 500


def shorten(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` cut to `limit` characters (marked), with unpaired surrogates escaped so it can be logged and published."""
    short = text if len(text) <= limit else f"{text[:limit]}... [{len(text) - limit:,} more characters]"
    return short.encode("utf-8", "backslashreplace").decode("utf-8")


class NodeStats:
    """Thread-safe: callbacks, the worker and the diagnostics timer all write or read it."""

    def __init__(self, window: int = 200):
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self._inference_ms: deque[float] = deque(maxlen=window)
        self._result_ms: deque[float] = deque(maxlen=window)
        self.last_error = ""

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.counts[name] += amount

    def error(self, message: str) -> None:
        """The newest problem, for diagnostics (shortened); counting is by status, through count()."""
        with self._lock:
            self.last_error = shorten(message)

    def latency(self, inference_ms: float, result_ms: float) -> None:
        """One answered task: the Selector call, and task arrival to result published."""
        with self._lock:
            self._inference_ms.append(inference_ms)
            self._result_ms.append(result_ms)

    def snapshot(self) -> dict[str, float | str]:
        with self._lock:
            values: dict[str, float | str] = {name: self.counts[name] for name in COUNTERS}
            for name, window in (("inference_ms", self._inference_ms), ("task_to_result_ms", self._result_ms)):
                data = np.asarray(window, dtype=float)
                values[f"{name}_mean"] = float(data.mean()) if data.size else 0.0
                values[f"{name}_p95"] = float(np.percentile(data, 95)) if data.size else 0.0
            values["last_error"] = self.last_error
        return values
