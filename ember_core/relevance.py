"""How relevant a card phrase is to a task: the cosine of their embeddings in the model's sentence space.

The explanation decoder adds this, times a learned weight, to its score of each card phrase it may
cite in Step 3 (`EmberVLM.token_scores`), so the facts it names follow the task, the way the robot
head's card scorer matches tasks to cards. A model without a sentence encoder scores every phrase 0
and its language model decides alone.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ember_core.model.structured import Relevance, no_relevance
from ember_core.model.vlm import EmberVLM
from ember_core.processor import EmberProcessor

MAX_CACHED_TEXTS = 4096


class PhraseRelevance:
    """Card-phrase (and training-task) embeddings, computed once per text, and their relevance to a task."""

    def __init__(self, model: EmberVLM, processor: EmberProcessor):
        self.model, self.processor = model, processor
        self._cache: dict[str, torch.Tensor] = {}  # text -> its sentence embedding

    @torch.no_grad()
    def embed(self, texts: Sequence[str]) -> torch.Tensor | None:
        """Sentence embeddings (n, D) of texts, None without a sentence encoder."""
        if self.model.text_encoder is None or not texts:
            return None
        inputs = self.processor.encode_tasks([text.strip() for text in texts])
        device = self.model.no_image.device
        return self.model.task_embedding(inputs["input_ids"].to(device), inputs["attention_mask"].to(device)).float()

    def for_task(self, task_embedding: torch.Tensor | None) -> Relevance:
        """The relevance of phrases to the task whose embedding (D,) is given (all 0 for None)."""
        def relevance(phrases: Sequence[str]) -> dict[str, float]:
            if task_embedding is None or self.model.text_encoder is None:
                return no_relevance(phrases)
            task = task_embedding.float()
            return {phrase: float(embedding @ task) for phrase, embedding in zip(phrases, self._embeddings(phrases))}
        return relevance

    def for_text(self, task: str) -> Relevance:
        """The relevance of phrases to a task text, for training data (embeddings cached like the phrases')."""
        return self.for_task(None if self.model.text_encoder is None else self._embeddings([task])[0])

    def _embeddings(self, texts: Sequence[str]) -> list[torch.Tensor]:
        missing = list(dict.fromkeys(text for text in texts if text not in self._cache))
        if missing:
            if len(self._cache) + len(missing) > MAX_CACHED_TEXTS:
                self._cache.clear()
            self._cache.update(zip(missing, self.embed(missing)))
        return [self._cache[text] for text in texts]
