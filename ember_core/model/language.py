"""Language models: a GPT-2-style causal LM built from config, or any causal LM from a hub name or dir."""
from __future__ import annotations

from pathlib import Path

import torch.nn as nn
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, PreTrainedModel

from ember_core.model.registry import register_part


@register_part("language", "gpt2")
def gpt2(vocab_size: int, layers: int, hidden: int, heads: int, context: int,
         bos_token_id: int, eos_token_id: int, dropout: float = 0.1, **_: object) -> PreTrainedModel:
    """A randomly initialised GPT-2 ("tinyllm-30m" with the defaults: 6 layers, 384 wide, 6 heads); `dropout`
    applies to its embeddings, attention and residuals."""
    config = GPT2Config(
        vocab_size=vocab_size, n_positions=context, n_embd=hidden, n_layer=layers, n_head=heads,
        embd_pdrop=dropout, attn_pdrop=dropout, resid_pdrop=dropout,
        bos_token_id=bos_token_id, eos_token_id=eos_token_id,
    )
    return GPT2LMHeadModel(config)


@register_part("language", "pretrained")
def pretrained(name_or_path: str | None, **_: object) -> PreTrainedModel:
    """Any causal LM with its weights, e.g. a local copy of the reference implementation's `tinyllm/30M-0.4`."""
    if not name_or_path:
        raise ValueError("language_model 'pretrained' needs lm_name_or_path (a hub name or a local directory)")
    try:
        return AutoModelForCausalLM.from_pretrained(name_or_path)
    except OSError as err:
        where = "local directory" if Path(name_or_path).exists() else "hub name (needs a network or a cached copy)"
        raise ValueError(f"language model {name_or_path!r} ({where}) could not be loaded: {err}") from err


def hidden_size(model: nn.Module) -> int:
    return int(model.config.hidden_size)
