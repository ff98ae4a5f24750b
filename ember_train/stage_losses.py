"""Stage 1 and 2 losses: image-text contrastive loss with a learned temperature, and next-token loss on labelled text.

Stage 1 adds the two (alignment: contrastive, plus captioning as next-token loss on the caption);
Stage 2 is next-token loss on the assistant's answers. Labels follow Hugging Face's convention:
`labels[t]` is the token at position t (-100: no loss there), and the logits at t predict t + 1.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ember_train.image_text import IGNORE_INDEX

# CLIP's initial temperature, and its bound: logits are scaled by at most 100.
INITIAL_TEMPERATURE = 0.07
MIN_TEMPERATURE = 0.01


class ContrastiveLoss(nn.Module):
    """Symmetric InfoNCE (CLIP) between the image and text embeddings of a batch, row i of each a matching pair.

    The temperature is learned: `log_temperature` is a parameter, so put this module's parameters in
    the optimizer. It is held at MIN_TEMPERATURE or above, as CLIP bounds its logit scale.
    """

    def __init__(self, temperature: float = INITIAL_TEMPERATURE):
        super().__init__()
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp().clamp(min=MIN_TEMPERATURE)

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """image (B, D) and text (B, D) embeddings -> the mean of the image-to-text and text-to-image cross-entropies."""
        image, text = F.normalize(image.float(), dim=-1), F.normalize(text.float(), dim=-1)
        logits = image @ text.T / self.temperature
        targets = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor,
                    reduction: Literal["mean", "sum"] = "mean") -> torch.Tensor:
    """Cross-entropy of logits (B, T, V) at each position against the label (B, T) of the next one, -100 ignored,
    averaged (or with "sum", added up) over the `target_tokens`."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX,
                           reduction=reduction)


def target_tokens(labels: torch.Tensor) -> torch.Tensor:
    """How many tokens of labels (B, T) `next_token_loss` scores: those after the first with a label (a float)."""
    return (labels[:, 1:] != IGNORE_INDEX).sum().float()


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """hidden (B, T, H) averaged over the positions where mask (B, T) is nonzero: a text's embedding (B, H)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
