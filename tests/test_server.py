"""`ember serve`: every endpoint through FastAPI's TestClient on a tiny model, the limits, and one real uvicorn process."""
from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from ember_core import limits
from ember_core.cli import build_parser, main
from ember_core.options import values_of
from ember_core.request import SelectionRequest
from ember_core.selection import SCHEMA_PATH, validate_document
from ember_core.selector import Selector
from ember_server.app import create_app
from ember_server.cli import load_selector
from ember_server.openapi import SELECTION
from ember_server.settings import ServeSettings

READY_TIMEOUT_S = 60


def _png(size: tuple[int, int] = (40, 30), colour: tuple[int, int, int] = (30, 90, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def _wait_ready(get) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while get("/ready").status_code != 200:
        assert time.monotonic() < deadline, "the server did not become ready"
        time.sleep(0.05)


def _no_traceback(response: httpx.Response) -> None:
    assert "Traceback" not in response.text and 'File "' not in response.text


@pytest.fixture(scope="module")
def selector(tiny_model_dir: Path) -> Selector:
    return Selector(str(tiny_model_dir), device="cpu")


@pytest.fixture
def client(selector: Selector):
    with TestClient(create_app(lambda: selector), raise_server_exceptions=False) as test_client:
        _wait_ready(test_client.get)
        yield test_client


def test_health_answers_while_the_model_loads_and_ready_only_after(selector: Selector):
    loaded = threading.Event()

    def load() -> Selector:
        assert loaded.wait(READY_TIMEOUT_S)
        return selector

    with TestClient(create_app(load)) as client:
        assert client.get("/health").json() == {"status": "ok"}
        waiting = client.get("/ready")
        assert waiting.status_code == 503 and waiting.headers["retry-after"] == "1"
        assert "still loading" in waiting.json()["detail"]
        assert client.post("/select", json={"task": "Inspect the hull"}).status_code == 503
        assert client.get("/robots").status_code == 503
        loaded.set()
        _wait_ready(client.get)
        assert client.get("/ready").json() == {"status": "ready", "model": selector.model_name, "sha": selector.model_sha}


def test_a_model_that_fails_to_load_leaves_the_server_up_and_not_ready():
    def load() -> Selector:
        raise FileNotFoundError("model directory /nowhere does not exist")

    with TestClient(create_app(load)) as client:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while "failed" not in (answer := client.get("/ready")).json()["detail"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert answer.status_code == 503
        assert answer.json()["detail"] == "the model failed to load: FileNotFoundError: model directory /nowhere does not exist"
        assert client.get("/health").status_code == 200


def test_select_json_answers_the_selection_document_of_the_selector(client: TestClient, selector: Selector):
    body = {"task": "Inspect the hull of the ferry", "request_id": "job-17", "task_id": "t-1", "top_k": 2,
            "return_reasoning": False}
    answer = client.post("/select", json=body)
    assert answer.status_code == 200
    document = answer.json()
    validate_document(document)
    assert (document["request_id"], document["task_id"], document["status"]) == ("job-17", "t-1", "ok")
    direct = selector.select(SelectionRequest(body["task"], top_k=2, return_reasoning=False)).to_document()
    assert document["candidates"] == direct["candidates"] and len(document["candidates"]) == 2


def test_base64_json_and_multipart_give_the_same_selection_as_the_selector(client: TestClient, selector: Selector):
    image, task = _png(), "Survey the flooded basement"
    as_json = client.post("/select", json={"task": task, "image": base64.b64encode(image).decode(),
                                           "return_reasoning": False}).json()
    as_form = client.post("/select", data={"task": task, "return_reasoning": "false"},
                          files={"image": ("scene.png", image, "image/png")}).json()
    direct = selector.select(SelectionRequest(task, image, return_reasoning=False)).to_document()
    assert as_json["status"] == as_form["status"] == "ok"
    assert as_json["candidates"] == as_form["candidates"] == direct["candidates"]
    assert as_json["image"] == as_form["image"] == direct["image"] is not None


def test_select_with_reasoning_returns_the_steps(client: TestClient):
    document = client.post("/select", data={"task": "Carry pallets across the warehouse"}).json()
    validate_document(document)
    assert document["status"] == "ok" and document["reasoning"] is not None


def test_batch_answers_each_request_in_order_with_its_own_status(client: TestClient, selector: Selector):
    items = [{"task": "Inspect the hull", "request_id": "a", "return_reasoning": False},
             {"request_id": "b", "top_k": 2},
             {"task": "Fly over the dam", "request_id": "c", "return_reasoning": False}]
    answer = client.post("/select/batch", json=items)
    assert answer.status_code == 200
    documents = answer.json()
    for document in documents:
        validate_document(document)
    assert [(d["request_id"], d["status"]) for d in documents] == [("a", "ok"), ("b", "invalid_input"), ("c", "ok")]
    assert documents[1]["errors"] == ["task: Field required"]
    direct = selector.select_batch([SelectionRequest(task, return_reasoning=False)
                                    for task in ("Inspect the hull", "Fly over the dam")])
    assert [documents[0]["candidates"], documents[2]["candidates"]] == [s.to_document()["candidates"] for s in direct]


@pytest.mark.parametrize("body, problem", [
    ([{"task": "x"}] * (limits.MAX_HTTP_BATCH + 1), f"an array of {limits.MAX_HTTP_BATCH + 1}"),
    ([], "an array of 0"),
    ({"task": "x"}, "a JSON dict"),
])
def test_a_batch_body_that_is_not_an_array_of_requests_is_422(client: TestClient, body, problem: str):
    answer = client.post("/select/batch", json=body)
    assert answer.status_code == 422
    assert problem in answer.json()["detail"] and "MAX_HTTP_BATCH" in answer.json()["detail"]


def test_robots_lists_the_fleets_cards(client: TestClient, selector: Selector):
    answer = client.get("/robots").json()
    assert answer == {"hash": selector.fleet.hash, "robots": [robot.to_dict() for robot in selector.fleet]}


def test_model_is_what_ember_model_info_prints(client: TestClient, tiny_model_dir: Path, capsys):
    assert main(["model", "info", "--model", str(tiny_model_dir), "--json"]) == 0
    assert client.get("/model").json() == json.loads(capsys.readouterr().out)


def test_a_body_over_the_limit_is_413_before_or_while_it_arrives(client: TestClient, monkeypatch):
    monkeypatch.setattr(limits, "MAX_HTTP_BODY_BYTES", 1000)
    body = json.dumps({"task": "x" * 2000}).encode()
    declared = client.post("/select", content=body, headers={"content-type": "application/json"})
    chunked = client.post("/select", content=iter([body[:600], body[600:]]), headers={"content-type": "application/json"})
    batch = client.post("/select/batch", content=iter([b"[" + body, b"]"]), headers={"content-type": "application/json"})
    for answer in (declared, chunked, batch):
        assert answer.status_code == 413
        assert "over the 1,000 byte limit" in answer.json()["detail"]
        _no_traceback(answer)
    assert declared.json()["detail"].startswith(f"the request body is {len(body):,} bytes")


@pytest.mark.parametrize("send, problem", [
    (lambda c: c.post("/select", json={"task": "x" * 2001}), "task is 2001 characters; the limit is 2000"),
    (lambda c: c.post("/select", json={"task": "Inspect", "image": base64.b64encode(b"GIF89a not allowed").decode()}),
     "is not a JPEG, PNG, WEBP, BMP or TIFF image"),
    (lambda c: c.post("/select", json={"task": "Inspect", "image": "not base64!"}), "image is not valid base64"),
    (lambda c: c.post("/select", data={"task": "Inspect"}, files={"image": ("x.png", b"\x89PNG\r\n\x1a\n broken")}),
     "starts like a PNG file but its header is broken"),
    (lambda c: c.post("/select", json={"task": "Inspect", "top_k": 0}), "top_k must be an integer from 1 to 256"),
    (lambda c: c.post("/select", json={"task": "Inspect", "top_k": "two"}), "top_k: Input should be a valid integer"),
    (lambda c: c.post("/select", json={"task": "Inspect", "colour": "red"}), "colour: Extra inputs are not permitted"),
    (lambda c: c.post("/select", json=["Inspect"]), "a request must be a JSON object"),
    (lambda c: c.post("/select", content=b"{not json", headers={"content-type": "application/json"}),
     "the body is not readable JSON"),
    (lambda c: c.post("/select", content=b"Inspect", headers={"content-type": "text/plain"}),
     "send application/json (image base64-encoded) or multipart/form-data"),
    (lambda c: c.post("/select", content=b"--b\r\nbroken", headers={"content-type": "multipart/form-data; boundary=b"}),
     "task: Field required"),
])
def test_a_request_that_cannot_run_is_an_invalid_input_document_with_422(client: TestClient, send, problem: str):
    answer = send(client)
    assert answer.status_code == 422
    document = answer.json()
    validate_document(document)
    assert document["status"] == "invalid_input" and problem in document["errors"][0], document["errors"]
    _no_traceback(answer)


def test_an_image_over_the_pixel_limit_is_422(client: TestClient, monkeypatch):
    monkeypatch.setattr(limits, "MAX_IMAGE_PIXELS", 100)
    answer = client.post("/select", data={"task": "Inspect", "request_id": "big"},
                         files={"image": ("scene.png", _png((40, 30)))})
    assert answer.status_code == 422
    assert answer.json()["request_id"] == "big"
    assert "40x30 = 1,200 pixels, over the 100 pixel limit" in answer.json()["errors"][0]


def test_an_internal_error_is_a_500_naming_a_request_id_with_the_details_only_in_the_log(
        client: TestClient, selector: Selector, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(selector, "select_batch", broken)
    answer = client.post("/select", json={"task": "Inspect the hull", "request_id": "r-9"})
    assert answer.status_code == 500
    document = answer.json()
    validate_document(document)
    assert document["status"] == "error"
    assert document["errors"] == ["internal error; the server log has the details under request id r-9"]
    batch = client.post("/select/batch", json=[{"task": "Inspect the hull"}])
    assert batch.status_code == 500 and batch.json()[0]["status"] == "error"

    monkeypatch.setattr("ember_server.app.model_info", broken)
    generic = client.get("/model")
    assert generic.status_code == 500
    assert generic.json()["detail"] == (f"internal server error; the server log has the details under request id "
                                        f"{generic.json()['request_id']}")
    for response in (answer, batch, generic):
        assert "secret internals" not in response.text
        _no_traceback(response)
    assert "secret internals" in caplog.text and "Traceback" in caplog.text


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                     max_leaves=12)
_requests = st.fixed_dictionaries({}, optional={
    "task": st.text(max_size=30) | _json, "image": st.text(max_size=30) | _json, "top_k": _json,
    "request_id": st.text(max_size=8) | _json, "return_reasoning": st.just(False) | _json,
    "confidence_threshold": _json})


@settings(max_examples=60)
@given(body=_requests | _json)
def test_any_json_body_gets_a_selection_document(client: TestClient, body):
    answer = client.post("/select", json=body)
    assert answer.status_code in (200, 422), answer.text
    validate_document(answer.json())


def test_openapi_holds_the_selection_schema_and_every_reference_resolves(client: TestClient):
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    shipped = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schemas[SELECTION]["required"] == shipped["required"]
    assert set(schemas[SELECTION]["properties"]) == set(shipped["properties"])
    assert set(shipped["$defs"]) == {name.removeprefix(f"{SELECTION}_") for name in schemas if name.startswith(f"{SELECTION}_")}
    select = document["paths"]["/select"]["post"]
    reference = {"$ref": f"#/components/schemas/{SELECTION}"}
    for code in ("200", "422", "500"):
        assert select["responses"][code]["content"]["application/json"]["schema"] == reference
    assert set(select["requestBody"]["content"]) == {"application/json", "multipart/form-data",
                                                     "application/x-www-form-urlencoded"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "content" in operation["responses"]["200"], (method, path)
    references = [value for value in _walk(document) if isinstance(value, str) and value.startswith("#/")]
    assert references
    for pointer in references:
        node = document
        for part in pointer[2:].split("/"):
            assert part in node, f"{pointer} does not resolve"
            node = node[part]


def _walk(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from ([value] if key == "$ref" else _walk(value))
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def test_serve_flags_reach_the_selector_and_bad_ones_are_one_error_line(tiny_model_dir: Path, capsys):
    args = build_parser().parse_args(["serve", "--model", str(tiny_model_dir), "--backend", "onnx", "--port", "8123"])
    settings = ServeSettings(**values_of(args, ServeSettings))
    assert (settings.backend, settings.port, settings.host) == ("onnx", 8123, "127.0.0.1")
    with pytest.raises(ValueError, match="the onnx backend needs a directory written by `ember export onnx`"):
        load_selector(settings)
    assert main(["serve", "--workers", "0"]) == 2
    assert capsys.readouterr().err.strip().endswith("ember: error: --workers must be at least 1, got 0")


def test_ember_serve_answers_a_real_http_request(tiny_model_dir: Path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ember = Path(sys.executable).with_name("ember")
    server = subprocess.Popen([str(ember), "serve", "--model", str(tiny_model_dir), "--port", str(port), "--device", "cpu"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while True:
                assert server.poll() is None, server.stdout.read().decode()
                try:
                    if http.get("/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "ember serve did not become ready"
                time.sleep(0.2)
            answer = http.post("/select", json={"task": "Inspect the hull of the ferry", "return_reasoning": False})
        assert answer.status_code == 200
        validate_document(answer.json())
        assert answer.json()["status"] == "ok"
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0].decode()
    assert server.returncode == -signal.SIGTERM and "Application shutdown complete." in output, output  # uvicorn re-raises the signal
    assert '"POST /select HTTP/1.1" 200' in output
