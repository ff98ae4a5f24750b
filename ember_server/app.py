"""The HTTP API over the Selector: select (one or a batch), the fleet, the model, liveness and readiness.

POST /select answers a selection document (ember_core/schemas/selection.schema.json), whose status
picks the HTTP status (HTTP_STATUS): a request that cannot be run is answered `invalid_input` with
the reason, as the ROS node answers it. Answers without a document carry a Problem: 413 for a body
over the limit, 503 before the model is loaded, 422 for a batch body that is not an array of
requests, 500 for an internal error (the log has the details under the request id it names).
"""
from __future__ import annotations

import importlib.metadata
import logging
import uuid
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ember_core.model_info import model_info
from ember_core.request import SelectionRequest
from ember_server.body_limit import BodyLimit, BodyTooLarge, body_too_large
from ember_server.host import SelectorHost
from ember_server.inputs import RefusedRequest, from_json, read_batch, read_request
from ember_server.openapi import BATCH_BODY, SELECT_BODY, SELECTION, install_openapi, json_content, ref
from ember_server.responses import Health, ModelInfo, Problem, Ready, Robots

if TYPE_CHECKING:
    from ember_core.selector import Selector

log = logging.getLogger(__name__)
HTTP_STATUS = {"ok": 200, "invalid_input": 422, "error": 500}
PROBLEMS = {413: {"model": Problem, "description": "the body is over the limit (MAX_HTTP_BODY_BYTES)"},
            503: {"model": Problem, "description": "the model is not loaded (yet, or it failed to load)"}}
SELECT_RESPONSES = {
    **{code: {"description": description, **json_content(ref(SELECTION))} for code, description in (
        (200, "the selection"),
        (422, "invalid_input: the request cannot be run; `errors` says why"),
        (500, "error: the model failed; the server log has the details under the document's request_id"))},
    **PROBLEMS}
BATCH_RESPONSES = {
    200: {"description": "one selection document per request, in order; each status says how that request went",
          **json_content({"type": "array", "items": ref(SELECTION)})},
    422: {"model": Problem, "description": "the body is not a JSON array of 1 to MAX_HTTP_BATCH requests"},
    500: {"description": "the model failed: every document's status is error",
          **json_content({"type": "array", "items": ref(SELECTION)})},
    **PROBLEMS}


def create_app(load: Callable[[], Selector]) -> FastAPI:
    """The API over the Selector `load()` returns; it is called on a background thread at start-up."""
    host = SelectorHost(load)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        host.start()
        yield
        host.close()

    app = FastAPI(title="Ember", version=importlib.metadata.version("ember_ros"), lifespan=lifespan,
                  description="Pick the right robots of a fleet for a task: POST a task (and a camera image), "
                              "get the selection document.")
    app.add_middleware(BodyLimit)
    app.add_exception_handler(BodyTooLarge, body_too_large)
    app.add_exception_handler(Exception, internal_error)
    install_openapi(app)

    @app.post("/select", responses=SELECT_RESPONSES, openapi_extra=SELECT_BODY, response_class=JSONResponse)
    async def select(http: Request) -> JSONResponse:
        """Rank the fleet for one task, from JSON (image base64) or a multipart form (image file)."""
        selector = host.selector
        try:
            request = await read_request(http)
        except RefusedRequest as err:
            return _answer(selector.error(err.request, "invalid_input", str(err)).to_document())
        return _answer((await host.run(_select, selector, [request]))[0])

    @app.post("/select/batch", responses=BATCH_RESPONSES, openapi_extra=BATCH_BODY, response_class=JSONResponse)
    async def select_batch(http: Request) -> JSONResponse:
        """Rank the fleet for several tasks; those without reasoning run as one batch."""
        selector = host.selector
        documents: list[dict[str, Any] | None] = []
        requests = []
        for item in await run_in_threadpool(read_batch, await http.body()):
            try:
                requests.append(from_json(item))
                documents.append(None)
            except RefusedRequest as err:
                documents.append(selector.error(err.request, "invalid_input", str(err)).to_document())
        answers = iter(await host.run(_select, selector, requests) if requests else [])
        documents = [document or next(answers) for document in documents]
        failed = any(document["status"] == "error" for document in documents)
        return JSONResponse(documents, status_code=500 if failed else 200)

    @app.get("/robots", response_model=Robots, responses=PROBLEMS)
    async def robots() -> dict[str, Any]:
        """The fleet's capability cards, in the fleet's order."""
        fleet = host.selector.fleet
        return {"hash": fleet.hash, "robots": [robot.to_dict() for robot in fleet]}

    @app.get("/model", response_model=ModelInfo, responses=PROBLEMS)
    async def model() -> dict[str, Any]:
        """The served model, as `ember model info --json` describes it."""
        selector = host.selector
        backend = selector.backend
        count = getattr(backend.model, "parameter_counts", None)  # the EmberVLM's; an ONNX export's graphs are not counted
        return model_info(backend, selector.processor, selector.fleet, count() if count else None)

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        """Liveness: the process answers (the model may still be loading)."""
        return Health()

    @app.get("/ready", response_model=Ready, responses={503: PROBLEMS[503]})
    async def ready() -> Ready:
        """Readiness: the model is loaded and selections are answered."""
        selector = host.selector
        return Ready(model=selector.model_name, sha=selector.model_sha)

    return app


def _select(selector: Selector, requests: Sequence[SelectionRequest]) -> list[dict[str, Any]]:
    """The documents for `requests`; a failure of the model answers each with status error, details logged."""
    try:
        return [selection.to_document() for selection in selector.select_batch(requests)]
    except Exception:  # noqa: BLE001 - the caller gets a document; the log gets the traceback
        ids = ", ".join(request.request_id for request in requests)
        log.exception("request %s: the selection failed", ids)
        return [selector.error(request, "error", f"internal error; the server log has the details under request id "
                                                 f"{request.request_id}").to_document() for request in requests]


def _answer(document: dict[str, Any]) -> JSONResponse:
    return JSONResponse(document, status_code=HTTP_STATUS[document["status"]])


async def internal_error(request: Request, err: Exception) -> JSONResponse:
    """A generic 500 for anything unforeseen: no traceback in the answer, all of it in the log."""
    request_id = uuid.uuid4().hex
    log.error("request %s: %s %s failed", request_id, request.method, request.url.path, exc_info=err)
    return JSONResponse({"detail": f"internal server error; the server log has the details under request id "
                                   f"{request_id}", "request_id": request_id}, status_code=500)
