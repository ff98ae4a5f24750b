"""Fitting the part scorer (ember_core.part_scorer) on the labelled steps, with a model's sentence encoder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from ember_core.part_scorer import PART_SOURCES, PartScorer, WordFeatures, read_sources, sources_digest
from ember_core.selector import Selector

# The L2 inverse strength and the word features' weight beside the unit embedding, chosen on the development
# sets (benchmarks/part_scorer.py).
C = 4.0
LEXICAL_WEIGHT = 2.0


def fit_part_scorer(selector: Selector, sources: tuple[Path, ...] = PART_SOURCES, c: float = C,
                    lexical_weight: float = LEXICAL_WEIGHT) -> PartScorer:
    """One logistic regression per robot of the selector's fleet on the embeddings of the clauses of `sources` and,
    weighed `lexical_weight` (0: embeddings only), their word features; a clause with no robot is a negative for
    every robot. The scorer records the digest of `sources`."""
    clauses = read_sources(sources)
    texts = [clause["clause"] for clause in clauses]
    embedding = selector.backend.relevance.embed(texts)  # the model's own sentence encoder, as for card phrases
    embedding = embedding / np.linalg.norm(embedding, axis=1, keepdims=True)
    words = WordFeatures.fit(texts)
    features = np.hstack([embedding, lexical_weight * words(texts)])
    weight, word_weight, bias = [], [], []
    for robot in selector.fleet.ids:
        labels = np.array([robot in clause["robots"] for clause in clauses])
        regression = LogisticRegression(C=c, max_iter=3000).fit(features, labels)
        weight.append(regression.coef_[0, :embedding.shape[1]])
        word_weight.append(lexical_weight * regression.coef_[0, embedding.shape[1]:])
        bias.append(regression.intercept_[0])
    return PartScorer(selector.backend.config.text_encoder, tuple(selector.fleet.ids),
                      np.array(weight, dtype=np.float32), words, np.array(word_weight, dtype=np.float32),
                      np.array(bias, dtype=np.float32), sources_digest(sources))

