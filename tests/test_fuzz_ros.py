"""Fuzzing what reaches the ROS node from outside: task and fleet_status text give a request or a clear error, never a crash.

Plain Python, no ROS needed; tests/test_ros_hardening.py sends the known-bad inputs to a real node.
"""
from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ember_core import safe_json
from ember_core.availability import AVAILABILITY
from ember_core.limits import MAX_JSON_BYTES, MAX_JSON_DEPTH, MAX_TOP_K
from ember_ros.fleet_status import read_fleet_status
from ember_ros.requests import TaskRequest, parse_task

# Any code point, lone surrogates included (what a str built from undecodable bytes or a "\ud800" escape holds).
SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udcff", "\udfff"])
ANY_CHAR = st.one_of(st.characters(codec=None, exclude_categories=()), SURROGATES)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=20))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
ROBOT_IDS = st.sampled_from(["drone", "humanoid", "underwater_robot", "robot_with_wheels", "robot_with_legs",
                             "forklift", "", "\ud800"])


def nested(depth: int, opener: str, closer: str, core: str = "1") -> str:
    return opener * depth + core + closer * depth


DEEP = st.one_of(st.integers(0, 100_000).map(lambda depth: nested(depth, "[", "]")),
                 st.integers(0, 30_000).map(lambda depth: nested(depth, '{"task": ', "}", '"x"')))
HUGE = st.integers(MAX_JSON_BYTES - 40, MAX_JSON_BYTES + 40).map(lambda n: json.dumps({"task": "x" * n}))
TASK_OBJECTS = st.fixed_dictionaries({}, optional={
    "task": st.one_of(st.text(ANY_CHAR, max_size=40), JSON_VALUES),
    "request_id": st.one_of(st.text(ANY_CHAR, max_size=12), JSON_VALUES),
    "task_id": st.one_of(st.text(max_size=12), JSON_VALUES),
    "top_k": st.one_of(st.integers(-3, MAX_TOP_K + 3), st.integers(), JSON_VALUES),
    "colour": JSON_VALUES,
}).map(lambda message: json.dumps(message, ensure_ascii=False))
# A valid document with text spliced in somewhere: truncations, stray brackets, NaN, "\ud800" escapes.
SPLICED = st.builds(lambda text, at, junk: text[:at % (len(text) + 1)] + junk + text[at % (len(text) + 1):],
                    TASK_OBJECTS, st.integers(0, 400), st.sampled_from(["", "[", "]", "{", '"', "\\", "NaN", "\\ud800",
                                                                       "1e999", "9" * 5000, "\x00", "\ufeff"]))
TEXTS = st.one_of(st.text(ANY_CHAR), TASK_OBJECTS, SPLICED, DEEP, HUGE, JSON_VALUES.map(json.dumps))


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


@given(st.one_of(TEXTS, st.binary(), TEXTS.map(lambda text: text.encode("utf-8", "surrogatepass"))))
@example("[" * 100_000)  # json.loads raised RecursionError here, inside the task callback: the node died
@example('{"task": "\\ud800"}')  # the task's echo could not be published: the worker thread died
@example(json.dumps({"task": "x", "top_k": MAX_TOP_K + 1}))
@example(b"\xff\xfe{")
def test_any_task_message_gives_a_request_that_can_be_answered(text):
    request = parse_task(text)
    assert isinstance(request, TaskRequest)
    assert isinstance(request.request_id, str) and request.request_id and _encodable(request.request_id)
    assert isinstance(request.task, str) and _encodable(request.task), "the task's echo must be publishable"
    if request.error is None:
        assert request.task.strip() and (request.top_k is None or 1 <= request.top_k <= MAX_TOP_K)
        assert len(text if isinstance(text, bytes) else text.encode("utf-8")) <= MAX_JSON_BYTES
    else:
        assert isinstance(request.error, str) and request.error and _encodable(request.error)


def test_task_limits_are_named_in_the_errors():
    assert "MAX_JSON_DEPTH" in parse_task("[" * 100_000).error
    assert "MAX_JSON_BYTES" in parse_task(json.dumps({"task": "x" * MAX_JSON_BYTES})).error
    assert "MAX_JSON_BYTES" in parse_task("inspect " * (MAX_JSON_BYTES // 8 + 1)).error  # plain text too
    assert f"over the limit of {MAX_TOP_K}" in parse_task(json.dumps({"task": "x", "top_k": MAX_TOP_K + 1})).error
    assert parse_task(json.dumps({"task": "x", "top_k": MAX_TOP_K})).error is None
    assert "not UTF-8" in parse_task(b"\xff task").error and "valid Unicode" in parse_task('{"task": "\\udcff"}').error


FLEET_STATUS = st.dictionaries(st.sampled_from([*AVAILABILITY, "lost"]),
                               st.one_of(st.lists(ROBOT_IDS, max_size=6), JSON_VALUES), max_size=4).map(json.dumps)


@given(st.one_of(FLEET_STATUS, TEXTS, st.binary(),
                 st.integers(0, 100_000).map(lambda depth: '{"busy": ' + nested(depth, "[", "]", '"drone"') + "}")))
@example('{"busy": ' + "[" * 100_000)  # RecursionError in the fleet_status callback: the node died
@example('{"busy": ["\\ud800"]}')  # logging the unknown id raised UnicodeEncodeError in the callback
def test_any_fleet_status_message_gives_a_status_or_a_value_error(fleet, text):
    try:
        status = read_fleet_status(text, fleet)
    except ValueError as err:
        assert str(err) and _encodable(str(err))
        return
    assert set(status.states) <= set(fleet.ids) and set(status.states.values()) <= set(AVAILABILITY)
    assert all(_encodable(robot_id) for robot_id in status.ignored)


def _depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


@given(JSON_VALUES, st.booleans())
def test_safe_json_reads_every_document_within_the_limits_like_json(value, as_bytes):
    text = json.dumps(value, ensure_ascii=False)
    if _depth(value) > MAX_JSON_DEPTH or len(text.encode("utf-8")) > MAX_JSON_BYTES:
        return  # the generator seldom makes these; the depth property below covers the refusals
    assert safe_json.loads(text.encode("utf-8") if as_bytes else text) == json.loads(text)


@given(st.integers(0, 80), st.integers(1, 60), st.lists(st.sampled_from(["[", '{"k": ', '["[{", ', '{"}]": ']),
                                                         min_size=1, max_size=4))
def test_safe_json_refuses_exactly_the_documents_nested_deeper_than_the_limit(depth, limit, openers):
    """Brackets inside strings do not count; the scan agrees with the parser's own nesting."""
    closers = {"[": "]", '{"k": ': "}", '["[{", ': "]", '{"}]": ': "}"}
    chosen = [openers[i % len(openers)] for i in range(depth)]
    text = "".join(chosen) + '"[[{{"' + "".join(closers[opener] for opener in reversed(chosen))
    assert _depth(json.loads(text)) == depth
    if depth > limit:
        with pytest.raises(ValueError, match=f"more than {limit} levels deep"):
            safe_json.loads(text, max_depth=limit)
    else:
        assert safe_json.loads(text, max_depth=limit) == json.loads(text)


@given(task=st.text(), request_id=st.text(max_size=12), task_id=st.text(max_size=12), top_k=st.integers(0, 2**32 - 1),
       raw=st.booleans(), compressed=st.booleans(), data=st.binary(max_size=64))
@example(task="", request_id="", task_id="", top_k=0, raw=False, compressed=False, data=b"")
@example(task="x" * (MAX_JSON_BYTES + 1), request_id="r", task_id="", top_k=3, raw=False, compressed=False, data=b"")
def test_any_select_service_request_gives_a_task_that_can_be_answered(task, request_id, task_id, top_k, raw, compressed,
                                                                      data):
    pytest.importorskip("ember_msgs", reason="ember_msgs is not built (make install builds it)")
    from ember_msgs.srv import SelectRobots
    from sensor_msgs.msg import CompressedImage, Image

    from ember_ros.service import Reply, read_request

    request = SelectRobots.Request(task=task, request_id=request_id, task_id=task_id, top_k=top_k,
                                   image=[Image(data=data)] if raw else [],
                                   compressed_image=[CompressedImage(data=data)] if compressed else [])
    reply = Reply()
    queued = read_request(request, stamp=None, now=0.0, reply=reply)
    assert queued.reply is reply and queued.request_id == (request_id or queued.request_id) and queued.request_id
    assert queued.task_id == (task_id or None) and _encodable(queued.task)
    if queued.error is None:
        assert task.strip() and len(task.encode("utf-8")) <= MAX_JSON_BYTES and not (raw and compressed)
        assert (queued.top_k or 0) == top_k and top_k <= MAX_TOP_K and (queued.image is not None) == (raw or compressed)
    else:
        assert not task.strip() or top_k > MAX_TOP_K or (raw and compressed) or len(task.encode("utf-8")) > MAX_JSON_BYTES
