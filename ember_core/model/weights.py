"""Reading weight files without pickle: safetensors (header checked first), or torch.load with weights_only=True."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from ember_core.excerpt import describe_error, excerpt

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Element types a model's tensors are saved in (float16 for the shipped model); others (complex, 4- and
# 8-bit floats, unsigned 16-64 bit) are not something Ember wrote, and some cannot be copied into a float.
SAFETENSORS_DTYPES = ("F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL")
# The first 8 bytes of a safetensors file give the length of its JSON header.
_HEADER_LENGTH_BYTES = 8


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as a safetensors header describes it."""

    shape: tuple[int, ...]
    dtype: str


def safetensors_header(path: str | Path) -> dict[str, TensorInfo]:
    """{name: shape and dtype} of every tensor in a .safetensors file, read from its header alone.

    FileNotFoundError when the file is missing; ValueError naming the file when it is empty, truncated,
    not safetensors (safetensors checks that the header's offsets cover the file exactly), or holds an
    element type Ember does not save.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    size = path.stat().st_size
    if size < _HEADER_LENGTH_BYTES:
        raise ValueError(f"{path}: {size} bytes, empty or truncated (a safetensors file starts with an "
                         f"{_HEADER_LENGTH_BYTES}-byte header length); re-save or re-copy the model")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = {}
            for name in handle.keys():
                tensor = handle.get_slice(name)
                header[name] = TensorInfo(tuple(tensor.get_shape()), tensor.get_dtype())
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path}: not a valid safetensors file, it may be truncated or corrupt "
                         f"({describe_error(err)}); re-save or re-copy the model") from None
    odd = {name: info.dtype for name, info in header.items() if info.dtype not in SAFETENSORS_DTYPES}
    if odd:
        name = sorted(odd)[0]
        raise ValueError(f"{path}: tensor {excerpt(name)} has element type {odd[name]}, which Ember does not save "
                         f"({len(odd)} such tensor(s)); expected one of {', '.join(SAFETENSORS_DTYPES)}")
    return header


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors/.pth/.bin file, or from a directory holding one of WEIGHT_FILES.

    FileNotFoundError or ValueError naming the file when it cannot be read as one.
    """
    path = Path(path)
    if path.is_dir():
        for name in WEIGHT_FILES:
            if (path / name).is_file():
                return load_state_dict_file(path / name)
        raise FileNotFoundError(f"{path}: no weights file; expected one of {', '.join(WEIGHT_FILES)}")
    if path.suffix == ".safetensors":
        safetensors_header(path)
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, RuntimeError) as err:
            raise ValueError(f"{path}: could not read its tensors ({describe_error(err)}); re-save or re-copy "
                             f"the model") from None
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a damaged zip/pickle raises any of a dozen types; all mean the same
        raise ValueError(f"{path}: not a readable PyTorch weights file ({describe_error(err)})") from None
    # Training checkpoints often nest the weights one level down.
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return state
