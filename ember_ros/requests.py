"""Task requests as they arrive on the `task` topic, and the bounded queue the worker takes them from."""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from ember_core import safe_json
from ember_core.limits import MAX_JSON_BYTES, MAX_TOP_K


@dataclass(frozen=True)
class TaskRequest:
    """One task message. `error` is set when the message could not be read; it is answered invalid_input."""

    request_id: str
    task: str
    task_id: str | None = None
    top_k: int | None = None
    error: str | None = None
    received: float = field(default_factory=time.monotonic)
    stamp: Any = None  # builtin_interfaces/Time when the node received it: the header of a text-only result
    image: Any = None  # an ember_ros.camera.Frame sent with the request (the select service), used instead of the camera's
    reply: Callable[[Any], None] | None = None  # also handed the typed result (the select service's response)


def parse_task(text: str | bytes) -> TaskRequest:
    """Plain task text, or a JSON object {"task", "request_id"?, "task_id"?, "top_k"?}.

    Never raises: anything unreadable becomes a request with `error` set, keeping whatever ids it had,
    so the fleet manager gets an answer it can match. A message over limits.MAX_JSON_BYTES (plain or
    JSON), JSON nested deeper than limits.MAX_JSON_DEPTH, text that is not valid Unicode and a top_k
    over limits.MAX_TOP_K are errors too; the error's echo of the task is always publishable text.
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as err:
            return refused(bytes(text).decode("utf-8", "replace"), f"task message is not UTF-8 ({err}); send UTF-8 text")
    problem = text_problem(text, "task message")
    if problem:
        return refused(text, problem)
    if not text.lstrip().startswith(("{", "[")):  # a JSON array is a mistake, not a task text
        return TaskRequest(uuid.uuid4().hex, text, error=None if text.strip() else "task is empty; publish what the robots should do")
    try:
        message = safe_json.loads(text)
    except json.JSONDecodeError as err:
        return refused(text, f"task message looks like JSON but does not parse ({err}); "
                        "send plain text or an object like {\"task\": \"...\", \"request_id\": \"...\"}")
    except ValueError as err:  # over a limit, NaN, an unpaired surrogate escape, a 5000-digit number ...
        return refused(text, f"task message refused: {err}")
    if not isinstance(message, dict):
        return TaskRequest(uuid.uuid4().hex, text, error="task JSON must be an object with a \"task\" key")
    ids = {key: message.get(key) for key in ("request_id", "task_id")}
    bad_ids = [key for key, value in ids.items() if value is not None and not (isinstance(value, str) and value)]
    request_id = ids["request_id"] if "request_id" not in bad_ids and ids["request_id"] else uuid.uuid4().hex
    task_id = ids["task_id"] if "task_id" not in bad_ids else None
    task, top_k = message.get("task"), message.get("top_k")
    error = None
    unknown = sorted(set(message) - {"task", "request_id", "task_id", "top_k"})
    if bad_ids:
        error = f"{' and '.join(bad_ids)} must be a non-empty string"
    elif unknown:
        error = f"task JSON has unknown key(s) {unknown}; use task, request_id, task_id, top_k"
    elif not isinstance(task, str) or not task.strip():
        error = "task JSON needs a non-empty \"task\" string"
    elif problem := top_k_problem(top_k):
        error, top_k = problem, None
    return TaskRequest(request_id, task if isinstance(task, str) else text, task_id, top_k, error)


def text_problem(text: str, what: str) -> str | None:
    """Why `text` cannot be read as a task message: over limits.MAX_JSON_BYTES, or not valid Unicode."""
    size = len(text) if len(text) > MAX_JSON_BYTES else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_JSON_BYTES:
        return (f"{what} is {size:,} bytes or more, over the {MAX_JSON_BYTES:,} byte limit (MAX_JSON_BYTES); "
                "send a shorter task")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return f"{what} is not valid Unicode (an unpaired surrogate at {err.start}); send UTF-8 text"
    return None


def top_k_problem(top_k: Any) -> str | None:
    """Why `top_k` (None: the node's parameter) is not a number of ranked robots a request may ask for."""
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        return f"top_k must be a positive integer, got {_preview(repr(top_k))}"
    if top_k is not None and top_k > MAX_TOP_K:
        return f"top_k {top_k} is over the limit of {MAX_TOP_K} (MAX_TOP_K); ask for fewer ranked robots"
    return None


def refused(text: str, error: str, request_id: str | None = None, **fields: Any) -> TaskRequest:
    """A request that is only answered with `error`; its task echo is shortened and made encodable."""
    return TaskRequest(request_id or uuid.uuid4().hex, _preview(text), error=error, **fields)


def _preview(text: str, limit: int = 200) -> str:
    """At most `limit` characters of `text`, with unpaired surrogates escaped so the echo can be published."""
    short = text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"
    return short.encode("utf-8", "backslashreplace").decode("utf-8")


class TaskQueue:
    """A bounded FIFO: putting into a full queue drops the oldest request and returns it to be answered."""

    def __init__(self, size: int):
        self._items: deque[TaskRequest] = deque()
        self._size = size
        self._ready = threading.Condition()
        self.high_water = 0  # the most requests ever waiting at once

    def put(self, request: TaskRequest) -> list[TaskRequest]:
        with self._ready:
            self._items.append(request)
            dropped = self._trim()
            self.high_water = max(self.high_water, len(self._items))
            self._ready.notify()
        return dropped

    def get(self, timeout: float) -> TaskRequest | None:
        with self._ready:
            if not self._items:
                self._ready.wait(timeout)
            return self._items.popleft() if self._items else None

    def resize(self, size: int) -> list[TaskRequest]:
        with self._ready:
            self._size = size
            return self._trim()

    def drain(self) -> list[TaskRequest]:
        with self._ready:
            items, self._items = list(self._items), deque()
            return items

    def __len__(self) -> int:
        with self._ready:
            return len(self._items)

    def _trim(self) -> list[TaskRequest]:
        dropped = []
        while len(self._items) > self._size:
            dropped.append(self._items.popleft())
        return dropped
