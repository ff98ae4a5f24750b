"""SelectorHost: loads the server's Selector on a background thread, then runs it there, one call at a time."""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable

from fastapi import HTTPException

if TYPE_CHECKING:  # the Selector (and torch) load on the host's thread, after the server is listening
    from ember_core.selector import Selector

log = logging.getLogger(__name__)


class SelectorHost:
    """Owns the Selector. `start()` begins loading it, so the server answers /health at once and /ready
    when the model is in; every model call then runs on the same single thread, in arrival order,
    which keeps the Selector single-threaded and the event loop free while the model works.

    A model that fails to load leaves the server up and not ready, saying why (as the ROS node does).
    """

    def __init__(self, load: Callable[[], Selector]):
        self._load = load
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ember-selector")
        self._selector: Selector | None = None
        self.problem: str | None = None  # why loading failed

    def start(self) -> None:
        self._thread.submit(self._load_selector)

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

    @property
    def selector(self) -> Selector:
        """The loaded Selector; HTTPException 503 while it loads or when loading failed."""
        if self._selector is not None:
            return self._selector
        if self.problem is not None:
            raise HTTPException(503, f"the model failed to load: {self.problem}")
        raise HTTPException(503, "the model is still loading; retry shortly", headers={"Retry-After": "1"})

    async def run(self, call: Callable[..., Any], *args: Any) -> Any:
        """`call(*args)` on the Selector's thread, after the calls before it."""
        return await asyncio.wrap_future(self._thread.submit(call, *args))

    def _load_selector(self) -> None:
        try:
            selector = self._load()
        except Exception as err:  # noqa: BLE001 - reported on /ready and in the log; the server stays up
            self.problem = f"{type(err).__name__}: {err}"
            log.exception("the model failed to load; GET /ready answers 503 until the server is restarted")
            return
        self._selector = selector
        log.info("model %s (sha %s) loaded for fleet %s: ready", selector.model_name, selector.model_sha[:12],
                 ", ".join(selector.fleet.ids))
