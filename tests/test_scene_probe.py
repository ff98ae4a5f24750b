"""The scene head fitted as a probe: it learns the scene tags and leaves the robot scores untouched."""
from __future__ import annotations

import torch

from ember_core.model.checkpoint import EmberModel
from ember_core.model.config import preset
from ember_core.selector import Selector
from ember_train.data import TaskRecord
from ember_train.scene_probe import fit_scene_head
from ember_train.scenes import render_scene

TRAIN = [TaskRecord(text, ("drone",)) for text in (
    "Survey the coral reef under the sea", "Inspect the hull of a sunken ship underwater", "Check the seabed cables",
    "Fly over the rooftop of the tower", "Photograph the wind turbine blades from the air", "Survey the skyscraper roof",
)]


def test_probe_learns_water_and_sky_and_keeps_the_robot_scores(fleet, tmp_path):
    torch.manual_seed(0)
    bundle = EmberModel.build(preset("tiny"), fleet)
    scene = render_scene("Survey the coral reef under the sea", bundle.model.config.image_size)
    before = Selector(bundle, fleet=fleet, device="cpu").select("Inspect the pipeline", scene, return_reasoning=False)
    accuracy = fit_scene_head(bundle, TRAIN, TRAIN, tags=("aerial", "underwater"), steps=300)
    assert accuracy["scene_underwater_accuracy"] == accuracy["scene_aerial_accuracy"] == 1.0
    reloaded = EmberModel.from_pretrained(bundle.save_pretrained(tmp_path / "probed"), fleet=fleet)
    assert reloaded.model.config.scene_tags == ["aerial", "underwater"]
    selector = Selector(reloaded, fleet=fleet, device="cpu", scene_vetoes=False)
    after = selector.select("Inspect the pipeline", scene, return_reasoning=False)
    assert [(c["robot_id"], round(c["confidence"], 5)) for c in after["candidates"]] == \
           [(c["robot_id"], round(c["confidence"], 5)) for c in before["candidates"]]
    selector.scene_vetoes = True
    assert selector.select("Inspect the pipeline", scene, return_reasoning=False)["image"]["scene"] == ["underwater"]
