"""Loading weights into an EmberVLM that may differ from the one saved: another fleet, other shapes.

`remap_robot_rows` lays a checkpoint's per-robot head rows out for another fleet by robot id;
`load_matching` loads every tensor whose name and shape match and logs the rest. `stored_state`
is what a checkpoint keeps (each tied tensor once, frozen pretrained parts left out);
`check_stored_tensors` holds a checkpoint's header to it before any tensor is read, so the tolerance
of `load_matching` (another fleet, a resized vocabulary) never turns a damaged file into a random model.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from ember_core.digest import file_sha256
from ember_core.excerpt import excerpt

log = logging.getLogger("ember.model")
# Tensors whose first dimension is one row per robot of the fleet.
ROBOT_ROWS = ("robot_head.mlp.6.weight", "robot_head.mlp.6.bias", "robot_head.known")
# The sentence embeddings of the training tasks (heads with a sentence encoder): one row per task.
TASK_MEMORY = "robot_head.task_memory"
# Which robots suit each remembered task: one row per task, one column per robot.
MEMORY_ROBOTS = "robot_head.memory_robots"
# The training tasks embedded by the new-robot encoder (heads with one): as many rows as TASK_MEMORY.
NEW_ROBOT_MEMORY = "robot_head.new_robot_memory"
# Tensors a checkpoint may lack: they keep an initialisation that leaves the model as it was without them
# (a memory saved without its robots does not vote).
OPTIONAL_PREFIXES = ("explanation_adapter.", MEMORY_ROBOTS)
# Names listed in an error message; the rest are counted.
_SHOWN = 5


def remap_robot_rows(state: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor],
                     saved_ids: list[str], ids: list[str]) -> dict[str, torch.Tensor]:
    """Lay the per-robot rows of a checkpoint out for another fleet, matching robots by id.

    A robot the checkpoint knows keeps its trained row at its new index; a new robot keeps the
    fresh initialisation and is marked unknown, so the head scores it from its card alone. The columns
    of the memory's robots move the same way (a new robot's is 0; the vote reaches known robots only).
    """
    added = [robot for robot in ids if robot not in saved_ids]
    removed = [robot for robot in saved_ids if robot not in ids]
    log.warning("Fleet differs from the checkpoint's: added %s, removed %s, order %s -> %s",
                added or "none", removed or "none", saved_ids, ids)
    if added:
        log.warning("New robot(s) %s are scored from their capability cards only until trained", added)
    state = dict(state)
    for key in ROBOT_ROWS:
        if key not in state:
            continue
        rows = fresh[key].clone()
        if key.endswith("known"):
            rows[:] = False
        state[key] = _by_id(state[key], rows, saved_ids, ids)
    if MEMORY_ROBOTS in state:  # the same robots, by column
        saved = state[MEMORY_ROBOTS]
        state[MEMORY_ROBOTS] = _by_id(saved.T, saved.new_zeros(len(ids), saved.shape[0]), saved_ids, ids).T
    return state


def _by_id(saved: torch.Tensor, rows: torch.Tensor, saved_ids: list[str], ids: list[str]) -> torch.Tensor:
    """`rows` (one per robot of `ids`) with each robot of `saved_ids` given its row of `saved`."""
    for new_index, robot in enumerate(ids):
        if robot in saved_ids:
            rows[new_index] = saved[saved_ids.index(robot)]
    return rows


def stored_names(model: torch.nn.Module) -> list[str]:
    """The names of the tensors a checkpoint keeps: each tied tensor once, frozen pretrained parts left out."""
    names, seen = [], set()
    for key, tensor in model.state_dict().items():
        if key.startswith(model.external_prefixes) or (tensor.numel() and tensor.data_ptr() in seen):
            continue
        seen.add(tensor.data_ptr())
        names.append(key)
    return names


def stored_state(model: torch.nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint keeps (see `stored_names`), on the CPU, floats in `dtype`."""
    own, stored = model.state_dict(), {}
    for key in stored_names(model):
        tensor = own[key].detach().cpu()
        stored[key] = (tensor.to(dtype) if tensor.is_floating_point() else tensor).contiguous()
    return stored


def check_stored_tensors(model: torch.nn.Module, header: dict[str, tuple[int, ...]], saved_ids: list[str]) -> None:
    """ValueError unless a checkpoint (`header`: name -> shape) has every tensor `model` stores, loadable.

    `saved_ids` are the robot ids of the checkpoint's head rows (its config.json). Tolerated, as
    `load_matching` and `remap_robot_rows` handle them: robot rows laid out for another fleet, an
    embedding with another number of tokens, tensors the model does not have, and the explanation
    adapter of a checkpoint saved before it existed (it then starts as the identity). Everything else (a
    missing tensor, another shape, robot rows that disagree with `saved_ids`) means the file is not
    a checkpoint of this config's model.
    """
    if not header:
        raise ValueError("holds no tensors; it is not a saved Ember model")
    own = model.state_dict()
    remapped = list(model.config.robot_ids) != list(saved_ids)
    needed = [name for name in stored_names(model) if not name.startswith(OPTIONAL_PREFIXES)]
    missing = [name for name in needed if name not in header and not (remapped and name in ROBOT_ROWS)]
    if missing:
        raise ValueError(f"lacks {len(missing)} of the {len(needed)} tensors config.json's model needs, e.g. "
                         f"{missing[:_SHOWN]}; it is not a checkpoint of this config (re-save the model)")
    vocabulary = _embedding_names(model, own)
    wrong = []
    for name, shape in header.items():
        if name not in own:
            continue  # load_matching logs and ignores it
        expected = tuple(own[name].shape)
        if name in ROBOT_ROWS:
            expected = (len(saved_ids), *expected[1:])
        elif name in (TASK_MEMORY, NEW_ROBOT_MEMORY) or name in vocabulary:  # any number of training tasks / tokens
            expected = (shape[0] if shape else -1, *expected[1:])
        elif name == MEMORY_ROBOTS:  # any number of training tasks, a column per robot of the checkpoint
            expected = (shape[0] if shape else -1, len(saved_ids))
        if tuple(shape) != expected:
            wrong.append(f"{name}: {excerpt(list(shape))}, expected {list(expected)}")
    if wrong:
        raise ValueError(f"has {len(wrong)} tensor(s) of shapes config.json's model cannot load, e.g. "
                         f"{wrong[:_SHOWN]}; the config (robot_ids, lm_*, head sizes) does not describe these weights")


def check_finite(state: dict[str, torch.Tensor]) -> None:
    """ValueError naming the first floating-point tensor that holds a NaN or an infinity."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"tensor {excerpt(name)} holds NaN or infinite values; the weights are damaged")


def _embedding_names(model: torch.nn.Module, own: dict[str, torch.Tensor]) -> set[str]:
    """State-dict names of the language model's token embeddings, whose rows follow the vocabulary."""
    language_model = getattr(model, "language_model", None)
    if language_model is None:
        return set()
    layers = [language_model.get_input_embeddings(), language_model.get_output_embeddings()]
    pointers = {layer.weight.data_ptr() for layer in layers if layer is not None}
    return {name for name, tensor in own.items() if tensor.numel() and tensor.data_ptr() in pointers}


def load_matching(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load every tensor whose name and shape match; log and skip the rest (they keep their init).

    Returns the names of the skipped tensors. Never raises on a shape mismatch, so a model whose
    head or vocabulary has another size still gets every part that fits.
    """
    own = model.state_dict()
    matching, mismatched = {}, []
    for key, tensor in state.items():
        if key in own and own[key].shape == tensor.shape:
            matching[key] = tensor
        elif key in own:
            mismatched.append(f"{key}: checkpoint {tensor.shape} vs model {own[key].shape}")
    if mismatched:
        log.warning("Skipped %d mismatched layer(s) - will be randomly initialized:", len(mismatched))
        for line in mismatched:
            log.warning("  - %s", line)
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        log.warning("Ignored %d tensor(s) the model does not have: %s", len(unexpected), unexpected[:5])
    result = model.load_state_dict(matching, strict=False)
    loaded = {own[key].data_ptr() for key in matching}
    skipped = {line.split(":")[0] for line in mismatched}
    # A tied tensor (stored once) counts as loaded under its other name too; frozen pretrained parts
    # are not stored at all and come from their own source.
    external = getattr(model, "external_prefixes", ())
    missing = [key for key in result.missing_keys
               if key not in skipped and own[key].data_ptr() not in loaded and not key.startswith(external)]
    optional = [key for key in missing if key.startswith(OPTIONAL_PREFIXES)]  # a checkpoint saved before them
    missing = [key for key in missing if key not in optional]
    if optional:
        log.info("%d optional tensor(s) not in the checkpoint start as if absent: %s", len(optional), optional[:5])
    if missing:
        log.warning("%d tensor(s) not in the checkpoint keep their initialisation: %s", len(missing), missing[:5])
    return [line.split(":")[0] for line in mismatched]


def file_sha(path: Path) -> str:
    """The first 16 hex digits of a file's sha256: names the weights a result came from."""
    return file_sha256(path)[:16]
