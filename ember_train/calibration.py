"""Temperature scaling for the robot head: fit one temperature on held-out logits so sigmoid outputs are calibrated."""
from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

log = logging.getLogger("ember.calibration")

# Beyond these the fit is telling us the logits are degenerate, not miscalibrated: with separable
# labels the loss keeps falling as T -> 0 (every output pinned to 0 or 1), and with logits that carry
# no signal it keeps falling as T -> inf (every output flat at 0.5). A clamped, finite T keeps the
# Selector's confidences usable and round-trips through the checkpoint's JSON.
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, max_iter: int = 100) -> float:
    """One temperature T > 0 shared by all robots, minimising BCE(sigmoid(logits / T), targets).

    This is temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks")
    adapted from softmax to per-robot sigmoid outputs: a single scalar divides every logit, so the
    ranking of robots never changes, only how confident the probabilities are. LBFGS optimises
    log T, which keeps T positive without a constraint. T > 1 softens an over-confident head.

    `logits` and `targets` are (n, N) with targets in {0, 1}; the fit runs on CPU in float64.
    Empty input returns 1.0 (no change). The result is clamped to [MIN_TEMPERATURE, MAX_TEMPERATURE].
    """
    if logits.shape != targets.shape or logits.dim() != 2:
        raise ValueError(
            f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must both be (samples, robots)"
        )
    if logits.numel() == 0:
        return 1.0
    z = logits.detach().to("cpu", torch.float64)
    y = targets.detach().to("cpu", torch.float64)
    if not torch.isfinite(z).all():
        raise ValueError("logits contain NaN or inf; check the model outputs before calibrating")
    if not ((y == 0) | (y == 1)).all():
        raise ValueError("targets must hold only 0/1 (1 = robot suits the task)")

    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    bounds = (math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE))
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        # Clamping inside the loss stops exp() overflowing on degenerate data; the gradient is then 0
        # past the bound, so LBFGS stops there.
        temperature = log_t.clamp(*bounds).exp()
        loss = F.binary_cross_entropy_with_logits(z / temperature, y)
        loss.backward()
        return loss

    optimizer.step(closure)
    fitted = math.exp(log_t.item())
    temperature = min(max(fitted, MIN_TEMPERATURE), MAX_TEMPERATURE)
    if temperature != fitted:
        log.warning(
            "fitted temperature %.4g is outside [%g, %g]; using %g. The validation logits look degenerate "
            "(separable or uninformative); check the calibration split",
            fitted, MIN_TEMPERATURE, MAX_TEMPERATURE, temperature,
        )
    return float(temperature)
