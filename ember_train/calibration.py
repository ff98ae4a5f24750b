"""Fitting the confidence calibration (ember_core.calibration) on held-out robot logits."""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ember_core.calibration import MAX_MARGIN, MAX_SCALE, MIN_SCALE, Calibration, lead_over_others

log = logging.getLogger("ember.calibration")

# A weak Gaussian prior on (log scale, margin, bias) around the raw sigmoid. With separable held-out
# labels the plain likelihood keeps rising as the confidences are pushed to 0 and 1; the prior keeps
# the fit finite, and with a few hundred (task, robot) pairs it is negligible.
PRIOR_STRENGTH = 1e-3


def fit_calibration(logits: Sequence[np.ndarray], targets: Sequence[np.ndarray], max_iter: int = 200) -> Calibration:
    """The Calibration minimising the binary cross-entropy of every (task, robot) confidence.

    `logits` and `targets` are lists of (tasks, robots) arrays, one pair per evaluation set; the sets
    may have different fleets (a sixth robot), because the formula only reads a robot's logit and its
    lead over the others. Targets are 0/1. All robots count, so the fit holds for the many confident
    negatives as well as for the top robot, whose confidence the margin term sets. LBFGS optimises
    (log scale, softplus^-1 margin, bias), which keeps scale > 0 and margin >= 0 (the ranking is kept).
    Empty input returns the identity calibration.
    """
    if len(logits) != len(targets):
        raise ValueError(f"got {len(logits)} logit arrays and {len(targets)} target arrays")
    z, lead, y = _pairs(logits, targets)
    if z.numel() == 0:
        return Calibration()
    log_scale = torch.zeros((), dtype=torch.float64, requires_grad=True)
    raw_margin = torch.tensor(-4.0, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    parameters = [log_scale, raw_margin, bias]
    optimizer = torch.optim.LBFGS(parameters, lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        scale = log_scale.clamp(np.log(MIN_SCALE), np.log(MAX_SCALE)).exp()
        margin = F.softplus(raw_margin).clamp(max=MAX_MARGIN)
        loss = F.binary_cross_entropy_with_logits(scale * z + margin * lead + bias, y)
        loss = loss + PRIOR_STRENGTH * (log_scale ** 2 + F.softplus(raw_margin) ** 2 + bias ** 2)
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        scale = float(log_scale.clamp(np.log(MIN_SCALE), np.log(MAX_SCALE)).exp())
        margin = float(F.softplus(raw_margin).clamp(max=MAX_MARGIN))
    calibration = Calibration(scale=scale, margin=margin, bias=float(bias.detach()))
    log.info("Calibration fitted on %d (task, robot) pairs: %s", z.numel(), calibration.describe())
    return calibration


def _pairs(logits: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> tuple[torch.Tensor, ...]:
    """Every (task, robot) pair's logit, lead over the others and target, flattened, float64."""
    zs, leads, ys = [], [], []
    for z, y in zip(logits, targets):
        z = torch.as_tensor(np.asarray(z), dtype=torch.float64)
        y = torch.as_tensor(np.asarray(y), dtype=torch.float64)
        if z.shape != y.shape or z.dim() != 2:
            raise ValueError(f"logits {tuple(z.shape)} and targets {tuple(y.shape)} must both be (tasks, robots)")
        if not torch.isfinite(z).all():
            raise ValueError("logits contain NaN or inf; check the model outputs before calibrating")
        if not ((y == 0) | (y == 1)).all():
            raise ValueError("targets must hold only 0/1 (1 = robot suits the task)")
        zs.append(z.flatten())
        leads.append(lead_over_others(z).flatten())
        ys.append(y.flatten())
    empty = torch.zeros(0, dtype=torch.float64)
    return (torch.cat(zs) if zs else empty, torch.cat(leads) if leads else empty, torch.cat(ys) if ys else empty)
