"""TextTokenizer: a tokenizer's files (tokenizer.json, tokenizer_config.json) read with the `tokenizers` library.

It is the one implementation Ember encodes and decodes text with, for training and for both backends,
and it needs neither torch nor transformers. It offers the part of transformers' tokenizer interface
Ember calls (`tokenizer(text)["input_ids"]`, `decode`, `convert_tokens_to_ids`, the special tokens,
`save_pretrained`) and gives transformers' ids: tests/test_tokenizer.py holds the two to the same ids.
Only a tokenizer named by hub name, or saved without tokenizer.json, is read with transformers and
converted (`read_tokenizer`); that is training with a hub model, where transformers is installed.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tokenizers import AddedToken, Tokenizer

from ember_core.extras import missing_extra
from ember_core.fields import read_json

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
NAMED_SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# Where tokenizer_config.json lists its other special tokens: transformers 5 writes the first, 4 the second.
EXTRA_SPECIAL_TOKENS = ("extra_special_tokens", "additional_special_tokens")


class TextTokenizer:
    """A `tokenizers.Tokenizer` (`backend`) and its tokenizer_config.json (`config`: the special tokens' names)."""

    def __init__(self, backend: Tokenizer, config: dict[str, Any]):
        # A saved tokenizer.json may carry the padding and truncation of the last call that wrote it; calls set their own.
        backend.no_padding()
        backend.no_truncation()
        self.backend, self.config = backend, config
        # Whether marker strings are special and where to cut are settings of the backend: one call at a time.
        self._lock = threading.Lock()

    @classmethod
    def from_directory(cls, directory: str | os.PathLike) -> TextTokenizer:
        """The tokenizer saved in `directory`; FileNotFoundError or ValueError naming the file that is not usable."""
        path = Path(directory) / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: file not found; re-save the model")
        try:
            backend = Tokenizer.from_file(str(path))
        except Exception as err:  # noqa: BLE001 - the tokenizers library raises a bare Exception for a damaged file
            raise ValueError(f"{path}: not a tokenizer the tokenizers library can read ({err}); re-save the model") from None
        return cls(backend, read_json(Path(directory) / TOKENIZER_CONFIG_FILE))

    # ---- special tokens ----------------------------------------------------------------------

    def _named(self, name: str) -> str | None:
        return _content(self.config.get(name))

    @property
    def bos_token(self) -> str | None:
        return self._named("bos_token")

    @property
    def eos_token(self) -> str | None:
        return self._named("eos_token")

    @property
    def unk_token(self) -> str | None:
        return self._named("unk_token")

    @property
    def pad_token(self) -> str | None:
        return self._named("pad_token")

    @pad_token.setter
    def pad_token(self, token: str) -> None:
        self.config["pad_token"] = token

    @property
    def bos_token_id(self) -> int | None:
        return self._id_of(self.bos_token)

    @property
    def eos_token_id(self) -> int | None:
        return self._id_of(self.eos_token)

    @property
    def pad_token_id(self) -> int | None:
        return self._id_of(self.pad_token)

    @property
    def all_special_tokens(self) -> list[str]:
        """The named special tokens (eos, pad, ...), then the others tokenizer_config.json lists, each once."""
        tokens = [self._named(name) for name in NAMED_SPECIAL_TOKENS]
        for key in EXTRA_SPECIAL_TOKENS:
            listed = self.config.get(key) or []
            tokens += [_content(token) for token in (listed.values() if isinstance(listed, dict) else listed)]
        return list(dict.fromkeys(token for token in tokens if token))

    def add_special_tokens(self, tokens: Sequence[str]) -> None:
        """Add `tokens` as special tokens (new ids at the end of the vocabulary, in order), as transformers does."""
        self.backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in tokens])
        listed = self.config.get("extra_special_tokens") or []
        self.config["extra_special_tokens"] = [*(listed.values() if isinstance(listed, dict) else listed), *tokens]

    def _id_of(self, token: str | None) -> int | None:
        return None if token is None else self.convert_tokens_to_ids(token)

    # ---- text <-> ids ------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __call__(self, text: str, add_special_tokens: bool = True, split_special_tokens: bool = False) -> dict[str, list[int]]:
        """{"input_ids", "attention_mask"} of one text. `split_special_tokens` reads marker strings in it as plain text."""
        ids = self.encode(text, add_special_tokens, split_special_tokens)
        return {"input_ids": ids, "attention_mask": [1] * len(ids)}

    def encode(self, text: str, add_special_tokens: bool = True, split_special_tokens: bool = False) -> list[int]:
        return self._encode([text], add_special_tokens, split_special_tokens)[0]

    def batch(self, texts: Sequence[str], split_special_tokens: bool = False,
              max_length: int | None = None) -> dict[str, np.ndarray]:
        """Ids of texts right-padded with the pad token to the longest, cut at `max_length` tokens (the
        tokenizer's own begin/end tokens kept): {"input_ids": (B, L) int64, "attention_mask": (B, L) int64}."""
        if self.pad_token_id is None:
            raise ValueError("this tokenizer has no pad_token to pad a batch with; set pad_token in its tokenizer_config.json")
        return pad_ids(self._encode(texts, True, split_special_tokens, max_length), self.pad_token_id)

    def _encode(self, texts: Sequence[str], add_special_tokens: bool, split_special_tokens: bool,
                max_length: int | None = None) -> list[list[int]]:
        with self._lock:
            self.backend.encode_special_tokens = split_special_tokens
            if max_length is None:
                self.backend.no_truncation()
            else:
                self.backend.enable_truncation(max_length)
            encodings = self.backend.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        return [encoding.ids for encoding in encodings]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self.backend.decode([int(token_id) for token_id in ids], skip_special_tokens=skip_special_tokens)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> Any:
        """The id of a token (the unknown token's id if it has none), or the ids of a list of tokens."""
        if isinstance(tokens, str):
            token_id = self.backend.token_to_id(tokens)
            return token_id if token_id is not None or self.unk_token is None else self.backend.token_to_id(self.unk_token)
        return [self.convert_tokens_to_ids(token) for token in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> Any:
        if isinstance(ids, int):
            return self.backend.id_to_token(ids)
        return [self.backend.id_to_token(int(token_id)) for token_id in ids]

    # ---- saving ------------------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write tokenizer.json and tokenizer_config.json into `directory` (created if missing); transformers reads them too."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self.backend.no_truncation()  # the last call's cut is saved with the file otherwise
            self.backend.save(str(directory / TOKENIZER_FILE))
        text = json.dumps(self.config, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        (directory / TOKENIZER_CONFIG_FILE).write_text(text, encoding="utf-8")


def read_tokenizer(source: str | os.PathLike) -> TextTokenizer:
    """The tokenizer in directory `source`; for a hub name, or a directory without tokenizer.json, the one
    transformers reads from it, converted. OSError (transformers missing or failing) or ValueError otherwise."""
    if (Path(source) / TOKENIZER_FILE).is_file():
        return TextTokenizer.from_directory(source)
    try:
        from transformers import AutoTokenizer  # only here: reading a hub name or files of another format
    except ModuleNotFoundError as err:
        needed_by = f"reading the tokenizer {os.fspath(source)!r} (a hub name, or files without {TOKENIZER_FILE})"
        raise missing_extra(err, needed_by) or err from None
    converted = AutoTokenizer.from_pretrained(os.fspath(source))
    with tempfile.TemporaryDirectory() as staging:
        converted.save_pretrained(staging)
        return TextTokenizer.from_directory(staging)


def pad_ids(rows: Sequence[Any], value: int) -> dict[str, np.ndarray]:
    """Right-pad 1-d id sequences to the longest: {"input_ids": (B, L) padded with `value`, "attention_mask": (B, L)}."""
    length = max((len(row) for row in rows), default=0)
    ids = np.full((len(rows), length), value, dtype=np.int64)
    mask = np.zeros((len(rows), length), dtype=np.int64)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = np.asarray(row)
        mask[index, : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def _content(token: Any) -> str | None:
    """A special token's text: transformers writes a string, or (version 4) an AddedToken record with its content."""
    return token.get("content") if isinstance(token, dict) else token
