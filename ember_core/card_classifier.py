"""The card classifier: a linear classifier of the fleet's robots fitted on their card phrases.

The card scorer's cosine to a robot's best phrases favours robots with many phrases: the more phrases a
card has, the likelier one of them is close to any task by chance, so a new robot with a short card
loses to an old one with dozens. The card classifier reads the same sentence embeddings but weighs each
robot's phrases as a whole: a multinomial logistic regression on the unit phrase embeddings, each
robot's phrases sharing one unit of weight whatever their number, with an L2 penalty (CARD_CLASSIFIER_L2,
chosen on the development sets; see README, "The model"). It is fitted wherever a fleet's cards are
embedded (a fleet of five robots: about 290 phrases, tens of milliseconds), so a robot added to
`robots.yaml` is in it with no training. It is plain numpy, so the torch-free runtime fits it too.

The robot head reads its log-odds, z_i - log sum_{j != i} exp(z_j) for the classifier's scores z, which is
the logit of robot i's softmax probability (`ember_core.model.heads`).
"""
from __future__ import annotations

import numpy as np

CARD_CLASSIFIER_L2 = 1e-3
# Nesterov's accelerated gradient descent on the strongly convex loss: 300 steps bring the default fleet's
# scores to within 1e-5 of the optimum (150 steps: 3e-3), in about 60 ms on one CPU core.
_STEPS = 300


def fit_card_classifier(embeddings: np.ndarray, owner: np.ndarray, num_robots: int,
                        l2: float = CARD_CLASSIFIER_L2) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's weight (num_robots, D) and bias (num_robots,), float32, for phrase embeddings (M, D)
    whose robots are `owner` (M,); a robot with no phrase gets a zero weight and the lowest bias."""
    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    owner = np.asarray(owner, dtype=np.int64)
    counts = np.bincount(owner, minlength=num_robots).astype(np.float64)
    sample_weight = 1.0 / counts[owner] / np.count_nonzero(counts)  # each robot's phrases weigh 1 in all
    targets = np.eye(num_robots)[owner]
    params = np.zeros((num_robots, x.shape[1] + 1))  # the weight and, in the last column, the bias
    features = np.hstack([x, np.ones((len(x), 1))])
    curvature = 0.5 * 2.0 + 2.0 * l2  # bound on the loss's curvature: |features|^2 = 2, softmax's 1/2
    ratio = np.sqrt(2.0 * l2 / curvature)  # sqrt(1 / condition number): Nesterov's momentum for strong convexity
    beta = (1.0 - ratio) / (1.0 + ratio)
    previous, momentum = params, params
    for _ in range(_STEPS):
        current = momentum - _gradient(momentum, features, targets, sample_weight, l2) / curvature
        momentum = current + beta * (current - previous)
        previous = current
    has_phrases = counts > 0
    weight = np.where(has_phrases[:, None], previous[:, :-1], 0.0)
    bias = np.where(has_phrases, previous[:, -1], previous[has_phrases, -1].min() - 10.0)
    return weight.astype(np.float32), bias.astype(np.float32)


def _gradient(params: np.ndarray, features: np.ndarray, targets: np.ndarray, sample_weight: np.ndarray,
              l2: float) -> np.ndarray:
    scores = features @ params.T
    scores -= scores.max(1, keepdims=True)
    probabilities = np.exp(scores)
    probabilities /= probabilities.sum(1, keepdims=True)
    penalty = 2.0 * l2 * params
    penalty[:, -1] = 0.0  # the bias is not penalised
    return ((probabilities - targets) * sample_weight[:, None]).T @ features + penalty
