"""The explanation program and its constrained decoder: every slot yields what it allows, whatever the scores."""
from __future__ import annotations

import pytest
import torch

from ember_core.explanation import MAX_COPY_WORDS, Choice, Copy, ExplanationContext, copy_source, fact_options
from ember_core.model.config import preset
from ember_core.model.structured import ExplanationTooLong, StructuredDecoder, no_relevance
from ember_core.pretrained import build_model
from ember_core.reasoning import parse_reasoning, step3_facts

TASK = "Please inspect the intake pipe of a flooded pump station for blockages, then report back."


@pytest.fixture(scope="module")
def processor(fleet):
    return build_model(preset("tiny"), fleet)[1]


def decode(processor, context, scores, room=10_000, max_tokens=1_000, relevance=None):
    """Decode with `scores(candidates)` standing in for the model; returns the walk and the text."""
    decoder = StructuredDecoder(processor.tokenizer, max_tokens)
    walk = decoder.decode(context, processor.decision_ids(list(context.selected)), lambda ids: torch.zeros(1),
                          lambda hidden, candidates, bias: scores(candidates, bias), room,
                          relevance or no_relevance)
    return walk, "".join(text for text, _ in walk.pieces)


CONTEXT_ARGS = dict(selected=("underwater_robot", "robot_with_legs"), scene=None, runner_up="drone")


@pytest.mark.parametrize("seed", range(6))
def test_any_scores_give_valid_reasoning_with_card_facts_and_a_copy_of_the_task(processor, fleet, seed):
    generator = torch.Generator().manual_seed(seed)
    walk, text = decode(processor, ExplanationContext(TASK, fleet, **CONTEXT_ARGS),
                        lambda candidates, bias: torch.rand(len(candidates), generator=generator))
    reasoning = parse_reasoning(text, fleet, ["underwater_robot", "robot_with_legs"])
    assert reasoning.valid, reasoning.problems
    assert reasoning.steps[0].startswith("Step 1: Task analysis: the task asks to inspect")
    copied = reasoning.steps[0].removeprefix("Step 1: Task analysis: the task asks to").rstrip(".")
    assert copy_source(TASK).startswith(copied) and len(copied.split()) <= MAX_COPY_WORDS
    assert copy_source(TASK)[len(copied):][:1] in ("", " ", ",")  # whole words only
    facts = step3_facts(reasoning.steps[2].split(":", 2)[2], fleet)
    assert [f.robot_id for f in facts] == ["underwater_robot", "underwater_robot", "robot_with_legs", "robot_with_legs",
                                           "drone"]
    assert all(f.on_card for f in facts) and facts[0].phrase != facts[1].phrase
    assert walk.points and walk.chosen_tokens > 0


def test_the_highest_scored_candidate_is_taken_and_relevance_reaches_the_scores(processor, fleet):
    context = ExplanationContext(TASK, fleet, selected=("underwater_robot",))
    # Scoring by relevance alone: the card phrase rated most relevant is the first fact.
    favourite = fact_options(fleet, "underwater_robot")[-1]
    walk, text = decode(processor, context, lambda candidates, bias: torch.tensor(bias),
                        relevance=lambda phrases: {p: float(p == favourite) for p in phrases})
    assert f"Underwater Robot offers{favourite}," in text
    # Always ending a slot where it may: Step 1 copies one word, each fact is its shortest option.
    _, short = decode(processor, context, lambda candidates, bias: torch.arange(len(candidates), dtype=torch.float))
    assert "the task asks to inspect." in short


def test_a_copy_never_runs_past_its_word_limit_and_the_token_budget_ends_slots(processor, fleet):
    long_task = "Inspect " + " ".join(f"pipe{i}" for i in range(40))
    context = ExplanationContext(long_task, fleet, selected=("drone",))
    never_end = lambda candidates, bias: torch.tensor([0.0] * (len(candidates) - 1) + [-1e9])  # noqa: E731
    _, text = decode(processor, context, never_end)
    copied = text.splitlines()[0].removeprefix("Step 1: Task analysis: the task asks to").rstrip(".").split()
    assert len(copied) == MAX_COPY_WORDS
    _, capped = decode(processor, context, never_end, max_tokens=1)
    assert capped.splitlines()[0] == "Step 1: Task analysis: the task asks to inspect."


def test_an_explanation_past_the_context_is_refused(processor, fleet):
    with pytest.raises(ExplanationTooLong, match="needs more than the 5 tokens"):
        decode(processor, ExplanationContext(TASK, fleet, selected=("drone",)),
               lambda candidates, bias: torch.zeros(len(candidates)), room=5)


def test_teacher_forcing_records_each_decision_and_refuses_an_unreachable_target(processor, fleet):
    decoder = StructuredDecoder(processor.tokenizer, 0)
    context = ExplanationContext(TASK, fleet, selected=("drone",))
    third = fact_options(fleet, "drone")[2]

    def answer(slot):
        if isinstance(slot, Copy):
            return " inspect the intake pipe"
        return third if third in slot.options else slot.options[0]

    walk = decoder.teacher_forced(context, processor.decision_ids(["drone"]), answer,
                                  no_relevance)
    assert "the task asks to inspect the intake pipe." in "".join(text for text, _ in walk.pieces)
    for point in walk.points:
        assert walk.ids[point.position + 1] == point.candidates[point.chosen]  # the slot's end is the next text's first token
    with pytest.raises(ValueError, match="cannot be decoded in this slot"):
        decoder.teacher_forced(context, processor.decision_ids(["drone"]),
                               lambda slot: " swim" if isinstance(slot, Choice) else " inspect",
                               no_relevance)
