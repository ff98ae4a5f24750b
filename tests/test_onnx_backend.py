"""The onnxruntime backend gives the torch backend's selection documents: the same ranking, robots, reasoning
and plan, confidences within CONFIDENCE_TOLERANCE. For the tiny model and one with a sentence encoder,
scene head and task memory, for a fleet with a robot the model was not trained on, and without torch."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO
from ember_core import load_fleet
from ember_core.cli import main
from ember_core.model.config import SHIPPED_NEW_ROBOT_ENCODER, preset
from ember_core.new_robot_steps import labelled_steps
from ember_core.pretrained import build_model, save_pretrained
from ember_core.request import SelectionRequest
from ember_core.scenes import render_scene
from ember_core.selection import validate_document
from ember_core.selector import Selector

# Both backends compute in fp32; what differs is the order of sums (the export's parity check sees ~1e-6).
CONFIDENCE_TOLERANCE = 1e-5
TASKS = [
    "Inspect the hull of a ship under water for cracks",
    "Survey a collapsed parking garage for cracks",
    "Carry boxes across the warehouse floor",
    "Photograph the roof of the stadium from above",
    "Map the flooded tunnel, then carry the pump to the basement",  # two parts: a team and a plan
]
SNAKE_FLEET = REPO / "tests" / "data" / "robots_with_snake.yaml"
PIPE_TASKS = ["Crawl through the narrow drain pipe to find the blockage", "Inspect the inside of a collapsed pipe"]


def requests(tasks: list[str], fleet_size: int) -> list[SelectionRequest]:
    """Each task without and with a camera image, scored alone; the first two also with reasoning."""
    scored = [SelectionRequest(task, image, top_k=fleet_size, return_reasoning=False)
              for task in tasks for image in (None, render_scene(task, 96))]
    explained = [SelectionRequest(task, image, top_k=fleet_size)
                 for task in tasks[:2] for image in (None, Image.new("RGB", (640, 480), (20, 90, 160)))]
    return scored + explained


def assert_same_documents(torch_selector: Selector, onnx_selector: Selector, batch: list[SelectionRequest]) -> None:
    for ours, theirs in zip(*([selection.to_document() for selection in selector.select_batch(batch)]
                              for selector in (torch_selector, onnx_selector))):
        validate_document(theirs)
        assert theirs["status"] == "ok"
        assert [c["robot_id"] for c in theirs["candidates"]] == [c["robot_id"] for c in ours["candidates"]]
        assert ([c.pop("confidence") for c in theirs["candidates"]]
                == pytest.approx([c.pop("confidence") for c in ours["candidates"]], abs=CONFIDENCE_TOLERANCE))
        assert theirs["model"]["name"] == f"{ours['model']['name']} (onnx)"
        assert theirs["model"]["sha"] == ours["model"]["sha"]  # the weights the graphs were exported from
        volatile = {"stamp", "latency_ms", "model"}
        assert {k: v for k, v in theirs.items() if k not in volatile} == {k: v for k, v in ours.items() if k not in volatile}


@pytest.fixture(scope="module")
def text_model_dir(tmp_path_factory):
    """A tiny model with the MiniLM sentence encoder, the shipped new-robot encoder, a scene head and a task memory
    with its robots (so the head's gate moves and its vote counts)."""
    from ember_train.task_memory import remember_tasks

    torch.manual_seed(1)
    model, processor = build_model(preset("tiny", text_encoder="minilm", new_robot_encoder=SHIPPED_NEW_ROBOT_ENCODER,
                                          scene_tags=["aerial", "underwater", "indoor", "outdoor"]), load_fleet())
    robots = np.array([[0, 1, 0, 0, 0], [1, 0, 0, 0, 1], [0, 0, 1, 1, 0]], dtype=np.float32)
    remember_tasks(model, processor, [TASKS[0], TASKS[2], "Deliver a parcel to the third floor"], robots)
    return save_pretrained(model, processor, tmp_path_factory.mktemp("tiny-text") / "model")


@pytest.fixture(scope="module")
def text_onnx_dir(text_model_dir, tmp_path_factory):
    from ember_train.onnx_export import write_export

    out = tmp_path_factory.mktemp("tiny-text-onnx") / "onnx"
    write_export(text_model_dir, out)
    return out


def test_both_backends_give_the_same_documents_for_the_tiny_model(tiny_model_dir, tiny_onnx_dir):
    fleet = load_fleet()
    assert_same_documents(Selector(tiny_model_dir, device="cpu"), Selector(tiny_onnx_dir), requests(TASKS, len(fleet)))


def test_both_backends_give_the_same_documents_with_a_sentence_encoder_and_scene_head(text_model_dir, text_onnx_dir):
    fleet = load_fleet()
    onnx_selector = Selector(text_onnx_dir, backend="onnx")
    assert onnx_selector.backend.model.text_encoder is not None
    assert_same_documents(Selector(text_model_dir, device="cpu"), onnx_selector, requests(TASKS, len(fleet)))


def test_the_onnx_head_gives_each_tasks_familiarity_as_torch_does(text_model_dir, text_onnx_dir):
    """The Selector adds the part scorer to the tasks unlike the remembered ones (ember_core.part_scorer.task_logits),
    so both backends must tell them apart alike."""
    selectors = Selector(text_model_dir, device="cpu"), Selector(text_onnx_dir, backend="onnx")
    batch = selectors[0].processor.collate([selectors[0].processor.features(task, return_tensors="np") for task in TASKS],
                                           return_tensors="np")
    torch_familiarity, onnx_familiarity = (selector.backend.forward(batch).familiarity for selector in selectors)
    np.testing.assert_allclose(onnx_familiarity, torch_familiarity, atol=1e-4)
    assert (torch_familiarity[[0, 2]] > 0.95).all() and (torch_familiarity < 0.5).any()
    parity = {check["name"]: check for check in json.loads((text_onnx_dir / "manifest.json").read_text())["parity"]}
    assert parity["robot head: familiarity, random states"]["passed"]  # the export checks it before writing


def test_a_robot_the_model_was_not_trained_on_is_scored_from_its_card_as_in_torch(text_model_dir, text_onnx_dir):
    fleet = load_fleet(SNAKE_FLEET)
    onnx_selector = Selector(text_onnx_dir, robots_file=SNAKE_FLEET)
    assert onnx_selector.backend.cards["robot_rows"].tolist() == [0, 1, 2, 3, 4, -1]
    assert onnx_selector.backend.new_robots  # scored with the export's new-robot encoder graph
    assert not Selector(text_onnx_dir, backend="onnx").backend.new_robots  # which a fleet without one leaves idle
    assert_same_documents(Selector(text_model_dir, robots_file=SNAKE_FLEET, device="cpu"), onnx_selector,
                          requests(PIPE_TASKS, len(fleet)))


def test_ember_select_runs_an_export_on_onnxruntime(capsys, tiny_onnx_dir):
    code = main(["select", "--model", str(tiny_onnx_dir), "--task", TASKS[0], "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0 and document["status"] == "ok" and document["model"]["name"].endswith("(onnx)")
    assert document["reasoning"]["reasoning_valid"]


def test_the_onnx_backend_selects_without_torch(tiny_onnx_dir):
    script = (
        "import json, sys\n"
        "sys.modules['torch'] = None  # any import of torch fails\n"
        "from PIL import Image\n"
        "from ember_core.request import SelectionRequest\n"
        "from ember_core.selector import Selector\n"
        "selector = Selector(sys.argv[1])\n"
        "request = SelectionRequest(sys.argv[2], Image.new('RGB', (64, 48), (0, 90, 200)))\n"
        "print(json.dumps(selector.select(request).to_document()))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script, str(tiny_onnx_dir), TASKS[0]], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout.splitlines()[-1])
    assert document["status"] == "ok" and document["reasoning"]["reasoning_valid"]


def test_card_embeddings_are_kept_between_runs_and_computed_again_when_their_file_is_damaged(
        text_onnx_dir, tmp_path, monkeypatch):
    from ember_core import onnx_backend
    from ember_core.onnx_backend import OnnxBackend

    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path))
    computed = []
    compute = OnnxBackend._card_embeddings
    monkeypatch.setattr(OnnxBackend, "_card_embeddings", lambda self, cards: computed.append(1) or compute(self, cards))
    fit, fitted = onnx_backend.fit_card_classifier, []
    monkeypatch.setattr(onnx_backend, "fit_card_classifier", lambda *args: fitted.append(1) or fit(*args))
    first = Selector(text_onnx_dir).backend.cards
    (stored,) = (tmp_path / "card_embeddings").iterdir()
    second = Selector(text_onnx_dir).backend.cards
    stored.write_bytes(b"half a file")
    third = Selector(text_onnx_dir).backend.cards
    assert computed == fitted == [1, 1]  # the second load read the file, classifier included; the third found it damaged
    assert {"card_classifier_weight", "card_classifier_bias"} <= first.keys()
    for cards in (second, third):
        assert cards.keys() == first.keys()
        assert all(np.array_equal(cards[name], first[name]) for name in first)
    backend = Selector(text_onnx_dir, robots_file=SNAKE_FLEET).backend  # another fleet: other card phrases, another file
    # ... and, for its new robot, the labelled job steps, kept under the new-robot encoder graph's sha256 alone
    assert computed == [1, 1, 1] and len(list((tmp_path / "card_embeddings").iterdir())) == 3
    monkeypatch.setattr(OnnxBackend, "_phrase_embeddings", lambda *args: pytest.fail("embedded again"))
    assert backend._labelled_step_embeddings().shape == (len(labelled_steps()), 384)  # whatever the fleet


def test_an_unwritable_cache_leaves_the_card_embeddings_computed_each_time(tiny_onnx_dir, tmp_path, monkeypatch):
    (tmp_path / "a file").write_text("")
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "a file" / "cache"))
    document = Selector(tiny_onnx_dir).select(SelectionRequest(TASKS[0], return_reasoning=False)).to_document()
    assert document["status"] == "ok"


def test_batches_start_after_the_cached_prompt_prefix_with_the_outputs_of_a_full_run(text_onnx_dir, monkeypatch):
    """Text only: after the whole prompt before the task; with images in the batch: after the fleet's cards."""
    selector = Selector(text_onnx_dir)
    backend, processor = selector.backend, selector.processor
    lengths = []
    language = backend.model.language
    monkeypatch.setattr(backend.model, "language",
                        lambda ids, *args, **kwargs: lengths.append(ids.shape[1]) or language(ids, *args, **kwargs))
    text_only = [None] * len(TASKS)
    some_images = [render_scene(task, 96) if row % 2 else None for row, task in enumerate(TASKS)]
    for images, prefix, cached in ((text_only, backend.text_prefix, processor.prompt_before_task_ids),
                                   (some_images, backend.image_prefix, processor.prompt_before_image_ids)):
        features = [processor.features(task, processor.pixels(image, "np"), "np") for task, image in zip(TASKS, images)]
        batch = processor.collate(features, return_tensors="np")
        reused = backend.forward(batch, use_cache=True)
        with monkeypatch.context() as full_run:
            full_run.setattr(prefix, "starts", lambda *args: False)
            full = backend.forward(batch, use_cache=True)
        prompt = batch["input_ids"].shape[1]
        assert lengths[-2:] == [prompt - len(cached), prompt]
        np.testing.assert_allclose(reused.robot_logits, full.robot_logits, rtol=0, atol=1e-6)
        for ours, theirs in zip(reused.cache.arrays, full.cache.arrays):
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


def test_a_model_that_reads_the_image_first_runs_its_whole_prompt_and_agrees_with_torch(
        tiny_model_dir, tiny_onnx_dir, tmp_path):
    """A model saved before the image could follow the cards: nothing before its image is cached (text-only
    requests still start after the prompt before the task, its no-image slots included)."""
    copies = []
    for source in (tiny_model_dir, tiny_onnx_dir):
        copy = shutil.copytree(source, tmp_path / source.name)
        config = json.loads((copy / "processor_config.json").read_text())
        del config["image_slots"]
        (copy / "processor_config.json").write_text(json.dumps(config))
        copies.append(copy)
    torch_selector, onnx_selector = Selector(copies[0], device="cpu"), Selector(copies[1])
    backend = onnx_selector.backend
    assert backend.image_prefix is None and onnx_selector.processor.config.image_slots == "before_cards"
    assert len(backend.text_prefix.ids) == len(onnx_selector.processor.prompt_before_task_ids)
    assert_same_documents(torch_selector, onnx_selector, requests(TASKS[:2], len(load_fleet())))


def test_recording_keeps_each_graphs_inputs_in_call_order_only_within_the_block(text_onnx_dir):
    selector = Selector(text_onnx_dir)
    graphs = selector.backend.model
    with graphs.recording() as recorded:
        selector.select(SelectionRequest(TASKS[0], render_scene(TASKS[0], 96), return_reasoning=False))
        selector.select(SelectionRequest(TASKS[2], return_reasoning=False))
    assert {graph: len(calls) for graph, calls in recorded.items()} == {
        "vision": 1, "language": 2, "text_encoder": 2, "robot_head": 2}
    processor = selector.processor
    for (task, image, cached), row in zip(((TASKS[0], True, processor.prompt_before_image_ids),
                                           (TASKS[2], False, processor.prompt_before_task_ids)), recorded["language"]):
        prompt = len(processor.features(task, return_tensors="np").input_ids)
        assert row["input_ids"].shape[1] == prompt - len(cached)  # each starts after its cached prefix
        assert bool(row["has_image"][0]) is image
    selector.select(SelectionRequest(TASKS[1], return_reasoning=False))
    assert graphs.recorded is None and len(recorded["language"]) == 2
