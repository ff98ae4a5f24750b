"""Fuzz robots.yaml and the plugin hooks: every file loads or is a FleetConfigError naming it; every hook answer is survived.

The corpus in tests/data/fuzz/robots/ (written by tools/make_fuzz_corpus_robots.py) holds the known-bad
files of issue 12, each checked for its exact refusal; the properties feed generated files, cards and
hook answers (the profile in conftest.py sets how many examples).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import math
import re
import shutil
import sys
import time
import unicodedata
from pathlib import Path

import pytest
import yaml
from hypothesis import event, given
from hypothesis import strategies as st

from conftest import REPO
from ember_core import Fleet, FleetConfigError, RobotType, TaskContext, hookimpl, load_fleet
from ember_core.fleet import MAX_REASON_CHARS, new_plugin_manager
from ember_core.robot import LIST_FIELDS, NUMBER_FIELDS
from ember_core.robots_file import ENTRY_KEYS

CORPUS = REPO / "tests" / "data" / "fuzz" / "robots"
BUILTIN = ["ember_plugins.drone", "ember_plugins.underwater_robot", "ember_plugins.humanoid",
           "ember_plugins.robot_with_wheels", "ember_plugins.robot_with_legs", "ember_plugins.snake_robot"]
CARD_FIELDS = ["id", "name", "description", *LIST_FIELDS, *NUMBER_FIELDS]
# Every refusal is one short line about the file: it never echoes the document back.
MAX_MESSAGE_CHARS = 1200
SLOWEST_LOAD_S = 10.0  # generous: these files are a few kilobytes at most and load in milliseconds


def _corpus_tool():
    spec = importlib.util.spec_from_file_location("make_fuzz_corpus_robots", REPO / "tools" / "make_fuzz_corpus_robots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _forget_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    """Imports cached by earlier tests would hide a shadowing attack: each corpus case imports afresh."""
    for name in ("ember_plugins", "ember_plugins.drone", "ember_plugins.humanoid", "colorsys"):
        monkeypatch.delitem(sys.modules, name, raising=False)


@pytest.mark.parametrize("case", sorted(path.name for path in CORPUS.iterdir()))
def test_corpus_case_gets_its_exact_refusal(case, tmp_path, monkeypatch):
    folder = shutil.copytree(CORPUS / case, tmp_path / case)  # a copy: no __pycache__ in tests/data
    expect = json.loads((folder / "expect.json").read_text(encoding="utf-8"))
    path = (folder / "robots.yaml").resolve()
    _forget_imported(monkeypatch)
    start = time.perf_counter()
    if "error" in expect:
        with pytest.raises(FleetConfigError) as caught:
            load_fleet(path)
        assert str(caught.value) == expect["error"].replace("{file}", str(path))
    else:
        assert load_fleet(path).ids == expect["ids"]
    assert time.perf_counter() - start < 5.0  # the alias bomb took 86 s and a 3 GB message before


def test_corpus_is_what_the_tool_writes(tmp_path):
    written = _corpus_tool().write_corpus(tmp_path / "corpus")
    assert written == sorted(path.name for path in CORPUS.iterdir())
    for path in sorted((tmp_path / "corpus").rglob("*")):
        if path.is_file():
            committed = CORPUS / path.relative_to(tmp_path / "corpus")
            assert committed.read_bytes() == path.read_bytes(), f"{committed} is stale: run tools/make_fuzz_corpus_robots.py"


def _load(path: Path):
    """load_fleet(path): a Fleet, or a FleetConfigError that names the file in one short message; nothing else, quickly."""
    start = time.perf_counter()
    try:
        result = load_fleet(path)
        event("loaded")
    except FleetConfigError as err:
        message = str(err)
        assert message.startswith(f"{path}: "), message[:300]
        assert len(message) <= MAX_MESSAGE_CHARS, message[:300]
        reason = re.sub(r"^entry \d+( \(plugin '.*?'\))?: ", "", message[len(str(path)) + 2:])
        event("refused: " + re.split(r"[:;,(]", reason)[0][:40])  # which refusals the examples reach (--hypothesis-show-statistics)
        result = err
    assert time.perf_counter() - start < SLOWEST_LOAD_S
    return result


# --- generated robots.yaml text ------------------------------------------------------------------

YAML_PIECES = ["robots:", "- ", "plugin: ", "ember_plugins.drone", "overrides: ", "robot: ", "{", "}", "[", "]", ", ",
               ": ", "\n", "  ", "&a ", "*a", "<<: ", "!!str ", "!!python/object:os.system ", "'", '"', "#", "---\n",
               "? ", "|\n", "payload_kg", "1e400", "-1", ".nan", "~", "2024-13-45", "\t", "\\e", "é", "\u2028", "\x00"]


@given(pieces=st.lists(st.sampled_from(YAML_PIECES) | st.text(max_size=8), max_size=40))
def test_random_yaml_text_loads_or_is_a_clear_error(pieces, tmp_path):
    path = tmp_path / "robots.yaml"
    path.write_text("".join(pieces), encoding="utf-8", errors="surrogatepass")
    _load(path)


@given(raw=st.binary(max_size=200))
def test_random_bytes_load_or_are_a_clear_error(raw, tmp_path):
    path = tmp_path / "robots.yaml"
    path.write_bytes(raw)
    _load(path)


SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10**300, max_value=10**320)
           | st.floats() | st.text(max_size=20) | st.sampled_from(BUILTIN + ["drone", "underwater", "aerial", ""]))
NESTED = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=10) | st.sampled_from(sorted(ENTRY_KEYS)), inner, max_size=4),
                      max_leaves=30)


@given(data=NESTED, wrap=st.booleans())
def test_random_nested_data_loads_or_is_a_clear_error(data, wrap, tmp_path):
    path = tmp_path / "robots.yaml"
    path.write_text(yaml.safe_dump({"robots": data} if wrap else data, allow_unicode=True), encoding="utf-8")
    _load(path)


# --- generated entries, overrides and cards --------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)  # controls, non-ASCII, RTL...
CARD_VALUES = (SCALARS | TEXT | st.lists(TEXT | SCALARS, max_size=4) | st.sampled_from([["underwater"], ["space"], []])
               | st.dictionaries(TEXT, SCALARS, max_size=2))
PLUGINS = st.sampled_from(BUILTIN + ["fuzz_card"]) | st.from_regex(r"zz_fuzz_[a-z0-9_]{0,8}(\.[a-z_]{1,5})?", fullmatch=True) \
    | TEXT.filter(lambda text: not text.isidentifier() or text.startswith("zz_")) \
    | st.builds(lambda size, sep: sep.join(["zz"] * size), st.integers(50, 3000), st.sampled_from([".", "", "_"]))
OVERRIDES = st.dictionaries(st.sampled_from(CARD_FIELDS) | TEXT | st.integers(), CARD_VALUES, max_size=4)
ENTRY = st.one_of(
    PLUGINS,
    st.fixed_dictionaries({"plugin": PLUGINS}, optional={"robot": SCALARS | TEXT, "overrides": OVERRIDES | CARD_VALUES}),
    st.dictionaries(st.sampled_from(sorted(ENTRY_KEYS)) | TEXT, CARD_VALUES, max_size=3),
)
FUZZ_CARD_PLUGIN = '''
import json
from pathlib import Path

from ember_core import RobotType, hookimpl


@hookimpl
def ember_robot_types():
    return [RobotType(**json.loads((Path(__file__).parent / "card.json").read_text(encoding="utf-8")))]
'''
GOOD_CARD = {"id": "fuzz_cart", "name": "Fuzz Cart", "description": "Cart.", "capabilities": ["carry"],
             "limitations": ["slow"], "environments": ["indoor"]}


# A first entry that names a real plugin, so its overrides and card are reached, then anything.
LIKELY_ENTRY = st.fixed_dictionaries({"plugin": st.sampled_from(BUILTIN + ["fuzz_card"] * 3)}, optional={"overrides": OVERRIDES})


@given(entries=st.tuples(LIKELY_ENTRY, st.lists(ENTRY, max_size=3)).map(lambda parts: [parts[0], *parts[1]]),
       card=st.fixed_dictionaries({}, optional={field: TEXT | CARD_VALUES for field in CARD_FIELDS}))
def test_random_entries_overrides_and_cards_load_or_are_clear_errors(entries, card, tmp_path):
    (tmp_path / "fuzz_card.py").write_text(FUZZ_CARD_PLUGIN, encoding="utf-8")
    (tmp_path / "card.json").write_text(json.dumps({**GOOD_CARD, **card}), encoding="utf-8")
    path = tmp_path / "robots.yaml"
    path.write_text(yaml.safe_dump({"robots": entries}, allow_unicode=True), encoding="utf-8")
    fleet = _load(path)
    if isinstance(fleet, Fleet):
        for robot in fleet:
            assert robot.id.isidentifier() and robot.id.isascii() and robot.id == robot.id.strip()
            assert not any(unicodedata.category(char) in ("Cc", "Cf") for char in robot.name + robot.description)


@given(robot_id=TEXT, name=TEXT)
def test_ids_and_names_with_control_and_non_ascii_characters(robot_id, name):
    try:
        robot = RobotType(**{**GOOD_CARD, "id": robot_id, "name": name})
    except ValueError as err:
        assert len(str(err)) <= MAX_MESSAGE_CHARS
        return
    assert robot.id == robot_id and robot_id.isascii() and robot_id.isidentifier() and robot_id.islower()
    assert robot.name == " ".join(robot.name.split())
    assert not any(unicodedata.category(char) in ("Cc", "Cf") for char in robot.name)


# --- generated answers of the feasibility hook -----------------------------------------------------

class _BadRepr:
    def __repr__(self):
        raise RuntimeError("repr")

    __str__ = __repr__


class _Boom(BaseException):
    pass


HUGE = "x" * 10_000_000
ANSWERS = st.one_of(
    st.none(), st.text(max_size=50), TEXT, st.integers(), st.integers(min_value=10**5000, max_value=10**5000 + 1),
    st.floats(), st.binary(max_size=30), st.booleans(), st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.tuples(st.text(max_size=5)),
    st.just(HUGE), st.just(" \n\t "), st.just("\x1b[31mred\x1b[0m"), st.builds(object), st.builds(_BadRepr),
)
RAISED = st.sampled_from([ValueError("bad"), RuntimeError("x" * 100_000), SystemExit(0), KeyError("k"), _Boom(),
                          GeneratorExit(), RecursionError(), TypeError(_BadRepr())])


class _Answering:
    """A plugin whose feasibility hook answers from a table, or raises."""

    def __init__(self, answers: dict[str, object], raised: BaseException | None):
        self.answers, self.raised = answers, raised

    @hookimpl
    def ember_robot_infeasible(self, robot, context):
        if self.raised is not None:
            raise self.raised
        return self.answers.get(robot.id)


class _Strict:
    """A well-behaved plugin that vetoes every robot: its answers must survive the others' misbehaviour."""

    @hookimpl
    def ember_robot_infeasible(self, robot, context):
        return f"site rule for {robot.id}"


@given(plugins=st.lists(st.tuples(st.dictionaries(st.sampled_from(["drone", "humanoid", "underwater_robot"]), ANSWERS),
                                  st.none() | RAISED), min_size=1, max_size=4),
       position=st.integers(0, 4), scene=st.sets(st.sampled_from(["underwater", "indoor", "aerial", "mars"])))
def test_any_hook_answer_gives_vetoes_and_never_an_exception(plugins, position, scene, fleet, caplog):
    manager = new_plugin_manager()
    bad = [_Answering(answers, raised) for answers, raised in plugins]
    for number, plugin in enumerate(bad[:position] + [_Strict()] + bad[position:]):
        manager.register(plugin, name=f"plugin_{number}")
    judged = Fleet(fleet.robots, manager)
    caplog.clear()  # one caplog for all the examples
    with caplog.at_level(logging.WARNING, logger="ember_core.fleet"):
        for _ in range(3):  # warnings are logged once per plugin and kind, not once per request
            vetoes = judged.infeasible(TaskContext(task="inspect", scene=frozenset(scene)))
            assert set(vetoes) == set(fleet.ids)
            for robot_id, reasons in vetoes.items():
                assert f"site rule for {robot_id}" in reasons
                assert all(type(r) is str and r and r.isprintable() and len(r) <= MAX_REASON_CHARS for r in reasons)
    assert len(caplog.records) == len(judged.hook_problems) <= 3 * len(bad)
    assert all(record.getMessage().startswith("plugin 'plugin_") for record in caplog.records)


def test_huge_ints_and_floats_in_cards_are_errors():
    for value in (10**400, math.inf, -0.5, math.nan, "3", True):
        with pytest.raises(ValueError, match="field 'payload_kg': expected a non-negative number or null"):
            RobotType(**GOOD_CARD, payload_kg=value)
