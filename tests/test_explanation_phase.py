"""Stage 3's explanation phase: only the explanation adapter learns, so every robot score stays as it was."""
from __future__ import annotations

import torch

from ember_core.model.config import preset
from ember_core.pretrained import build_model
from ember_core.relevance import PhraseRelevance
from ember_train.batches import SelectionDataset, collate, model_inputs
from ember_train.data import TaskRecord
from ember_train.explanation_phase import train_explanation

TEMPLATES = {"underwater_robot": "Inspect the hull of ship {i} under the sea", "drone": "Survey rooftop {i} from above",
             "robot_with_wheels": "Carry boxes to shelf {i} in the warehouse"}


def test_the_adapter_learns_the_choices_and_the_robot_scores_do_not_move(fleet, tmp_path):
    torch.manual_seed(0)
    model, processor = build_model(preset("tiny"), fleet)
    records = [TaskRecord(template.format(i=i), (robot,)) for robot, template in TEMPLATES.items() for i in range(4)]
    batch = collate([SelectionDataset(records, processor, with_reasoning=False)[i] for i in range(len(records))],
                    processor)
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not name.startswith("explanation_adapter")}
    trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    model.eval()
    with torch.no_grad():
        before = model(**model_inputs(batch, torch.device("cpu")))["robot_logits"]
    history = train_explanation(model, processor, records, records[:4], epochs=3, learning_rate=1e-2, batch_size=6,
                                image_dropout=0.0, seed=0, device=torch.device("cpu"), plot_path=tmp_path / "loss.png",
                                relevance=PhraseRelevance(model, processor).for_text)
    model.eval()
    with torch.no_grad():
        after = model(**model_inputs(batch, torch.device("cpu")))["robot_logits"]
    assert torch.equal(before, after)
    assert all(torch.equal(p, frozen[name]) for name, p in model.named_parameters() if name in frozen)
    assert model.explanation_adapter.mlp[2].weight.abs().sum() > 0  # it started at zero
    validation = [entry["val_loss"] for entry in history if "val_loss" in entry]
    assert len(validation) == 4 and validation[-1] < validation[0]
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert {name: p.requires_grad for name, p in model.named_parameters()} == trainable  # flags restored
