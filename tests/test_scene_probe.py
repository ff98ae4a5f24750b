"""The scene head fitted as a probe: it learns the scene tags and leaves the robot scores untouched."""
from __future__ import annotations

import torch

from ember_core.model.config import preset
from ember_core.pretrained import build_model, load_pretrained, save_pretrained
from ember_core.request import SelectionRequest
from ember_core.scenes import render_scene
from ember_core.selector import Selector
from ember_train.data import TaskRecord
from ember_train.scene_probe import fit_scene_head

TRAIN = [TaskRecord(text, ("drone",)) for text in (
    "Survey the coral reef under the sea", "Inspect the hull of a sunken ship underwater", "Check the seabed cables",
    "Fly over the rooftop of the tower", "Photograph the wind turbine blades from the air", "Survey the skyscraper roof",
)]


def select(selector: Selector, task: str, image) -> dict:
    request = SelectionRequest(task, image, top_k=len(selector.fleet), return_reasoning=False)
    return selector.select(request).to_document()


def test_probe_learns_water_and_sky_and_keeps_the_robot_scores(fleet, tmp_path):
    torch.manual_seed(0)
    model, processor = build_model(preset("tiny"), fleet)
    scene = render_scene("Survey the coral reef under the sea", model.config.image_size)
    before = select(Selector((model, processor), fleet=fleet, device="cpu"), "Inspect the pipeline", scene)
    assert before["image"]["scene"] == []  # no scene head yet
    accuracy = fit_scene_head(model, processor, TRAIN, TRAIN, tags=("aerial", "underwater"), steps=300)
    assert accuracy["scene_underwater_accuracy"] == accuracy["scene_aerial_accuracy"] == 1.0
    reloaded = load_pretrained(save_pretrained(model, processor, tmp_path / "probed"), fleet=fleet)
    assert reloaded[0].config.scene_tags == ["aerial", "underwater"]
    assert torch.equal(reloaded[0].scene_head.weight, model.scene_head.weight)
    selector = Selector(reloaded, fleet=fleet, device="cpu", scene_vetoes=False)
    after = select(selector, "Inspect the pipeline", scene)
    assert [(c["robot_id"], round(c["confidence"], 5)) for c in after["candidates"]] == \
           [(c["robot_id"], round(c["confidence"], 5)) for c in before["candidates"]]
    selector.scene_vetoes = True
    assert select(selector, "Inspect the pipeline", scene)["image"]["scene"] == ["underwater"]
