"""The new-robot encoder: the sentence encoder with its top layers tuned to tell robots apart by their cards.

A robot added to the fleet after training has no trained row: it is scored from its card alone
(`RobotHead.new_robot_logits`), by a classifier of the fleet's card phrases in a sentence space. In the
pretrained space a short card's robot is told from the others only so well (README, "The model"). This
encoder is the same all-MiniLM-L6-v2 with its top transformer layers tuned, by
`ember_train.new_robot_encoder`, so that each labelled job step lies nearest the card phrases of the robots
that can do it: the steps of the five default robots (ember_core/assets/part_clauses.jsonl) and those of 80
specialised robots of other kinds (robot_kind_cards.jsonl, robot_kind_steps.jsonl). It learns which words of
a request speak of a robot's capabilities, objects and places, which carries over to a robot it never saw
(measured with robots left out of the tuning; README). It runs only for a fleet with a new robot: it embeds the
tasks, the card phrases, the default robots' job steps (`ember_core.new_robot_steps`) and the training tasks (the
head's `new_robot_memory`) for the new robots' scores and every robot's card log-odds; the trained robots' MLP,
memory and card cosines keep the frozen encoder's.

The token embeddings and lower layers are the frozen encoder's own modules, shared and not stored; the
tuned layers are a safetensors file (the shipped one in ember_core/assets), outside the checkpoint like
the encoder itself, named by the config's `new_robot_encoder`.
"""
from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save

from ember_core.model.text_encoder import TextEncoder, mean_pooled
from ember_core.part_scorer import ASSETS

_LAYER = "encoder.layer."


class NewRobotEncoder(nn.Module):
    """`encoder` with its top `layers` transformer layers its own (copies until tuned or loaded); frozen unless
    `tunable` is called."""

    def __init__(self, encoder: TextEncoder, layers: int):
        super().__init__()
        blocks = encoder.model.encoder.layer
        if not 1 <= layers <= len(blocks):
            raise ValueError(f"a new-robot encoder tunes 1 to {len(blocks)} layers of its sentence encoder, got {layers}")
        model = copy.copy(encoder.model)  # a shallow copy: every module is the frozen encoder's ...
        model._modules = dict(model._modules)
        model.encoder = copy.copy(encoder.model.encoder)
        model.encoder._modules = dict(model.encoder._modules)
        model.encoder.layer = nn.ModuleList([*blocks[:len(blocks) - layers],  # ... but the top layers, copied
                                             *(copy.deepcopy(block) for block in blocks[len(blocks) - layers:])])
        self.model, self.first = model, len(blocks) - layers
        self.tuned = nn.ModuleList(model.encoder.layer[self.first:])
        for parameter in self.tuned.parameters():
            parameter.requires_grad_(False)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def train(self, mode: bool = True) -> NewRobotEncoder:
        super().train(mode)
        self.model.eval()  # the shared frozen modules never drop out; `tunable` turns the tuned ones on
        return self

    def tunable(self) -> list[nn.Parameter]:
        """The tuned layers' parameters, with gradients and dropout on (for `ember_train.new_robot_encoder`)."""
        self.tuned.train()
        for parameter in self.tuned.parameters():
            parameter.requires_grad_(True)
        return list(self.tuned.parameters())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pooled(hidden, attention_mask)

    def tuned_state(self) -> dict[str, torch.Tensor]:
        """The tuned layers' tensors by their name in the sentence encoder (`encoder.layer.<i>....`)."""
        return {f"{_LAYER}{self.first + index}.{name}": tensor.detach().cpu().contiguous()
                for index, block in enumerate(self.tuned) for name, tensor in block.state_dict().items()}

    def digest(self) -> str:
        """The sha256 of the tuned layers' tensors: the embeddings it makes depend on them and the frozen encoder."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.tuned_state().items()):
            digest.update(name.encode())
            digest.update(tensor.float().numpy().tobytes())
        return digest.hexdigest()

    def to_bytes(self, metadata: dict[str, str], dtype: torch.dtype = torch.float16) -> bytes:
        """The tuned layers as a safetensors file (fp16 by default, as the shipped one) with `metadata`."""
        return save({name: tensor.to(dtype) for name, tensor in self.tuned_state().items()}, metadata)


def new_robot_encoder_file(name: str) -> Path:
    """The tuned layers' file a config names: a path, or a bare file name in ember_core/assets."""
    path = Path(name)
    return path if path.is_absolute() or path.parent != Path(".") else ASSETS / name


def load_new_robot_encoder(encoder: TextEncoder, name: str) -> NewRobotEncoder:
    """The new-robot encoder whose tuned layers are in the file `name` (`new_robot_encoder_file`); ValueError
    naming the file when it does not fit `encoder`."""
    path = new_robot_encoder_file(name)
    try:
        with safe_open(str(path), framework="pt") as stored:
            state = {key: stored.get_tensor(key) for key in stored.keys()}
    except (OSError, ValueError) as err:  # noqa: B014 - a missing file raises FileNotFoundError, a bad one ValueError
        raise ValueError(f"{path}: cannot read the new-robot encoder's tuned layers ({err})") from None
    layers = {int(key[len(_LAYER):].split(".")[0]) for key in state if key.startswith(_LAYER)}
    blocks = len(encoder.model.encoder.layer)
    if not layers or layers != set(range(blocks - len(layers), blocks)) or len(state) != len(layers) * len(
            encoder.model.encoder.layer[-1].state_dict()):
        raise ValueError(f"{path}: not the top layers of this sentence encoder's {blocks} (found {len(state)} tensors "
                         f"of layers {sorted(layers)}); refit it with tools/fit_new_robot_encoder.py")
    model = NewRobotEncoder(encoder, len(layers))
    first = min(layers)
    for index, block in enumerate(model.tuned):
        prefix = f"{_LAYER}{first + index}."
        own = {name: state[prefix + name] for name in block.state_dict()}
        block.load_state_dict({name: tensor.to(block.state_dict()[name].dtype) for name, tensor in own.items()})
    return model
