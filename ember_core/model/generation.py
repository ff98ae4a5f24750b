"""Greedy decoding with a KV cache, continuing from a prompt the model has already encoded."""
from __future__ import annotations

from typing import Any, Collection

import torch
from transformers import PreTrainedModel


@torch.no_grad()
def greedy_continue(language_model: PreTrainedModel, past_key_values: Any, attention_mask: torch.Tensor,
                    start_ids: list[int], max_new_tokens: int, stop_ids: Collection[int]) -> tuple[list[int], Any, torch.Tensor]:
    """Feed `start_ids` after the cached prompt, then pick the most likely token until a stop id or the cap.

    Works on one sequence (batch of 1, no padding). Returns the generated ids (without the stop id),
    the extended cache and attention mask, so a later call can continue (reasoning, then plan).
    """
    generated: list[int] = []
    feed = torch.tensor([start_ids], dtype=torch.long, device=attention_mask.device)
    for _ in range(max_new_tokens):
        attention_mask = torch.cat([attention_mask, torch.ones_like(feed)], dim=1)
        output = language_model(input_ids=feed, attention_mask=attention_mask, past_key_values=past_key_values, use_cache=True)
        past_key_values = output.past_key_values
        next_id = int(output.logits[0, -1].argmax())
        if next_id in stop_ids:
            break
        generated.append(next_id)
        feed = torch.tensor([[next_id]], dtype=torch.long, device=attention_mask.device)
    return generated, past_key_values, attention_mask
