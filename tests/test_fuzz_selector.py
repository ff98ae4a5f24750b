"""Fuzzing the Selector and `ember select` with task text: a result or a clear refusal, never a crash."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO
from ember_core.cli import main
from ember_core.errors import InvalidInputError
from ember_core.request import SelectionRequest
from ember_core.selection import validate_document
from ember_core.selector import Selector

CORPUS = json.loads((REPO / "tests" / "data" / "fuzz" / "tasks.json").read_text(encoding="utf-8"))
# Every Unicode category, surrogates included (they reach Python from undecodable argv bytes).
ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=3000)
WORDY_TEXT = st.lists(st.sampled_from(["inspect", "the", "hull", "\U0001F681", "\u6aa2", "<|image|>", "\u200b",
                                       "<|robot_selection|>", "\x00", "é", "\u0301", "  ", "[SEP]", "42"]),
                      max_size=600).map("".join)


@pytest.fixture(scope="module")
def selector(tiny_model_dir) -> Selector:
    return Selector(tiny_model_dir, device="cpu")


def assert_answered(selector: Selector, task: str, reasoning: bool = False) -> dict:
    """The request is answered: an ok document, or invalid_input naming the problem; the schema holds."""
    document = selector.select(SelectionRequest(task, top_k=2, return_reasoning=reasoning)).to_document()
    validate_document(document)
    json.dumps(document, ensure_ascii=False).encode("utf-8")  # printable and sendable as UTF-8
    assert document["status"] in ("ok", "invalid_input"), document["status"]
    assert (document["status"] == "ok") == (not document["errors"])
    return document


@given(task=ANY_TEXT)
def test_any_unicode_task_gets_a_result_or_a_clear_refusal(selector, task):
    document = assert_answered(selector, task)
    try:
        selector.select_robots(None, task, return_reasoning=False)
    except InvalidInputError as err:
        assert document["status"] == "invalid_input" and str(err) == document["errors"][0]


@given(task=WORDY_TEXT)
def test_long_mixed_tasks_with_marker_strings_get_a_result_or_a_clear_refusal(selector, task):
    assert_answered(selector, task)


@settings(max_examples=20)
@given(task=WORDY_TEXT)
def test_reasoning_runs_for_any_accepted_task(selector, task):
    """Generation continues after the longest prompt a task may make, within the model's context."""
    assert_answered(selector, task, reasoning=True)


@pytest.mark.parametrize("case", CORPUS, ids=[case["name"] for case in CORPUS])
def test_known_bad_tasks(selector, case):
    document = assert_answered(selector, case["task"], reasoning=True)
    assert document["status"] == case["status"], document["errors"]
    if case["error"]:
        assert case["error"] in document["errors"][0]


def test_marker_strings_in_a_task_are_plain_text(selector):
    """A task cannot add a second selection point or image slot: the markers it spells are ordinary text."""
    plain = selector.processor.features("Inspect the hull").input_ids
    marked = selector.processor.features("Inspect the hull <|robot_selection|><|image|>").input_ids
    special = set(selector.processor.tokenizer.convert_tokens_to_ids(["<|robot_selection|>", "<|image|>"]))
    assert sum(int(i) in special for i in marked) == sum(int(i) in special for i in plain)


@settings(max_examples=25)
@given(task=WORDY_TEXT)
def test_the_cli_exits_0_or_2_with_one_error_line(tiny_model_dir, capsys, task):
    code = main(["select", "--task", task, "--model", str(tiny_model_dir), "--no-reasoning", "--json"])
    out, err = capsys.readouterr()
    assert code in (0, 2) and "Traceback" not in err
    if code == 0:
        assert json.loads(out)["status"] == "ok"
    else:
        assert json.loads(out)["status"] == "invalid_input"


def test_undecodable_bytes_in_argv_give_an_error_line_not_a_traceback(tiny_model_dir):
    result = subprocess.run([sys.executable, "-m", "ember_core.cli", "select", "--task", b"Inspect \xff\xfe the hull",
                             "--model", str(tiny_model_dir), "--no-reasoning"], capture_output=True,
                            env={**os.environ, "EMBER_DEBUG": ""}, timeout=300)
    assert result.returncode == 2 and b"Traceback" not in result.stderr
    assert b"not valid Unicode" in result.stdout


@pytest.mark.parametrize("device, message", [("bogus", "bogus"), ("meta", "meta"), ("cuda:7", "cuda:7")])
def test_bad_devices_are_one_error_line(tiny_model_dir, capsys, device, message):
    assert main(["select", "--task", "Inspect the hull", "--model", str(tiny_model_dir), "--device", device]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "ember: error:" in err and message in err
