"""Fuzz a saved model directory and the device name: every file loads or is a clear error naming it.

The corpus in tests/data/fuzz/checkpoints/ (written by tools/make_fuzz_corpus_checkpoints.py) holds
the known-bad files of issue 12, each checked for its exact error through load_pretrained and
through `ember select --model` / `ember eval --model`. The properties feed generated config.json,
processor_config.json and fleet.json documents, generated model.safetensors bytes and device names;
the answer is a config, a fleet, a model or a torch.device, or a ValueError (FileNotFoundError for a
missing file) whose message names the file or field, never another exception. Properties that load a
model run fewer examples (see their @settings).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save

from conftest import REPO
from ember_core.cli import main
from ember_core.fleet import Fleet
from ember_core.model.config import EmberVLMConfig
from ember_core.model.loading import stored_names
from ember_core.model.vlm import EmberVLM
from ember_core.model.weights import SAFETENSORS_DTYPES
from ember_core.pretrained import available_devices, load_pretrained, resolve_device
from ember_core.processor import ProcessorConfig, saved_fleet

CORPUS = REPO / "tests" / "data" / "fuzz" / "checkpoints"
CASES = sorted(path.name for path in CORPUS.iterdir())
# A field error names the field; the other refusals name the document's shape.
CONFIG_ERROR = re.compile(r"^(field '[a-z_]+': |unknown EmberVLM config field\(s\) |expected a JSON object )")
MAX_MESSAGE_CHARS = 1200
# Each example that gets past the header builds a tiny model (~0.5 s): a fifth of the profile's examples
# (40 in CI, 1000 with --fuzz-long).
LOADING_EXAMPLES = max(25, settings.default.max_examples // 5)


def _corpus_tool():
    path = REPO / "tools" / "make_fuzz_corpus_checkpoints.py"
    spec = importlib.util.spec_from_file_location("make_fuzz_corpus_checkpoints", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _model_dir(base: Path, target: Path, replaced: dict[str, bytes]) -> Path:
    """A model directory at `target`: the files of `base` (linked, never written) with `replaced` written in."""
    target.mkdir(parents=True, exist_ok=True)
    for path in base.iterdir():
        if path.name not in replaced and not (target / path.name).exists():
            os.symlink(path, target / path.name)
    for name, content in replaced.items():
        if (target / name).is_symlink():
            (target / name).unlink()
        (target / name).write_bytes(content)
    return target


def _clear(err: BaseException, *named: str) -> None:
    """`err` is a ValueError/FileNotFoundError naming one of `named` in one short line."""
    assert isinstance(err, (ValueError, FileNotFoundError)), repr(err)
    message = str(err)
    assert any(name in message for name in named), message[:300]
    assert "\n" not in message and len(message) <= MAX_MESSAGE_CHARS, message[:300]




# --- the corpus of known-bad files ---------------------------------------------------------------

def test_corpus_is_what_the_tool_writes(tmp_path):
    written = _corpus_tool().write_corpus(tmp_path / "corpus")
    assert written == CASES
    for path in sorted((tmp_path / "corpus").rglob("*")):
        if path.is_file():
            committed = CORPUS / path.relative_to(tmp_path / "corpus")
            assert committed.read_bytes() == path.read_bytes(), \
                f"{committed} is stale: run tools/make_fuzz_corpus_checkpoints.py"
    assert sum(path.stat().st_size for path in CORPUS.rglob("*") if path.is_file()) < 256 * 1024


def _corpus_dir(case: str, base: Path, tmp_path: Path) -> tuple[Path, str]:
    expect = json.loads((CORPUS / case / "expect.json").read_text(encoding="utf-8"))
    directory = _model_dir(base, tmp_path / case, {expect["file"]: (CORPUS / case / expect["file"]).read_bytes()})
    return directory, expect["error"].replace("{dir}", str(directory))


@pytest.mark.parametrize("case", CASES)
def test_corpus_case_gets_its_exact_error(case, tiny_model_dir, tmp_path):
    directory, error = _corpus_dir(case, tiny_model_dir, tmp_path)
    with pytest.raises(ValueError) as caught:
        load_pretrained(directory)
    assert str(caught.value) == error


# The CLI reads the fleet from robots.yaml and never reads fleet.json, so those cases load there.
CLI_CASES = [case for case in CASES if not case.startswith("fleet_")]


@pytest.mark.parametrize("command", ["select", "eval"])
@pytest.mark.parametrize("case", CLI_CASES)
def test_the_cli_prints_one_error_line_for_each_bad_directory(case, command, tiny_model_dir, tmp_path, capsys):
    directory, error = _corpus_dir(case, tiny_model_dir, tmp_path)
    argv = [command, "--model", str(directory)]
    argv += ["--task", "Inspect the roof", "--device", "cpu", "--no-reasoning"] if command == "select" else []
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"ember: error: {' '.join(error.split())}"


def test_the_cli_refuses_a_device_this_machine_lacks(tiny_model_dir, capsys, monkeypatch):
    """Before: `--device bogus` was a RuntimeError traceback, `meta` loaded a model that could not run."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("bogus", "cuda:7", "meta"):
        assert main(["select", "--model", str(tiny_model_dir), "--task", "Inspect the roof", "--device", device]) != 0
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"ember: error: device '{device}' is not available on this machine; use auto or one of: cpu")


# --- generated config.json ---------------------------------------------------------------------

SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10**30, max_value=10**40)
           | st.floats() | st.text(max_size=12))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
NEAR = {  # values a hand edit might leave: the right type with a wrong value, or a near type
    int: st.integers(-3, 5000) | st.sampled_from([0, 1, 31, 32, 33, 64, 1024, 2**31, 10**12]) | st.floats(0, 100)
    | st.integers(1, 100).map(str) | st.booleans(),
    float: st.floats() | st.integers(-2, 2) | st.sampled_from([0.0, 1.0, -1e-9, 1e300]) | st.text(max_size=3),
    bool: st.booleans() | st.integers(0, 1) | st.sampled_from(["true", "false", None]),
    str: st.sampled_from(["", " ", "gpt2", "pretrained", "repvit_m0_9", "resnet", "minilm", "tiny"]) | st.none()
    | st.integers(),
    list: st.lists(st.sampled_from(["drone", "humanoid", "underwater", "aerial", "indoor", "moon", "Drone!", "", "a b"])
                   | st.integers(), max_size=6) | st.text(max_size=5) | st.none(),
}


def _near(value):
    kind = type(value) if value is not None else str
    return NEAR.get(kind, JSON)


@st.composite
def documents(draw, base: dict) -> dict:
    """`base` with up to three fields dropped, nudged or replaced by any JSON, and sometimes an extra field."""
    document = dict(base)
    for name in draw(st.lists(st.sampled_from(sorted(base)), max_size=3, unique=True)) if base else []:
        action = draw(st.sampled_from(["drop", "near", "near", "any"]))
        if action == "drop":
            del document[name]
        else:
            document[name] = draw(_near(base[name]) if action == "near" else JSON)
    if draw(st.integers(0, 9)) == 0:
        document.update(draw(st.dictionaries(st.text(max_size=8), JSON, min_size=1, max_size=1)))
    return document


def _mostly(documents: st.SearchStrategy) -> st.SearchStrategy:
    """Edited documents four times in five, any JSON value otherwise."""
    return st.integers(0, 4).flatmap(lambda roll: JSON if roll == 0 else documents)


def _tiny_json(tiny_model_dir: Path, name: str) -> dict:
    return json.loads((tiny_model_dir / name).read_text(encoding="utf-8"))


def test_the_shipped_and_tiny_configs_are_valid(tiny_model_dir):
    from ember_core.pretrained import DEFAULT_MODEL_DIR

    for directory in (DEFAULT_MODEL_DIR, tiny_model_dir):
        config = EmberVLMConfig.load(directory)
        assert EmberVLMConfig.from_dict(config.to_dict()) == config


@given(data=st.data())
def test_generated_config_documents_give_a_config_or_a_field_error(data, tiny_model_dir):
    document = data.draw(_mostly(documents(_tiny_json(tiny_model_dir, "config.json"))))
    try:
        config = EmberVLMConfig.from_dict(document)
    except ValueError as err:
        message = str(err)
        event(f"refused: {message.split(':')[0]}")
        assert CONFIG_ERROR.match(message), message[:300]
        assert len(message) <= MAX_MESSAGE_CHARS
        field = re.match(r"field '([a-z_]+)'", message)
        assert field is None or field.group(1) in {f.name for f in dataclasses.fields(EmberVLMConfig)}
        return
    event("accepted")
    assert EmberVLMConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.robot_ids and config.image_size % 32 == 0 and config.lm_hidden % config.lm_heads == 0
    assert config.lm_context >= config.image_tokens + config.max_reasoning_tokens + config.max_plan_tokens


@given(content=st.binary(max_size=200) | JSON.map(lambda value: json.dumps(value).encode()))
def test_generated_config_files_load_or_name_the_file(content, tmp_path):
    (tmp_path / "config.json").write_bytes(content)
    try:
        EmberVLMConfig.load(tmp_path)
    except ValueError as err:
        assert str(err).startswith(f"{tmp_path / 'config.json'}: "), str(err)[:300]


# --- generated processor_config.json and fleet.json ---------------------------------------------

@given(data=st.data())
def test_generated_processor_configs_load_or_name_the_file(data, tiny_model_dir, tmp_path):
    base = _tiny_json(tiny_model_dir, "processor_config.json")
    calibrations = st.fixed_dictionaries({**{key: st.just(value) for key, value in base.items()},
                                          "calibration": st.fixed_dictionaries({"scale": st.floats(), "margin": st.floats(),
                                                                                "bias": st.floats()})})
    document = data.draw(_mostly(documents(base) | calibrations))
    (tmp_path / "processor_config.json").write_text(json.dumps(document), encoding="utf-8")
    try:
        config = ProcessorConfig.load(tmp_path)
    except ValueError as err:
        _clear(err, f"{tmp_path / 'processor_config.json'}: ")
        event(f"refused: {str(err).split('(', 1)[-1][:22]}")
        return
    event("accepted")
    assert config.calibration.scale > 0 and config.calibration.margin >= 0
    for field in dataclasses.fields(ProcessorConfig):
        if field.type == "int":
            value = getattr(config, field.name)
            assert isinstance(value, int) and not isinstance(value, bool) and value >= 1, field.name


@st.composite
def fleet_records(draw, base: dict) -> dict:
    """The saved record with some cards nudged, reordered, duplicated or cut, `ids` matching, stale or left out."""
    cards = draw(st.permutations([draw(documents(card)) if draw(st.integers(0, 3)) == 0 else card
                                  for card in base["robots"]]))
    if draw(st.integers(0, 4)) == 0:
        cards.append(draw(st.sampled_from(cards)))
    if draw(st.integers(0, 4)) == 0:
        cards = cards[: draw(st.integers(0, len(cards)))]
    record = {key: value for key, value in base.items() if key not in ("ids", "robots")}
    record["robots"] = cards
    ids = draw(st.sampled_from(["matching", "matching", "saved", "none"]))
    if ids != "none":
        record["ids"] = [card.get("id") for card in cards] if ids == "matching" else base["ids"]
    return draw(documents(record)) if draw(st.integers(0, 4)) == 0 else record


@given(data=st.data())
def test_generated_fleet_records_load_or_name_the_file(data, tiny_model_dir, tmp_path):
    base = _tiny_json(tiny_model_dir, "fleet.json")
    base["robots"] = [{**card, "examples": card["examples"][:1]} for card in base["robots"]]
    record = data.draw(_mostly(fleet_records(base)))
    (tmp_path / "fleet.json").write_text(json.dumps(record), encoding="utf-8")
    try:
        fleet = saved_fleet(tmp_path)
    except ValueError as err:
        _clear(err, f"{tmp_path / 'fleet.json'}: ")
        event(f"refused: {str(err).split('(', 1)[-1][:22]}")
        return
    event("accepted")
    assert isinstance(fleet, Fleet) and len(set(fleet.ids)) == len(fleet)
    assert "ids" not in record or record["ids"] == fleet.ids


# --- generated model.safetensors ---------------------------------------------------------------

@pytest.fixture(scope="module")
def real_state(tiny_model_dir) -> dict[str, torch.Tensor]:
    return load_file(str(tiny_model_dir / "model.safetensors"))


DTYPES = {"F32": torch.float32, "F16": torch.float16, "I64": torch.int64, "BOOL": torch.bool, "U8": torch.uint8,
          "C64": torch.complex64, "F8_E4M3": torch.float8_e4m3fn}
assert set(DTYPES) - {"C64", "F8_E4M3"} <= set(SAFETENSORS_DTYPES)


@st.composite
def weights_files(draw, real: bytes, state: dict[str, torch.Tensor]) -> bytes:
    kind = draw(st.sampled_from(["random", "truncated", "flipped", "edited", "edited", "generated"]))
    event(f"kind: {kind}")
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "truncated":
        return real[: draw(st.integers(0, len(real) - 1))]
    if kind == "flipped":  # mostly in the header, where a flip changes names, shapes or offsets
        header_end = 8 + struct.unpack("<Q", real[:8])[0]
        data = bytearray(real)
        for _ in range(draw(st.integers(1, 3))):
            data[draw(st.integers(0, header_end - 1) | st.integers(0, len(real) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    names = sorted(state)
    if kind == "edited":  # the real tensors, some dropped, reshaped, recast or poisoned
        edited = dict(state)
        for name in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
            change = draw(st.sampled_from(["drop", "reshape", "recast", "nan", "rows"]))
            tensor = edited.pop(name)
            if change == "reshape":
                edited[name] = torch.zeros(draw(st.lists(st.integers(0, 4), max_size=3)))
            elif change == "recast":
                edited[name] = tensor.to(DTYPES[draw(st.sampled_from(sorted(DTYPES)))])
            elif change == "nan" and tensor.is_floating_point() and tensor.numel():
                edited[name] = tensor.clone().view(-1).index_fill(0, torch.tensor([0]), float("nan")).view(tensor.shape)
            elif change == "rows" and tensor.dim():
                edited[name] = torch.cat([tensor, tensor[:1]]) if draw(st.booleans()) else tensor[1:]
        return save({name: tensor.contiguous() for name, tensor in edited.items()})
    generated = draw(st.dictionaries(st.sampled_from(names) | st.text(min_size=1, max_size=8),
                                     st.tuples(st.lists(st.integers(0, 5), max_size=3), st.sampled_from(sorted(DTYPES))),
                                     max_size=6))
    return save({name: torch.zeros(shape, dtype=DTYPES[dtype]) for name, (shape, dtype) in generated.items()})


@settings(max_examples=LOADING_EXAMPLES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                                HealthCheck.data_too_large])
@given(data=st.data())
def test_generated_weights_give_a_model_or_an_error_naming_the_file(data, tiny_model_dir, real_state, tmp_path_factory):
    content = data.draw(weights_files((tiny_model_dir / "model.safetensors").read_bytes(), real_state))
    directory = _model_dir(tiny_model_dir, tmp_path_factory.mktemp("weights") / "model",
                           {"model.safetensors": content})
    try:
        model, processor = load_pretrained(directory)
    except (ValueError, FileNotFoundError) as err:
        _clear(err, str(directory / "model.safetensors"))
        event(f"refused: {str(err).split(': ', 1)[1][:24]}")
        return
    event("loaded")
    # Loaded: the file had every tensor the model stores, with the saved shapes (the vocabulary may have
    # been resized: those rows are re-initialised, as load_matching logs), and the model runs.
    held = load_file(str(directory / "model.safetensors"))
    for name in stored_names(model):
        assert name in held, name
        assert held[name].shape == real_state[name].shape or name == "language_model.transformer.wte.weight", name
    features = processor.features("Inspect the roof")
    with torch.no_grad():
        logits = model(**processor.collate([features]))["robot_logits"]
    assert logits.shape == (1, len(processor.fleet))


def test_a_checkpoint_without_robot_rows_loads_only_for_another_fleet(tiny_model_dir, real_state, tmp_path, fleet):
    """The rows a fleet remap re-initialises may be missing; for the checkpoint's own fleet they are required."""
    kept = {name: tensor for name, tensor in real_state.items() if not name.startswith("robot_head.mlp.6")}
    directory = _model_dir(tiny_model_dir, tmp_path / "model", {"model.safetensors": save(kept)})
    with pytest.raises(ValueError, match=r"model.safetensors: lacks 2 of the \d+ tensors .*'robot_head.mlp.6.weight'"):
        EmberVLM.from_pretrained(directory)
    model = EmberVLM.from_pretrained(directory, robot_ids=fleet.ids[::-1])
    assert model.config.robot_ids == fleet.ids[::-1]


# --- generated device names --------------------------------------------------------------------

DEVICE_NAMES = (st.text(max_size=12)
                | st.sampled_from(["auto", "cpu", "cpu:0", "cpu:1", "cuda", "cuda:0", "cuda:1", "cuda:7", "cuda:-1",
                                   "mps", "mps:0", "meta", "xla", "bogus", "CPU", " cpu", "cuda:", "cuda:0:0",
                                   "cuda:99999999999999999999", "cpu\x00", "cuda:١"])
                | st.builds(lambda kind, index: f"{kind}:{index}", st.sampled_from(["cpu", "cuda", "mps", "meta", "x"]),
                            st.integers(-2, 2**70))
                | st.none() | st.integers())


def _resolved(name) -> torch.device | None:
    try:
        device = resolve_device(name)
    except ValueError as err:
        message = str(err)
        assert message.endswith(f"use auto or one of: {', '.join(available_devices())}"), message[:300]
        return None
    assert isinstance(device, torch.device)
    assert device.type in {"cpu", "cuda", "mps"}
    return device


@given(name=DEVICE_NAMES)
def test_generated_device_names_give_a_device_or_a_list_of_this_machines(name):
    device = _resolved(name)
    if device is not None and name != "auto":
        assert str(device) == name or str(device) == name.split(":")[0]


@given(name=DEVICE_NAMES)
def test_on_a_machine_with_two_gpus_only_their_indices_resolve(name, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    device = _resolved(name)
    if device is not None and device.type == "cuda":
        assert device.index in (None, 0, 1)


def test_device_errors_list_what_this_machine_has(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("bogus", "cuda:7", "meta", "cuda"):
        with pytest.raises(ValueError, match=f"^device '{name}' is not available on this machine; use auto or one of: cpu"):
            resolve_device(name)
    assert resolve_device("auto") == resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda") and resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match="^device 'cuda:7' is not available on this machine; use auto or one of: "
                                         "cpu, cuda:0, cuda:1"):
        resolve_device("cuda:7")
