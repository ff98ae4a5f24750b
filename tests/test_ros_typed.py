"""ember_msgs: the typed selection matches the JSON Schema, the node publishes it stamped with the image's
header, and the select service answers while a camera runs at 30 Hz (real rclpy on an isolated domain)."""
from __future__ import annotations

import io
import math
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 rclpy is not installed (pip install '.[ros]')")
from rosutil import connected, make_node, make_probe, ros, scene, spinning, wait_for  # noqa: E402,F401

from ember_msgs.msg import Selection  # noqa: E402
from ember_msgs.srv import SelectRobots  # noqa: E402
from PIL import Image as PILImage  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from ember_core.request import SelectionRequest  # noqa: E402
from ember_core.selection import validate_document  # noqa: E402
from ember_core.selector import Selector  # noqa: E402
from ember_ros.typed import _schema, message_class, resolve, time_to_seconds, to_document, to_message  # noqa: E402

TASK = "Inspect the intake pipe of a flooded pump station for blockages"
_SCALARS = {"string": {"string"}, "integer": {"uint32", "int32", "uint64", "int64"}, "number": {"double"},
            "boolean": {"boolean"}}


def _walk(cls: type, schema: dict, path: str, skip: tuple[str, ...] = ()) -> list[str]:
    """Every difference between a message type and the schema object it stands for (names and types)."""
    fields = {name: kind for name, kind in cls.get_fields_and_field_types().items() if name not in skip}
    problems = [f"{path}: message field {name!r} is not in the schema" for name in fields.keys() - schema["properties"].keys()]
    problems += [f"{path}: schema property {name!r} has no message field" for name in schema["properties"].keys() - fields.keys()]
    for name in fields.keys() & schema["properties"].keys():
        problems += _compare(fields[name], schema["properties"][name], f"{path}.{name}")
    return problems


def _compare(kind: str, schema: dict, path: str) -> list[str]:
    schema, nullable = resolve(schema)
    if kind.startswith("sequence<"):
        inner, _, bound = kind[len("sequence<"):-1].partition(", ")
        if "properties" in schema:  # an object that may be absent
            return _compare(inner, schema, path) if bound == "1" and nullable else [f"{path}: {kind} for a required object"]
        return _compare(inner, schema["items"], f"{path}[]") if schema.get("type") in ("array", ["array", "null"]) \
            else [f"{path}: {kind} for a {schema.get('type')}"]
    if kind == "builtin_interfaces/Time":
        return [] if schema.get("type") in ("number", ["number", "null"]) else [f"{path}: a time for {schema.get('type')}"]
    if "/" in kind:
        return _walk(message_class(kind), schema, path) if "properties" in schema else [f"{path}: {kind} for a non-object"]
    types = schema.get("type", "string")  # enum and const properties hold strings
    types = [t for t in (types if isinstance(types, list) else [types]) if t != "null"]
    return [] if kind in _SCALARS.get(types[0], ()) else [f"{path}: {kind} for a {types[0]}"]


def test_the_message_definitions_walk_the_json_schema_field_for_field():
    schema = _schema()
    assert _walk(Selection, schema, "Selection", skip=("header",)) == []
    assert "header" in Selection.get_fields_and_field_types() and Selection.SCHEMA == schema["properties"]["schema"]["const"]
    assert {getattr(Selection, name) for name in dir(Selection) if name.startswith("STATUS_")} == \
           set(schema["properties"]["status"]["enum"])


def test_a_wrong_message_type_is_reported_by_the_walk():
    schema = _schema()
    assert _compare("string", schema["properties"]["top_k"], "top_k") == ["top_k: string for a integer"]
    assert _compare("sequence<ember_msgs/Plan>", schema["properties"]["plan"], "plan") == ["plan: sequence<ember_msgs/Plan> "
                                                                                          "for a required object"]


def _same(document: dict, back: dict) -> None:
    """Equal documents, stamps within a nanosecond's rounding."""
    document, back = dict(document), dict(back)
    assert math.isclose(document.pop("stamp"), back.pop("stamp"), abs_tol=1e-6)
    if document["image"] and document["image"]["stamp"] is not None:
        document["image"], back["image"] = dict(document["image"]), dict(back["image"])
        assert math.isclose(document["image"].pop("stamp"), back["image"].pop("stamp"), abs_tol=1e-6)
    assert back == document


def test_documents_of_every_kind_survive_the_typed_message(tiny_model_dir):
    from ember_core.selection import ImageInfo
    from std_msgs.msg import Header

    selector = Selector(str(tiny_model_dir))
    shipped = Selector()
    documents = [
        selector.select(SelectionRequest(TASK, scene((10, 60, 160)), image_info=ImageInfo(1.5e9 + 0.25, "cam", 12.0))),
        selector.select(SelectionRequest(TASK, return_reasoning=False, task_id="T-9")),
        shipped.select(SelectionRequest("Fly over the ridge to find the stranded hikers, then carry the medical kit "
                                        "up the rocky trail to them")),
        selector.error(SelectionRequest(TASK, image_info=ImageInfo(None, "", None)), "stale_image", "too old"),
    ]
    documents = [d.to_document() for d in documents]
    assert documents[2]["team"] and documents[2]["plan"]["subtasks"]  # a team and its plan travel too
    for document in documents:
        message = to_message(document, Header(frame_id="cam"))
        back = to_document(message)
        validate_document(back)
        _same(document, back)


def _jpeg(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(rgb).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_the_typed_selection_carries_the_images_header_and_equals_the_json(make_node, make_probe):
    node, probe = make_node(return_reasoning=False), make_probe()
    with spinning(node, probe):
        connected(probe, node)
        message = Image(height=32, width=32, encoding="rgb8", step=96, data=scene((10, 60, 160)).tobytes())
        message.header.stamp, message.header.frame_id = node.get_clock().now().to_msg(), "bow_camera"
        wait_for(lambda: probe.camera.publish(message) or node.camera.latest() is not None, "the frame")
        probe.send_task({"task": TASK, "request_id": "typed"})
        typed = wait_for(lambda: probe.selection("typed"), "the typed result")
        document = wait_for(lambda: probe.result("typed"), "the JSON result")
        node.set_parameters([Parameter("require_image", value=False)])
        node.camera.clear()
        before = node.get_clock().now().nanoseconds
        probe.send_task({"task": TASK, "request_id": "text"})
        text = wait_for(lambda: probe.selection("text"), "the text-only typed result")
    assert typed.header == message.header  # exact: message_filters can pair it with the frame
    assert typed.status == "ok" and len(typed.image) == 1 and typed.image[0].frame_id == "bow_camera"
    _same(document, to_document(typed))
    assert text.image == [] and text.header.frame_id == ""
    received = text.header.stamp.sec * 10**9 + text.header.stamp.nanosec
    assert before <= received <= before + 30 * 10**9  # when the task arrived, not zero


def _call(client, request, timeout: float = 60.0):
    future = client.call_async(request)
    return wait_for(lambda: future.result() if future.done() else None, "the service response", timeout).selection


def test_the_select_service_answers_while_the_camera_runs_at_30_hz(make_node, make_probe):
    node, probe = make_node(return_reasoning=False), make_probe()
    stop = threading.Event()
    with spinning(node, probe):
        connected(probe, node)
        client = probe.create_client(SelectRobots, "/ember_selector/select_robots")
        assert client.wait_for_service(timeout_sec=30)

        def camera() -> None:
            while not stop.is_set():
                probe.send_image(scene((10, 60, 160)), frame_id="mast_camera")
                time.sleep(1 / 30)

        thread = threading.Thread(target=camera, daemon=True)
        thread.start()
        try:
            wait_for(lambda: node.camera.rate_hz() > 5, "the camera at the node")
            answers = [_call(client, SelectRobots.Request(task=TASK, request_id=f"srv-{i}", task_id="T", top_k=2))
                       for i in range(5)]
            given = _call(client, SelectRobots.Request(task=TASK, request_id="own-image", compressed_image=[
                CompressedImage(format="jpeg", data=_jpeg(scene((200, 200, 255))))]))
        finally:
            stop.set()
            thread.join(5)
    for i, answer in enumerate(answers):
        assert (answer.request_id, answer.status, answer.task_id, len(answer.candidates)) == (f"srv-{i}", "ok", "T", 2)
        assert answer.header.frame_id == "mast_camera" and answer.image[0].frame_id == "mast_camera"
        assert any(m.request_id == f"srv-{i}" for m in probe.selections)  # also published, like any result
    assert given.status == "ok" and given.header.frame_id == "" and len(given.image) == 1  # its own image, unstamped
    # The camera kept flowing while the service waited: each answer was paired with a newer frame.
    stamps = [(a.header.stamp.sec, a.header.stamp.nanosec) for a in answers]
    assert stamps == sorted(set(stamps))
    assert node.stats.counts["service_requests"] == 6


@pytest.mark.parametrize("request_fields, problem", [
    ({"task": ""}, "task is empty"),
    ({"task": "   "}, "task is empty"),
    ({"task": TASK, "top_k": 10_000}, "over the limit"),
    ({"task": TASK, "image": [Image()], "compressed_image": [CompressedImage(format="jpeg", data=b"x")]}, "not both"),
    ({"task": TASK, "compressed_image": [CompressedImage(format="jpeg", data=b"not a jpeg")]}, "request image"),
    ({"task": TASK, "image": [Image(height=4, width=4, encoding="rgb8", step=12, data=b"short")]}, "request image"),
])
def test_a_malformed_service_request_is_answered_invalid_input_and_the_node_stays_up(make_node, make_probe,
                                                                                    request_fields, problem):
    node, probe = make_node(require_image=False, return_reasoning=False), make_probe()
    with spinning(node, probe):
        client = probe.create_client(SelectRobots, "/ember_selector/select_robots")
        assert client.wait_for_service(timeout_sec=30)
        bad = _call(client, SelectRobots.Request(request_id="bad", **request_fields))
        good = _call(client, SelectRobots.Request(task=TASK, request_id="good"))
    assert (bad.request_id, bad.status, bad.candidates) == ("bad", "invalid_input", [])
    assert problem in " ".join(bad.errors), bad.errors
    assert good.status == "ok" and node.state == "active"
