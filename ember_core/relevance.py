"""How relevant a card phrase is to a task: the cosine of their embeddings in the model's sentence space.

The explanation decoder adds this, times a learned weight, to its score of each card phrase it may
cite in Step 3 (`EmberVLM.token_scores`), so the facts it names follow the task, the way the robot
head's card scorer matches tasks to cards. A model without a sentence encoder scores every phrase 0
and its language model decides alone.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ember_core.model.structured import Relevance, no_relevance
from ember_core.processor import EmberProcessor

if TYPE_CHECKING:
    from ember_core.model.vlm import EmberVLM

MAX_CACHED_TEXTS = 4096
# Texts embedded at once, of similar length: one batch of thousands pads every text to the longest (3.5x the time
# for the part scorer's 6,973 steps).
EMBED_BATCH = 128


def embed_by_length(texts: Sequence[str], embed_batch: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """`embed_batch`'s embeddings (n, D) of texts (at least one), float32, EMBED_BATCH texts of similar length at a
    time."""
    order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
    parts = [embed_batch([texts[index] for index in order[start:start + EMBED_BATCH]])
             for start in range(0, len(order), EMBED_BATCH)]
    embeddings = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
    embeddings[order] = np.concatenate(parts)
    return embeddings


class PhraseRelevance:
    """Card-phrase (and training-task) embeddings, computed once per text, and their relevance to a task.

    `_embed_batch` runs the torch model; the onnxruntime backend overrides it with its sentence-encoder graph.
    """

    def __init__(self, model: EmberVLM, processor: EmberProcessor):
        self.model, self.processor = model, processor
        self._cache: dict[str, np.ndarray] = {}  # text -> its sentence embedding

    def embed(self, texts: Sequence[str]) -> np.ndarray | None:
        """Sentence embeddings (n, D) of texts, float32, None without a sentence encoder; EMBED_BATCH texts of
        similar length at a time."""
        if self.model.text_encoder is None or not texts:
            return None
        return embed_by_length([text.strip() for text in texts], self._embed_batch)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        """The sentence embeddings (n, D) of one batch of stripped texts."""
        import torch  # here only: the onnxruntime backend overrides this method and never loads torch

        inputs = self.processor.encode_tasks(texts)
        device = self.model.no_image.device
        with torch.no_grad():
            embeddings = self.model.task_embedding(inputs["input_ids"].to(device), inputs["attention_mask"].to(device))
        return embeddings.float().cpu().numpy()

    def for_task(self, task_embedding: Any) -> Relevance:
        """The relevance of phrases to the task whose embedding (D,) is given (all 0 for None)."""
        def relevance(phrases: Sequence[str]) -> dict[str, float]:
            embeddings = None if task_embedding is None else self._embeddings(phrases)
            if embeddings is None:
                return no_relevance(phrases)
            task = np.asarray(task_embedding, dtype=np.float32)
            return {phrase: float(embedding @ task) for phrase, embedding in zip(phrases, embeddings)}
        return relevance

    def for_text(self, task: str) -> Relevance:
        """The relevance of phrases to a task text, for training data (embeddings cached like the phrases')."""
        embedded = self._embeddings([task])
        return self.for_task(None if embedded is None else embedded[0])

    def _embeddings(self, texts: Sequence[str]) -> list[np.ndarray] | None:
        """The cached embeddings of texts, None without a sentence encoder."""
        missing = list(dict.fromkeys(text for text in texts if text not in self._cache))
        if missing:
            embedded = self.embed(missing)
            if embedded is None:
                return None
            if len(self._cache) + len(missing) > MAX_CACHED_TEXTS:
                self._cache.clear()
            self._cache.update(zip(missing, embedded))
        return [self._cache[text] for text in texts]
