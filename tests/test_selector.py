"""The Selector contract and the `ember select` / `ember model info` commands, on a tiny saved model."""
from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
import torch
from PIL import Image

from ember_core import load_fleet
from ember_core.availability import parse_fleet_status
from ember_core.calibration import Calibration
from ember_core.cli import main
from ember_core.images import InvalidInputError
from ember_core.model.config import preset
from ember_core.model.vlm import EmberVLM
from ember_core.presentation import render_selection
from ember_core.pretrained import build_model, load_pretrained
from ember_core.reasoning import parse_reasoning
from ember_core.request import SelectionRequest
from ember_core.selection import validate_document
from ember_core.selector import Selector

TASK = "Survey a collapsed parking garage for cracks"


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir):
    return tiny_model_dir


def select(selector: Selector, task, image=None, **settings) -> dict:
    """The selection document of one request, checked against the shipped schema."""
    document = selector.select(SelectionRequest(task, image, **settings)).to_document()
    validate_document(document)
    return document


@pytest.fixture(scope="module")
def selector(model_dir) -> Selector:
    return Selector(model_dir, device="cpu")


@pytest.mark.parametrize("top_k", [1, 3, 5, 9])
def test_select_robots_is_sorted_bounded_and_respects_top_k(selector, top_k):
    candidates = selector.select_robots(None, TASK, top_k=top_k, return_reasoning=False)
    assert len(candidates) == min(top_k, 5)
    confidences = [c["confidence"] for c in candidates]
    assert confidences == sorted(confidences, reverse=True)
    assert all(0.0 <= c <= 1.0 for c in confidences)
    assert [c["rank"] for c in candidates] == list(range(1, len(candidates) + 1))
    assert {"robot_type", "robot_id", "confidence", "reasoning"} <= set(candidates[0])
    assert candidates[0]["selected"]


def test_select_document_is_schema_valid_with_reasoning_plan_and_latencies(selector):
    document = select(selector, TASK, top_k=5)
    assert document["status"] == "ok" and len(document["candidates"]) == 5
    assert sorted(c["robot_id"] for c in document["candidates"]) == sorted(load_fleet().ids)
    reasoning = document["reasoning"]
    # Even a random-init model writes sound steps: the format is fixed, the model only chooses within it.
    assert reasoning["reasoning_valid"] is True and reasoning["problems"] == []
    assert reasoning["decision"] == [c["robot_id"] for c in document["candidates"] if c["selected"]]
    assert document["team"] == [] and document["plan"] == {"text": "", "subtasks": [], "plan_valid": True, "problems": []}
    assert set(document["latency_ms"]) == {"preprocess", "model", "reasoning"} and document["latency_ms"]["reasoning"] > 0


def test_reasoning_is_chosen_by_the_model(selector, monkeypatch):
    """Same request twice gives the same text (greedy); the words in its slots are the model's choices."""
    first = select(selector, TASK, top_k=2)["reasoning"]["text"]
    assert first == select(selector, TASK, top_k=2)["reasoning"]["text"]
    assert select(selector, TASK, top_k=2, return_reasoning=False)["reasoning"] is None
    original = EmberVLM.token_scores
    monkeypatch.setattr(EmberVLM, "token_scores", lambda self, *args: -original(self, *args))  # the opposite choices
    flipped = select(selector, TASK, top_k=2)["reasoning"]
    assert flipped["reasoning_valid"] and flipped["text"] != first
    assert flipped["steps"][3] == first.splitlines()[3]  # the decision is the selection's, not the model's words


def test_the_prompt_runs_through_the_model_once_per_request_with_reasoning(selector, monkeypatch):
    """The reasoning continues from the KV cache of the scoring pass instead of encoding the prompt again."""
    calls = []
    original = EmberVLM.forward
    monkeypatch.setattr(EmberVLM, "forward", lambda self, *args, **kwargs: calls.append(1) or original(self, *args, **kwargs))
    explained = select(selector, TASK)
    assert calls == [1] and explained["reasoning"]["text"]
    scored = select(selector, TASK, return_reasoning=False)
    assert calls == [1, 1]
    assert [c["confidence"] for c in scored["candidates"]] == [c["confidence"] for c in explained["candidates"]]


def test_threshold_and_top_k_are_per_request_and_leave_the_selector_unchanged(selector):
    before = dict(vars(selector))
    everyone = select(selector, TASK, top_k=5, confidence_threshold=0.0, return_reasoning=False)
    only_best = select(selector, TASK, top_k=2, confidence_threshold=1.0, return_reasoning=False)
    assert [c["selected"] for c in everyone["candidates"]] == [True] * 5
    assert [c["selected"] for c in only_best["candidates"]] == [True, False] and only_best["top_k"] == 2
    assert vars(selector) == before


@pytest.mark.parametrize("settings, message", [
    ({"top_k": 0}, "top_k must be an integer from 1 to 256"),
    ({"top_k": True}, "top_k must be an integer from 1 to 256"),
    ({"top_k": 10**9}, "top_k must be an integer from 1 to 256"),
    ({"confidence_threshold": 1.5}, r"confidence_threshold must be a number in \[0, 1\]"),
    ({"confidence_threshold": "high"}, r"confidence_threshold must be a number in \[0, 1\]"),
])
def test_bad_request_settings_are_invalid_input(selector, settings, message):
    document = select(selector, TASK, **settings)
    assert document["status"] == "invalid_input" and re.search(message, document["errors"][0])


def test_image_inputs_pil_array_and_path_agree(selector, tmp_path):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "scene.png")
    results = [selector.select_robots(image, TASK, return_reasoning=False)
               for image in (Image.fromarray(array), array, str(tmp_path / "scene.png"))]
    assert results[0] == results[1] == results[2]
    text_only = selector.select_robots(None, TASK, return_reasoning=False)
    assert [c["confidence"] for c in text_only] != [c["confidence"] for c in results[0]]


def test_batch_call_matches_single_calls(selector):
    tasks = [TASK, "Clean the hull of a ship in the harbour", "Deliver medicine to the third floor"]
    requests = [SelectionRequest(task, top_k=5, return_reasoning=False) for task in tasks] + [SelectionRequest(" ")]
    *batched, bad = [selection.to_document() for selection in selector.select_batch(requests)]
    assert bad["status"] == "invalid_input"
    for task, document in zip(tasks, batched):
        single = select(selector, task, top_k=5, return_reasoning=False)
        assert [c["robot_id"] for c in document["candidates"]] == [c["robot_id"] for c in single["candidates"]]
        assert np.allclose([c["confidence"] for c in document["candidates"]],
                           [c["confidence"] for c in single["candidates"]], atol=1e-5)


def test_the_saved_calibration_is_applied(model_dir):
    model, processor = load_pretrained(model_dir)
    assert processor.config.calibration == Calibration()
    warm = Selector((model, processor), device="cpu").select_robots(None, TASK, return_reasoning=False)
    processor.config.calibration = Calibration(scale=0.01)
    flat = Selector((model, processor), device="cpu").select_robots(None, TASK, return_reasoning=False)
    logits = {c["robot_id"]: np.log(c["confidence"] / (1 - c["confidence"])) for c in warm}
    assert {c["robot_id"]: c["confidence"] for c in flat} == pytest.approx(
        {robot: 1 / (1 + np.exp(-logit / 100.0)) for robot, logit in logits.items()}, abs=1e-5)


BAD_INPUTS = {
    "empty task": ("   ", None, "task is empty"),
    "10 kB task": ("inspect " * 1300, None, "the limit is 2000"),
    "wrong array shape": (TASK, np.zeros((4, 4, 2), dtype=np.uint8), r"got shape \(4, 4, 2\)"),
    "float array": (TASK, np.zeros((4, 4, 3), dtype=np.float32), "must be uint8"),
    "missing image file": (TASK, "/no/such/image.png", "does not exist"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_in_select_robots_and_is_a_document_in_select(selector, case):
    task, image, message = BAD_INPUTS[case]
    with pytest.raises(InvalidInputError, match=message):
        selector.select_robots(image, task)
    document = select(selector, task, image)
    assert document["status"] == "invalid_input" and document["candidates"] == []
    assert re.search(message, document["errors"][0])


def test_corrupt_image_file_is_invalid_input(selector, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(InvalidInputError, match="broken.jpg is not a readable image"):
        selector.select_robots(str(tmp_path / "broken.jpg"), TASK)


def test_unknown_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an Ember model directory"):
        Selector(tmp_path / "nope", device="cpu")


def test_plugin_vetoes_rank_a_robot_last_with_its_reason(model_dir, write_plugin, write_robots, default_robots_lines):
    write_plugin("site_cart", '''
        from ember_core import RobotType, hookimpl

        @hookimpl
        def ember_robot_types():
            return [RobotType(id="cart", name="Cart", description="Site cart.", capabilities=["carry"],
                              limitations=["flat floors only"], environments=["indoor"])]

        @hookimpl
        def ember_robot_infeasible(robot, context):
            if robot.id == "drone" and "indoors" in context.task:
                return "drones are not allowed indoors at this site"
    ''')
    fleet = load_fleet(write_robots(default_robots_lines + ["  - plugin: site_cart"]))
    selector = Selector(model_dir, fleet=fleet, device="cpu")
    document = select(selector, "Move boxes indoors", top_k=6, return_reasoning=False)
    last = document["candidates"][-1]
    assert last["robot_id"] == "drone" and not last["selected"]
    assert last["infeasible"] == ["drones are not allowed indoors at this site"]
    outdoors = select(selector, "Move boxes outdoors", top_k=6, return_reasoning=False)
    assert all(not c["infeasible"] for c in outdoors["candidates"])


def test_cli_select_json_prints_a_valid_document_ranking_the_whole_fleet(model_dir, capsys):
    assert main(["select", "--task", TASK, "--json", "--model", str(model_dir), "--top-k", "5"]) == 0
    document = json.loads(capsys.readouterr().out)
    validate_document(document)
    assert len(document["candidates"]) == 5 and len(document["reasoning"]["steps"]) <= 4
    # The document reports exactly what the parser finds in the generated text, whatever it is.
    selected = [c["robot_id"] for c in document["candidates"] if c["selected"]]
    reparsed = parse_reasoning(document["reasoning"]["text"], load_fleet(), selected)
    assert document["reasoning"]["problems"] == reparsed.problems and document["reasoning"]["reasoning_valid"] == reparsed.valid
    assert document["plan"] is not None


def test_cli_select_table_and_no_reasoning(model_dir, capsys):
    assert main(["select", "--task", TASK, "--model", str(model_dir), "--no-reasoning", "--top-k", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Task: {TASK}") and "rank  robot" in out and "Reasoning" not in out


def test_cli_select_without_any_model_warns_that_output_is_meaningless(caplog, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("ember_core.pretrained.DEFAULT_MODEL_DIR", tmp_path / "not-installed")
    with caplog.at_level(logging.WARNING, logger="ember.model"):
        assert main(["select", "--task", TASK, "--no-reasoning", "--json"]) == 0
    assert "RANDOMLY INITIALISED" in caplog.text
    assert "random init" in json.loads(capsys.readouterr().out)["model"]["name"]


def test_cli_model_info_reports_the_default_size_by_part(capsys):
    assert main(["model", "info", "--preset", "embervlm-37m", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert 30e6 <= info["parameters"]["total"] <= 45e6
    assert set(info["parameters"]) == {"vision", "projector", "language_model", "explanation_adapter", "robot_head",
                                       "other", "total"}
    assert info["fleet"]["robots"][1] == "underwater_robot" and info["config"]["preset"] == "embervlm-37m"


def test_fleet_status_moves_busy_and_offline_robots_down_and_never_selects_them(selector):
    free = select(selector, TASK, return_reasoning=False)
    first, second, third = (free["candidates"][i]["robot_id"] for i in range(3))
    assert {c["availability"] for c in free["candidates"]} == {"unknown"}
    status = parse_fleet_status({"busy": [first], "offline": [second], "available": [third]}, selector.fleet)
    document = select(selector, TASK, top_k=5, return_reasoning=False, fleet_status=status, task_id="T-7")
    ranked = [(c["robot_id"], c["availability"], c["selected"]) for c in document["candidates"]]
    assert ranked[-2:] == [(first, "busy", False), (second, "offline", False)]
    assert ranked[0][2] is True and ranked[0][1] in ("available", "unknown")
    assert document["task_id"] == "T-7"
    table = render_selection(document)
    assert re.search(r"^4 .* no  \(busy\)$", table, re.M) and re.search(r"^5 .* no  \(offline\)$", table, re.M)


def test_fleet_status_with_every_robot_busy_selects_none(selector):
    status = parse_fleet_status({"busy": list(selector.fleet.ids)}, selector.fleet)
    document = select(selector, TASK, fleet_status=status)
    assert document["status"] == "ok" and not any(c["selected"] for c in document["candidates"])


@pytest.mark.parametrize("status, message", [
    (["drone"], "must be a JSON object"),
    ({"idle": ["drone"]}, r"unknown key\(s\) \['idle'\]"),
    ({"busy": "drone"}, "must be a list of robot ids"),
    ({"busy": ["drone"], "offline": ["drone"]}, "both busy and offline"),
])
def test_fleet_status_errors_name_the_problem(fleet, status, message):
    with pytest.raises(ValueError, match=message):
        parse_fleet_status(status, fleet)


def test_fleet_status_ignores_and_lists_robots_outside_the_fleet(fleet):
    status = parse_fleet_status({"busy": ["forklift_7", "drone"]}, fleet)
    assert status.ignored == ("forklift_7",) and status.of("drone") == "busy" and status.of("humanoid") == "unknown"


def test_rendered_table_clips_runaway_reasoning_lines_but_the_document_keeps_them(selector):
    document = select(selector, TASK)
    document["reasoning"]["steps"] = ["Step 1: Task analysis: " + "and " * 200]
    table = render_selection(document)
    assert max(len(line) for line in table.splitlines()) <= 242 and table.count("…") >= 1
    assert len(document["reasoning"]["steps"][0]) > 800


def test_scene_seen_in_the_image_reaches_the_plugins_feasibility_hooks(fleet):
    """A model whose scene head sees water in every image: the Drone's plugin rules it out, with the reason."""
    torch.manual_seed(0)
    config = preset("tiny")
    config.scene_tags = ["aerial", "underwater", "indoor", "outdoor"]
    model, processor = build_model(config, fleet)
    with torch.no_grad():
        model.scene_head.weight.zero_()
        model.scene_head.bias.copy_(torch.tensor([-5.0, 5.0, -5.0, -5.0]))
    selector = Selector((model, processor), fleet=fleet, device="cpu")
    document = select(selector, TASK, np.zeros((32, 32, 3), dtype=np.uint8), top_k=5, return_reasoning=False)
    assert document["image"]["scene"] == ["underwater"]
    assert "Image: frame '', age unknown, scene underwater" in render_selection(document)
    drone = next(c for c in document["candidates"] if c["robot_id"] == "drone")
    assert drone["infeasible"] == ["Drone cannot operate under water"] and not drone["selected"]
    vetoed = [c for c in document["candidates"] if c["infeasible"]]
    assert document["candidates"][-len(vetoed):] == vetoed and document["candidates"][0]["robot_id"] == "underwater_robot"
    text_only = select(selector, TASK, return_reasoning=False)
    assert text_only["image"] is None and not any(c["infeasible"] for c in text_only["candidates"])
    selector.scene_vetoes = False
    unused = select(selector, TASK, np.zeros((32, 32, 3), dtype=np.uint8), return_reasoning=False)
    assert unused["image"]["scene"] == [] and not any(c["infeasible"] for c in unused["candidates"])


def test_cards_are_embedded_when_the_selector_is_built(model_dir):
    """The first request must not pay for embedding every card phrase (the node's configure does)."""
    assert Selector(model_dir, device="cpu").model._card_cache is not None
