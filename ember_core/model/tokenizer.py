"""The tokenizer with Ember's 5 special tokens, and the check that the LM's embeddings cover it."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ember_core.excerpt import describe_error, excerpt
from ember_core.model.text_tokenizer import TextTokenizer, read_tokenizer

if TYPE_CHECKING:  # importing it loads transformers and torch; a tokenizer needs neither
    from transformers import PreTrainedModel

logger = logging.getLogger("ember.model")

REASONING_START = "<|reasoning_start|>"
REASONING_END = "<|reasoning_end|>"
SELECTION = "<|robot_selection|>"
ACTION_PLAN = "<|action_plan|>"
IMAGE = "<|image|>"
SPECIAL_TOKENS = (REASONING_START, REASONING_END, SELECTION, ACTION_PLAN, IMAGE)
# Built by tools/build_tokenizer.py: GPT-2-style byte-level BPE with 50257 tokens, shipped so that
# nothing is downloaded; with SPECIAL_TOKENS it has 50262.
DEFAULT_TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "assets" / "tokenizer"


def load_tokenizer(name_or_path: str | os.PathLike | None = None) -> TextTokenizer:
    """Load a tokenizer and give it Ember's special tokens and a pad token.

    None loads the packaged default; a directory is read as saved by `save_pretrained`; anything else
    is a Hugging Face hub name, which needs transformers and the files in the local cache or a network.
    Loading a tokenizer Ember saved (it already has the special tokens) adds nothing, so ids stay the same.
    """
    source = os.fspath(DEFAULT_TOKENIZER_DIR if name_or_path is None else name_or_path)
    try:
        tokenizer = read_tokenizer(source)
    except (OSError, ValueError) as err:
        # ValueError too: transformers raises it for a directory without usable files, and the hub
        # client for a path that does not exist (it is parsed as an invalid repo id).
        if os.path.isdir(source):
            problem = "this directory holds no tokenizer files Ember can load"
        else:
            problem = "it is not a directory, and loading it as a hub name failed"
        raise OSError(
            f"could not load a tokenizer from {source!r}: {problem} ({err}). Pass a directory written "
            f"by save_pretrained (tokenizer.json, tokenizer_config.json), or no name to use Ember's "
            f"packaged default."
        ) from err
    missing = [token for token in SPECIAL_TOKENS if token not in tokenizer.all_special_tokens]
    if missing:
        tokenizer.add_special_tokens(missing)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_saved_tokenizer(directory: Path) -> TextTokenizer:
    """The tokenizer saved in a model directory; ValueError naming its files unless it loads, has Ember's
    special tokens and an end-of-text token, and encodes prompt-like text."""
    try:
        tokenizer = load_tokenizer(directory)
        special_token_ids(tokenizer)
        if not isinstance(tokenizer.eos_token_id, int):
            raise ValueError(f"it has no end-of-text token (eos_token is {excerpt(tokenizer.eos_token)})")
        tokenizer(f"{IMAGE}Robots: Drone.\nTask: Inspect the roof\n{SELECTION}")
    except Exception as err:  # noqa: BLE001 - damaged tokenizer files raise OSError, KeyError, AttributeError...
        raise ValueError(f"{directory}: its tokenizer files (tokenizer.json, tokenizer_config.json) cannot be used "
                         f"({describe_error(err, limit=300)}); re-save the model") from None
    return tokenizer


def special_token_ids(tokenizer: Any) -> dict[str, int]:
    """{special token: id} for Ember's SPECIAL_TOKENS, in that order."""
    ids = {}
    for token in SPECIAL_TOKENS:
        token_id = tokenizer.convert_tokens_to_ids(token)
        # An unknown token maps to the unk id rather than failing, so check the id maps back.
        if token_id is None or tokenizer.convert_ids_to_tokens(token_id) != token:
            raise ValueError(
                f"the tokenizer has no {token!r} token; load it with "
                f"ember_core.model.tokenizer.load_tokenizer(), which adds Ember's special tokens"
            )
        ids[token] = token_id
    return ids


def validate_embeddings(
    language_model: PreTrainedModel, tokenizer: TextTokenizer, log: logging.Logger = logger
) -> None:
    """Make sure every token id the tokenizer can produce has a row in the LM's embeddings.

    A smaller embedding is resized to len(tokenizer): without that, the special token ids index past
    the table and CUDA fails with an opaque device-side assert mid-training. A larger one (e.g. a hub
    model padded to a multiple of 64) is left alone: the extra rows are never looked up.
    """
    required = len(tokenizer)
    current = language_model.get_input_embeddings().weight.shape[0]
    if current == required:
        log.info("✓ Embedding size matches tokenizer: %d tokens", required)
        return
    if current > required:
        log.warning(
            "⚠️ Embedding size %d is larger than the tokenizer (%d tokens); ids >= %d are unused, "
            "keeping the embedding as it is", current, required, required,
        )
        return
    in_use = [f"{token}={token_id}" for token, token_id in special_token_ids(tokenizer).items()]
    log.warning("⚠️ CRITICAL: Embedding size mismatch detected!")
    log.warning("   Current embedding size: %d", current)
    log.warning("   Required (tokenizer size): %d", required)
    log.warning("   Special tokens in use: %s", in_use)
    log.info("🔧 Resizing embeddings to match tokenizer...")
    language_model.resize_token_embeddings(required)
    log.info("✓ Resized embeddings via resize_token_embeddings()")
    sizes = {"input": language_model.get_input_embeddings().weight.shape[0]}
    output = language_model.get_output_embeddings()
    if output is not None:
        sizes["output"] = output.weight.shape[0]
    wrong = {name: size for name, size in sizes.items() if size != required}
    if wrong:
        raise RuntimeError(
            f"resizing the embeddings of {type(language_model).__name__} from {current} to {required} "
            f"tokens failed: after resize_token_embeddings the "
            f"{', '.join(f'{name} embedding has {size} rows' for name, size in wrong.items())}. "
            f"Resize the language model itself (not a wrapper around it) or load a checkpoint "
            f"saved with this tokenizer."
        )
    log.info("✅ Embedding resize successful: %d tokens", required)
