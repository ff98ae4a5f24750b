"""Fitting the part scorer (ember_core.part_scorer) on the labelled steps, with a model's sentence encoder."""
from __future__ import annotations

import hashlib

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from ember_core.part_scorer import PART_CLAUSES_FILE, PartScorer
from ember_core.selector import Selector

# The L2 inverse strength, chosen on the development sets (benchmarks/part_scorer.py).
C = 16.0


def embed(selector: Selector, texts: list[str]) -> np.ndarray:
    """Unit sentence embeddings (T, D) of texts with the model's own encoder (torch backend)."""
    encoded = selector.processor.encode_tasks(texts, "pt")
    with torch.no_grad():
        embedding = selector.model.text_encoder(encoded["input_ids"], encoded["attention_mask"]).float().numpy()
    return embedding / np.linalg.norm(embedding, axis=1, keepdims=True)


def fit_part_scorer(selector: Selector, clauses: list[dict], c: float = C) -> PartScorer:
    """One logistic regression per robot of the selector's fleet on the clauses' embeddings."""
    embedding = embed(selector, [clause["clause"] for clause in clauses])
    weight, bias = [], []
    for robot in selector.fleet.ids:
        labels = np.array([robot in clause["robots"] for clause in clauses])
        regression = LogisticRegression(C=c, max_iter=2000).fit(embedding, labels)
        weight.append(regression.coef_[0])
        bias.append(regression.intercept_[0])
    digest = hashlib.sha256(PART_CLAUSES_FILE.read_bytes()).hexdigest()
    return PartScorer(selector.backend.config.text_encoder, tuple(selector.fleet.ids),
                      np.array(weight, dtype=np.float32), np.array(bias, dtype=np.float32), digest)
