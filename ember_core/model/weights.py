"""Reading weight files without pickle: safetensors, or torch.load with weights_only=True."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors/.pth/.bin file, or from a directory holding one of WEIGHT_FILES."""
    path = Path(path)
    if path.is_dir():
        for name in WEIGHT_FILES:
            if (path / name).is_file():
                return load_state_dict_file(path / name)
        raise FileNotFoundError(f"{path}: no weights file; expected one of {', '.join(WEIGHT_FILES)}")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    # Training checkpoints often nest the weights one level down.
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return state
