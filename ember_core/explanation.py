"""The four reasoning steps as a program: fixed text around slots whose content the model chooses.

One program serves training and inference. `explanation_program` yields fixed text (a `str`) and
slots, and receives each slot's content back:

- `Copy`: the task from its action verb on, copied word for word up to where the model ends it
  (Step 1 names what the task asks);
- `Choice`: one of a card's phrases (Step 3 names what a robot offers, or a limitation of the best
  robot that was not selected).

Everything else is fixed by the selection, not written by the language model: the step labels,
Step 2 (the scene tags the model's scene head sees in the camera image, or, without an image, the
scene words of the task text), the robot names of Step 3 and the decision of Step 4 (exactly the
selected robots, and the team in plan order). So the text always parses, Step 4 is faithful by
construction, and every fact of Step 3 is on the card of the robot it is attributed to; the model
decides which facts and which words of the task, and `parse_reasoning` checks the result anyway.
Training answers the slots by rule (its targets module); inference
(`ember_core.model.structured`) answers them with the language model, constrained to the slot.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generator, Sequence, Union

from ember_core.clauses import is_action_verb
from ember_core.fleet import Fleet
from ember_core.reasoning import LESS_SUITED, NO_FREE_ROBOT, NO_ROBOT_DECISION, OFFERS, STEP_LABELS, join_names
from ember_core.scenes import SCENE_WORDS, scene_tags

FACTS_PER_ROBOT = 2
MAX_COPY_WORDS = 20


@dataclass(frozen=True)
class Copy:
    """The start of `source`, whole words (at most MAX_COPY_WORDS), the model copies; the fixed text `then` follows it."""

    source: str
    then: str
    kind: str = "action"


@dataclass(frozen=True)
class Choice:
    """One of `options` (card phrases of `robot_id`, each with a leading space); the fixed text `then` follows it."""

    options: tuple[str, ...]
    then: str
    kind: str
    robot_id: str


Slot = Union[Copy, Choice]
Program = Generator[Union[str, Slot], str, None]


@dataclass(frozen=True)
class ExplanationContext:
    """What the explanation is about: the task, the fleet, the decision, and what the image showed.

    `scene` holds the scene tags seen in the camera image, None for a request without one. `team`
    holds the robots needed together in plan order (empty: any selected robot can do the job alone).
    `runner_up` is the best robot that was not selected and could have been, if any.
    """

    task: str
    fleet: Fleet
    selected: tuple[str, ...]
    team: tuple[str, ...] = ()
    scene: tuple[str, ...] | None = None
    runner_up: str | None = None


def step_prefix(number: int) -> str:
    return f"Step {number}: {STEP_LABELS[number - 1]}:"


def explanation_program(context: ExplanationContext) -> Program:
    """The reasoning text as fixed pieces and slots (see the module docstring); send each slot's content."""
    fleet = context.fleet
    yield f"{step_prefix(1)} the task asks to"
    yield Copy(source=copy_source(context.task), then=".")
    yield f"\n{step_prefix(2)} {environment_text(context)}\n{step_prefix(3)}"
    segments = [(robot_id, OFFERS, fact_options(fleet, robot_id), FACTS_PER_ROBOT)
                for robot_id in (context.team or context.selected)]
    if context.runner_up is not None:
        segments.append((context.runner_up, LESS_SUITED, limitation_options(fleet, context.runner_up), 1))
    segments = [segment for segment in segments if segment[2]]  # a card with nothing to say is left out
    if not segments:
        yield f" {NO_FREE_ROBOT}."
    for index, (robot_id, verb, pool, count) in enumerate(segments):
        yield f" {fleet.robot(robot_id).name} {verb}"
        chosen: list[str] = []
        count = min(count, len(pool))
        for number in range(count):
            then = "," if number < count - 1 else (";" if index < len(segments) - 1 else ".")
            options = tuple(option for option in pool if option not in chosen)
            chosen.append((yield Choice(options, then, "fact" if verb == OFFERS else "limitation", robot_id)))
    yield f"\n{step_prefix(4)} {step4_text(context)}"


def fact_options(fleet: Fleet, robot_id: str) -> tuple[str, ...]:
    """What Step 3 may say a robot offers: its card's capabilities and roles, each once, with a leading space."""
    robot = fleet.robot(robot_id)
    return _phrases((*robot.capabilities, *robot.roles))


def limitation_options(fleet: Fleet, robot_id: str) -> tuple[str, ...]:
    """What Step 3 may say holds a robot back: its card's limitations."""
    return _phrases(fleet.robot(robot_id).limitations)


def _phrases(phrases: Sequence[str]) -> tuple[str, ...]:
    """Card phrases as slot options; one with "," or ";" is left out: Step 3 separates facts and robots with them."""
    return tuple(dict.fromkeys(f" {phrase}" for phrase in phrases if not set(phrase) & {",", ";"}))


def copy_source(task: str) -> str:
    """What Step 1 copies from: the task from its first action verb (`ember_core.clauses.is_action_verb`;
    from its first word when it has none), with a leading space and the first letter lower case
    unless it starts an acronym. The model decides where the copy ends."""
    words = task.split()
    start = next((i for i, word in enumerate(words) if is_action_verb(word)), 0)
    text = " ".join(words[start:])
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        text = text[0].lower() + text[1:]
    return f" {text}"


def environment_text(context: ExplanationContext) -> str:
    """Step 2: what the camera image shows (the scene head's tags), or what the task text says without one."""
    if context.scene is not None:
        if not context.scene:
            return "the camera image shows no scene the model recognises."
        words = [SCENE_WORDS[tag] for tag in SCENE_WORDS if tag in context.scene]
        return f"the camera image shows work {join_names(words)}."
    words = [SCENE_WORDS[tag] for tag in SCENE_WORDS if tag in scene_tags(context.task)]
    if not words:
        return "no camera image; the task text does not say where the work happens."
    return f"no camera image; from the task text, the work happens {join_names(words)}."


def step4_text(context: ExplanationContext) -> str:
    """Step 4: exactly the selected robots, then the team in plan order when the job needs one."""
    if not context.selected:
        return f"Select {NO_ROBOT_DECISION}: every robot is busy, offline or ruled out."
    names = [context.fleet.robot(robot_id).name for robot_id in context.selected]
    text = f"Select {join_names(names)}."
    if context.team:
        order = ", then ".join(context.fleet.robot(robot_id).name for robot_id in context.team)
        text += f" They work as a team: {order}."
    return text


def run_program(context: ExplanationContext, fixed: Callable[[str], None], fill: Callable[[Slot], str]) -> None:
    """Run the program: `fixed(text)` for each fixed text (a slot's `then` included), `fill(slot)` answers each slot."""
    program = explanation_program(context)
    answer = None
    while True:
        try:
            item = program.send(answer) if answer is not None else next(program)
        except StopIteration:
            return
        answer = None
        if isinstance(item, str):
            fixed(item)
        else:
            answer = fill(item)
            if item.then:
                fixed(item.then)


def explanation_text(pieces: Sequence[tuple[str, bool]]) -> str:
    return "".join(text for text, _ in pieces)
