"""HTTP request bodies to SelectionRequests: a JSON object (image base64) or a form (image as a file part).

What cannot be read becomes a RefusedRequest carrying whatever ids and task it had, so the answer is
an `invalid_input` selection document the caller can match, as the ROS node answers a bad task message.
Everything the Selector checks itself (task text and length, image bytes, format and pixels, top_k,
confidence threshold) is left to it.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from ember_core import limits, safe_json
from ember_core.request import DEFAULT_CONFIDENCE_THRESHOLD, DEFAULT_TOP_K, SelectionRequest

# Forms: multipart (what `curl -F` sends; the image as a file) or urlencoded (`curl -d`; text only).
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


class SelectFields(BaseModel):
    """The fields of a selection request besides its image (the names of `SelectionRequest`)."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(description="what the robots should do, in plain words")
    request_id: str | None = Field(None, min_length=1, description="your id for the request, echoed in the "
                                                                      "result (default: a generated one)")
    task_id: str | None = Field(None, min_length=1, description="the fleet manager's id for the task, echoed")
    top_k: int = Field(DEFAULT_TOP_K, description=f"ranked robots to return, 1 to {limits.MAX_TOP_K}")
    confidence_threshold: float = Field(DEFAULT_CONFIDENCE_THRESHOLD, description="robots after the first are "
                                                                                  "selected at or above it (0 to 1)")
    return_reasoning: bool = Field(True, description="generate the 4-step reasoning (slower)")


class SelectJson(SelectFields):
    """A selection request as JSON; the image, if any, base64-encoded."""

    image: str | None = Field(None, description="the camera image (JPEG, PNG, WebP, BMP or TIFF), base64-encoded; "
                                                   "null or absent: text only")


class SelectForm(SelectFields):
    """A selection request as a multipart form; the image, if any, as a file part."""

    image: bytes | None = Field(None, description="the camera image file (JPEG, PNG, WebP, BMP or TIFF); "
                                                     "absent: text only")


class RefusedRequest(ValueError):
    """A body that is not a selection request; `request` holds what could be read of it, for the answer."""

    def __init__(self, message: str, request: SelectionRequest):
        super().__init__(message)
        self.request = request


async def read_request(http: Request) -> SelectionRequest:
    """The SelectionRequest of a POST /select body, by its content type; RefusedRequest when unreadable."""
    kind = http.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        body = await http.body()
        return await run_in_threadpool(_from_json_bytes, body)
    if kind in FORM_TYPES:
        return await _from_form(http)
    raise RefusedRequest(f"the body is {kind or 'of no declared content type'}; send application/json (image "
                         "base64-encoded) or multipart/form-data (image as a file)", SelectionRequest(""))


def read_batch(body: bytes) -> list[Any]:
    """The items of a POST /select/batch body: a JSON array of 1 to limits.MAX_HTTP_BATCH values.

    HTTPException 422 otherwise: without the array there are no requests to answer one by one.
    """
    try:
        items = safe_json.loads(body, max_bytes=limits.MAX_HTTP_BODY_BYTES)
    except ValueError as err:
        raise HTTPException(422, f"the body is not readable JSON ({err})") from err
    if not isinstance(items, list) or not 1 <= len(items) <= limits.MAX_HTTP_BATCH:
        count = f"an array of {len(items)}" if isinstance(items, list) else f"a JSON {type(items).__name__}"
        raise HTTPException(422, f"the body is {count}; send a JSON array of 1 to {limits.MAX_HTTP_BATCH} "
                                 "request objects (MAX_HTTP_BATCH)")
    return items


def from_json(value: Any) -> SelectionRequest:
    """The SelectionRequest of one decoded JSON request object; RefusedRequest names what is wrong."""
    if not isinstance(value, dict):
        raise RefusedRequest(f"a request must be a JSON object with a \"task\", got a JSON {type(value).__name__}",
                             SelectionRequest(""))
    fields = _validated(SelectJson, value)
    try:
        image = None if fields.image is None else base64.b64decode(fields.image, validate=True)
    except binascii.Error as err:
        raise RefusedRequest(f"image is not valid base64 ({err}); send the image file's bytes base64-encoded",
                             _echo(value)) from err
    return _request(fields, image)


def _from_json_bytes(body: bytes) -> SelectionRequest:
    try:
        value = safe_json.loads(body, max_bytes=limits.MAX_HTTP_BODY_BYTES)
    except ValueError as err:
        raise RefusedRequest(f"the body is not readable JSON ({err})", SelectionRequest("")) from err
    return from_json(value)


async def _from_form(http: Request) -> SelectionRequest:
    try:
        form = await http.form(max_files=1, max_fields=len(SelectForm.model_fields),
                               max_part_size=limits.MAX_JSON_BYTES)
    except HTTPException as err:  # Starlette's answer to a malformed form, or one of too many or too large parts
        raise RefusedRequest(f"the multipart form cannot be read: {err.detail}", SelectionRequest("")) from err
    try:
        values: dict[str, Any] = {}
        for key, value in form.multi_items():
            if key in values:
                raise RefusedRequest(f"form field {key!r} is given twice; send it once", SelectionRequest(""))
            values[key] = await value.read() if isinstance(value, UploadFile) else value
    finally:
        await form.close()
    fields = _validated(SelectForm, values)
    return _request(fields, fields.image)


def _validated(model: type[SelectFields], values: dict[str, Any]) -> Any:
    try:
        return model.model_validate(values)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, error['loc'])) or 'body'}: {error['msg']}"
                             for error in err.errors(include_url=False))
        raise RefusedRequest(problems, _echo(values)) from err


def _echo(values: dict[str, Any]) -> SelectionRequest:
    """What an answer to an unreadable request can echo: its task and ids, where they are text."""
    task, request_id, task_id = (values.get(key) for key in ("task", "request_id", "task_id"))
    ids = {"request_id": request_id} if isinstance(request_id, str) and request_id else {}
    return SelectionRequest(task if isinstance(task, str) else "",
                            task_id=task_id if isinstance(task_id, str) and task_id else None, **ids)


def _request(fields: SelectFields, image: bytes | None) -> SelectionRequest:
    ids = {"request_id": fields.request_id} if fields.request_id else {}
    return SelectionRequest(fields.task, image, task_id=fields.task_id, top_k=fields.top_k,
                            confidence_threshold=fields.confidence_threshold,
                            return_reasoning=fields.return_reasoning, **ids)
