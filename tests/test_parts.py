"""What each stage trains: the learning-rate multiplier of every part per stage (0 freezes it), for both
shipped presets; the optimizer holds exactly the trainable parameters; the README's table is the code's."""
from __future__ import annotations

import re

import pytest
import torch

from conftest import REPO
from ember_core.model.config import preset
from ember_core.pretrained import build_model
from ember_train.parts import PARTS, STAGE_PART_LR, apply_parts, part_modules, part_multipliers

LEARNING_RATE = 1e-3


@pytest.fixture(scope="module", params=["tiny", "embervlm-edge"])
def model(request, fleet):
    torch.manual_seed(0)
    return build_model(preset(request.param), fleet)[0]


def test_every_parameter_belongs_to_exactly_one_part(model):
    owners: dict[int, list[str]] = {}
    for part, members in part_modules(model).items():
        for member in members:
            for parameter in [member] if isinstance(member, torch.nn.Parameter) else member.parameters():
                owners.setdefault(id(parameter), []).append(part)
    assert {id(p) for p in model.parameters()} == set(owners)
    assert all(len(parts) == 1 for parts in owners.values())


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_a_stage_trains_the_parts_with_a_multiplier_and_freezes_the_rest(model, stage):
    groups, plans = apply_parts(model, part_multipliers(stage, None), LEARNING_RATE, 0.01)
    optimized = {id(p) for group in groups for p in group["params"]}
    assert optimized == {id(p) for p in model.parameters() if p.requires_grad}
    for group in groups:
        assert group["lr"] == pytest.approx(LEARNING_RATE * STAGE_PART_LR[stage][group["name"]])
    text_encoder_frozen = model.text_encoder is not None and model.text_encoder.frozen
    for plan in plans:
        trains = STAGE_PART_LR[stage][plan.part] > 0 and not (plan.part == "text_encoder" and text_encoder_frozen)
        assert plan.trainable == (plan.parameters if trains else 0), plan
        for member in part_modules(model)[plan.part]:
            parameters = [member] if isinstance(member, torch.nn.Parameter) else list(member.parameters())
            assert all(p.requires_grad == trains for p in parameters), plan.part
    assert model.vision.frozen == (STAGE_PART_LR[stage]["vision"] == 0)


def test_overrides_change_named_parts_and_a_frozen_text_encoder_stays_frozen(fleet, caplog):
    assert part_multipliers(3, "vision=0, head=20") == {**STAGE_PART_LR[3], "vision": 0.0, "head": 20.0}
    model = build_model(preset("embervlm-edge"), fleet)[0]
    _, plans = apply_parts(model, part_multipliers(3, "text_encoder=1"), LEARNING_RATE, 0.0)
    assert [plan.trainable for plan in plans if plan.part == "text_encoder"] == [0]
    assert "The model config freezes the text encoder" in caplog.text


@pytest.mark.parametrize("text, message", [("wings=1", "unknown part 'wings'"), ("head", "needs a number after '='"),
                                           ("head=-1", "a multiplier is 0 \\(frozen\\) or more")])
def test_a_bad_override_names_the_flag_and_the_problem(text, message):
    with pytest.raises(ValueError, match=f"--stage2_part_lr: .*{message}"):
        part_multipliers(2, text)


def test_the_readme_table_is_the_code_table():
    section = (REPO / "README.md").read_text(encoding="utf-8").split("<!-- table: stage parts -->", 1)[1]
    rows = re.findall(r"^\| `(\w+)` \| (.+?) \| (.+?) \| (.+?) \|", section.split("\n\n", 1)[0], re.M)
    assert {part: [float(value) for value in values] for part, *values in rows} == {
        part: [STAGE_PART_LR[stage][part] for stage in (1, 2, 3)] for part in PARTS}
