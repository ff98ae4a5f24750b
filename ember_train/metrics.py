"""Robot-selection metrics for a multi-label fleet: top-1 accuracy, set overlap, per-robot P/R/F1, ECE, AP."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ember_core.processor import select_mask
from ember_core.request import DEFAULT_CONFIDENCE_THRESHOLD

ECE_BINS = 15
# Outcomes drawn at a time by the calibration check (`_drawn_bin_accuracy`).
_DRAW_CELLS = 1_000_000
PER_ROBOT_STATS = ("precision", "recall", "f1")
# The set-level metrics: what reports, bootstrap intervals and cross-validation summarise.
SUMMARY_KEYS = ("accuracy", "exact_set_accuracy", "multi_robot_iou", "macro_f1", "mean_average_precision",
                "expected_calibration_error", "robot_calibration_error")
# Printed after the per-robot block, in this order.
SET_LEVEL_KEYS = ("expected_calibration_error", "robot_calibration_error", "multi_robot_iou", "exact_set_accuracy",
                  "mean_average_precision")


def metric_key(name: str) -> str:
    """The metric-name form of a robot display name: spaces become underscores ("Underwater Robot" -> "Underwater_Robot")."""
    return name.replace(" ", "_")


def _check_probs(probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must have shape (samples, robots), got shape {probs.shape}")
    if not np.all(np.isfinite(probs)) or probs.min(initial=0.0) < 0.0 or probs.max(initial=0.0) > 1.0:
        raise ValueError("probs must be finite probabilities in [0, 1]; pass sigmoid(logits), not raw logits")
    return probs


def _check_inputs(probs: np.ndarray, targets: np.ndarray, names: Sequence[str] | None = None):
    probs = _check_probs(probs)
    targets = np.asarray(targets)
    if targets.shape != probs.shape:
        raise ValueError(f"targets shape {targets.shape} does not match probs shape {probs.shape}")
    if not np.isin(targets, (0, 1)).all():
        raise ValueError("targets must hold only 0/1 (one column per robot, 1 = robot suits the task)")
    gold = targets.astype(bool)
    empty = np.flatnonzero(~gold.any(axis=1))
    if empty.size:
        raise ValueError(
            f"targets rows {empty[:10].tolist()} have no suitable robot; every task needs at least one gold robot"
        )
    if names is not None:
        if len(names) != probs.shape[1]:
            raise ValueError(f"got {len(names)} robot names for {probs.shape[1]} probability columns; pass the fleet's names")
        keys = [metric_key(n) for n in names]
        if len(set(keys)) != len(keys):
            raise ValueError(f"robot names {list(names)} collide once spaces become underscores; rename one")
    return probs, gold


def predicted_sets(probs: np.ndarray, threshold: float = DEFAULT_CONFIDENCE_THRESHOLD) -> np.ndarray:
    """Boolean (n, N) mask of the robots selected per task, by the Selector's rule (`select_mask`):
    the top-1 robot, plus every robot with p >= threshold, so a predicted set is never empty."""
    return select_mask(_check_probs(probs), threshold)


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin statistics of equal-width confidence bins over [0, 1]; empty bins hold 0 accuracy and confidence."""

    edges: np.ndarray  # (bins + 1,)
    counts: np.ndarray  # (bins,) samples per bin
    accuracy: np.ndarray  # (bins,) fraction correct per bin
    confidence: np.ndarray  # (bins,) mean confidence per bin


def reliability_bins(confidences: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> ReliabilityBins:
    """Bin confidences into `bins` equal-width bins [lo, hi); a confidence of exactly 1.0 goes in the last bin."""
    conf = np.asarray(confidences, dtype=np.float64).ravel()
    hit = np.asarray(correct, dtype=np.float64).ravel()
    if conf.shape != hit.shape:
        raise ValueError(f"confidences ({conf.size}) and correct ({hit.size}) must have the same length")
    if not np.all(np.isfinite(conf)) or conf.min(initial=0.0) < 0.0 or conf.max(initial=0.0) > 1.0:
        raise ValueError("confidences must be finite and in [0, 1]")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    index = _bin_index(conf, bins)
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    seen = counts > 0
    accuracy = np.zeros(bins)
    confidence = np.zeros(bins)
    accuracy[seen] = np.bincount(index, weights=hit, minlength=bins)[seen] / counts[seen]
    confidence[seen] = np.bincount(index, weights=conf, minlength=bins)[seen] / counts[seen]
    return ReliabilityBins(np.linspace(0.0, 1.0, bins + 1), counts, accuracy, confidence)


def _bin_index(confidences: np.ndarray, bins: int) -> np.ndarray:
    """Each confidence's equal-width bin; 1.0 goes in the last one."""
    return np.minimum((confidences * bins).astype(np.int64), bins - 1)


def expected_calibration_error(confidences: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE = sum over equal-width bins of |bin| / n * |accuracy(bin) - mean confidence(bin)|.

    Confidence 0.0 falls in the first bin and 1.0 in the last. No samples gives 0.0 (nothing is
    miscalibrated), so an empty evaluation split does not crash a training loop.
    """
    rb = reliability_bins(confidences, correct, bins)
    total = rb.counts.sum()
    if total == 0:
        return 0.0
    return float(np.sum(rb.counts / total * np.abs(rb.accuracy - rb.confidence)))


@dataclass(frozen=True)
class CalibrationCheck:
    """An ECE beside the ECEs a calibrated model with the same confidences shows (`calibration_check`)."""

    observed: float  # the ECE of the confidences against the outcomes
    if_calibrated: float  # mean ECE over draws of outcomes that are right with probability = confidence
    upper: float  # 95th percentile of those
    p_value: float  # share of those at least as large as `observed`
    draws: int

    def describe(self) -> str:
        return (f"{self.observed:.3f} (a calibrated model with these confidences: {self.if_calibrated:.3f} on average, "
                f"up to {self.upper:.3f} in 95% of {self.draws} draws; p = {self.p_value:.2f})")


def calibration_check(confidences: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS, draws: int = 1000,
                      seed: int = 0) -> CalibrationCheck:
    """Consistency resampling (Broecker and Smith, 2007): how large the ECE of `confidences` is when each
    outcome is drawn right with probability equal to its confidence, the ECE of a perfectly calibrated model
    with the same confidences. On a few dozen tasks that ECE is far above 0 (equal-width bins with a handful
    of tasks each); a small p-value says the observed ECE is more than sampling noise."""
    observed = expected_calibration_error(confidences, correct, bins)
    rb = reliability_bins(confidences, np.zeros(np.size(confidences)), bins)
    if rb.counts.sum() == 0:
        return CalibrationCheck(observed, 0.0, 0.0, 1.0, draws)
    errors = np.abs(_drawn_bin_accuracy(confidences, bins, draws, seed) - rb.confidence) @ (rb.counts / rb.counts.sum())
    return CalibrationCheck(observed, float(errors.mean()), float(np.quantile(errors, 0.95)),
                            float(np.mean(errors >= observed - 1e-12)), draws)


def calibration_checks(probs: np.ndarray, targets: np.ndarray, draws: int = 1000, seed: int = 0) -> dict[str, CalibrationCheck]:
    """`calibration_check` of the two ECEs of (tasks, robots) confidences: "top-1 ECE" (the top robot's confidence
    against "it suits the task") and "robot ECE" (every robot's, against "that robot suits the task")."""
    probs, gold = _check_inputs(probs, targets)
    rows, top = np.arange(len(probs)), probs.argmax(axis=1)
    return {"top-1 ECE": calibration_check(probs[rows, top], gold[rows, top], draws=draws, seed=seed),
            "robot ECE": calibration_check(probs.ravel(), gold.ravel(), draws=draws, seed=seed)}


def bin_accuracy_ranges(confidences: np.ndarray, bins: int = ECE_BINS, draws: int = 1000, seed: int = 0,
                        coverage: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """(bins,) low and high ends of the accuracy each bin shows in `coverage` of the draws of a calibrated
    model with these confidences (the consistency bars of a reliability diagram); NaN for an empty bin."""
    empty = reliability_bins(confidences, np.zeros(np.size(confidences)), bins).counts == 0
    tail = (1.0 - coverage) / 2.0
    low, high = np.quantile(_drawn_bin_accuracy(confidences, bins, draws, seed), [tail, 1.0 - tail], axis=0)
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def _drawn_bin_accuracy(confidences: np.ndarray, bins: int, draws: int, seed: int) -> np.ndarray:
    """(draws, bins): each bin's accuracy (0 when empty) when every outcome is right with probability equal
    to its confidence, `draws` times (the bins of `reliability_bins`)."""
    conf = np.asarray(confidences, dtype=np.float64).ravel()
    index = _bin_index(conf, bins)
    members, rng = np.eye(bins)[index], np.random.default_rng(seed)
    block = max(1, _DRAW_CELLS // max(conf.size, 1))  # draws per block: a few MB of outcomes whatever the size
    right = np.concatenate([(rng.random((min(block, draws - start), conf.size)) < conf) @ members
                            for start in range(0, draws, block)])
    return right / np.maximum(np.bincount(index, minlength=bins), 1)


def compute_metrics(
    probs: np.ndarray, targets: np.ndarray, names: Sequence[str], threshold: float = DEFAULT_CONFIDENCE_THRESHOLD
) -> dict[str, float]:
    """All robot-selection metrics for n tasks over a fleet of N robots.

    Definitions (gold set = robots with target 1; predicted set = `predicted_sets(probs, threshold)`):
      accuracy: fraction of tasks whose top-1 robot is in the gold set.
      exact_set_accuracy: fraction of tasks whose predicted set equals the gold set.
      multi_robot_iou: mean Jaccard |pred & gold| / |pred | gold| over tasks.
      {Robot}_precision / _recall / _f1: from the predicted sets, one robot at a time. A robot never
        predicted has precision 0, one never in a gold set has recall 0, and F1 is 0 when both are 0,
        so no value is ever NaN.
      macro_f1: mean per-robot F1 over the robots that occur in a gold set or a predicted set; a robot
        absent from both has nothing to score and is left out rather than counted as 0.
      expected_calibration_error: ECE (15 bins) of the top-1 confidence against "top-1 is in the gold set".
      robot_calibration_error: ECE (15 bins) of every robot's confidence against "the robot is in the gold
        set", over all (task, robot) pairs.
      mean_average_precision: mean over the robots with at least one positive of each robot's average
        precision (mean over its positives of the precision at the positive's rank; samples ranked by
        descending score, equal scores in input order).
      num_samples: n.
    `{Robot}` is the display name with spaces turned into underscores (`metric_key`).
    """
    probs, gold = _check_inputs(probs, targets, names)
    n = probs.shape[0]
    if n == 0:
        raise ValueError("compute_metrics got no samples; check the evaluation split is not empty")
    scored = weighted_metrics(probs, gold, np.ones((1, n), dtype=np.int64), threshold)
    out: dict[str, float] = {"accuracy": float(scored["accuracy"][0]), "macro_f1": float(scored["macro_f1"][0])}
    for j, name in enumerate(names):
        for stat in PER_ROBOT_STATS:
            out[f"{metric_key(name)}_{stat}"] = float(scored[stat][0, j])
    for key in SET_LEVEL_KEYS:
        out[key] = float(scored[key][0])
    out["num_samples"] = float(n)
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def weighted_metrics(probs: np.ndarray, targets: np.ndarray, weights: np.ndarray,
                     threshold: float = DEFAULT_CONFIDENCE_THRESHOLD) -> dict[str, np.ndarray]:
    """The `SUMMARY_KEYS` metrics (B,) and per-robot `PER_ROBOT_STATS` (B, N) of B weightings of the tasks at
    once; weights (B, n) count how often each task is drawn (the bootstrap), a row of ones is the plain metric.

    Row b equals the metrics of the task list that holds task i weights[b, i] times in task order (the
    order only breaks AP ties between equal scores, as a stable sort does). Everything but AP is a
    weighted sum over tasks. AP is
    summed in closed form: a positive task drawn m times, after c drawn tasks of which a are
    positive, adds sum_{i=1..m} (a+i)/(c+i) = m - (c-a)(H(c+m) - H(c)), H the harmonic numbers.
    """
    probs = np.asarray(probs, dtype=np.float64)
    gold = np.asarray(targets).astype(bool)
    w = np.asarray(weights, dtype=np.int64)
    n = probs.shape[0]
    if w.ndim != 2 or w.shape[1] != n:
        raise ValueError(f"weights must have shape (resamples, {n}), got {w.shape}")
    if w.min(initial=0) < 0 or np.any(w.sum(axis=1) == 0):
        raise ValueError("weights must be non-negative draw counts with at least one task per resample")
    total = w.sum(axis=1).astype(np.float64)
    wf = w.astype(np.float64)
    rows = np.arange(n)
    top1 = probs.argmax(axis=1)
    hit = gold[rows, top1].astype(np.float64)
    conf = probs[rows, top1]
    pred = predicted_sets(probs, threshold)
    both = pred & gold

    out = {
        "accuracy": wf @ hit / total,
        "exact_set_accuracy": wf @ (pred == gold).all(axis=1) / total,
        # gold is never empty, so neither is the union.
        "multi_robot_iou": wf @ (both.sum(axis=1) / (pred | gold).sum(axis=1)) / total,
    }
    tp, n_pred, n_gold = wf @ both, wf @ pred, wf @ gold
    precision, recall = _ratio(tp, n_pred), _ratio(tp, n_gold)
    f1 = _ratio(2 * precision * recall, precision + recall)
    present = (n_pred > 0) | (n_gold > 0)
    out["macro_f1"] = (f1 * present).sum(axis=1) / present.sum(axis=1)
    out.update(precision=precision, recall=recall, f1=f1)

    # ECE: per bin, |bin|/total * |acc - conf| = |sum of hits - sum of confidences| / total.
    bins = _bin_index(conf, ECE_BINS)
    onehot = np.zeros((n, ECE_BINS))
    onehot[rows, bins] = 1.0
    out["expected_calibration_error"] = np.abs(wf @ (onehot * (hit - conf)[:, None])).sum(axis=1) / total
    # The same over every (task, robot) pair: each task adds N pairs.
    robot_bins = _bin_index(probs, ECE_BINS)
    gaps = np.zeros((n, ECE_BINS))
    np.add.at(gaps, (np.repeat(rows, probs.shape[1]), robot_bins.ravel()), (gold - probs).ravel())
    out["robot_calibration_error"] = np.abs(wf @ gaps).sum(axis=1) / (total * probs.shape[1])

    out["mean_average_precision"] = _weighted_mean_average_precision(probs, gold, w)
    return out


def _weighted_mean_average_precision(probs: np.ndarray, gold: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(B,) mean over robots with a drawn positive of each robot's average precision, AP in closed form."""
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, int(w.sum(axis=1).max()) + 1))])
    ap_sum = np.zeros(w.shape[0])
    robots_with_positive = np.zeros(w.shape[0])
    for j in range(probs.shape[1]):
        order = np.argsort(-probs[:, j], kind="stable")
        drawn, label = w[:, order], gold[order, j]
        positives = drawn * label
        before = np.cumsum(drawn, axis=1) - drawn
        lead = before - (np.cumsum(positives, axis=1) - positives)  # drawn negatives ranked above
        gain = positives - label * lead * (harmonic[before + drawn] - harmonic[before])
        count = positives.sum(axis=1)
        ap_sum += _ratio(gain.sum(axis=1), count)
        robots_with_positive += count > 0
    return ap_sum / robots_with_positive


def confusion_matrix(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(N, N) multi-label confusion matrix: rows = gold robot, columns = top-1 prediction.

    Each task adds a total of 1. If its top-1 robot is in its gold set, the task counts as that
    robot's hit: +1 on the diagonal cell (top-1, top-1). Otherwise the miss is shared equally by
    its gold robots: +1/|gold| in row g, column top-1, for every gold robot g. Row sums are thus
    the "gold mass" per robot and the diagonal the correctly chosen tasks.
    """
    probs, gold = _check_inputs(probs, targets)
    n, robots = probs.shape
    matrix = np.zeros((robots, robots), dtype=np.float64)
    top1 = probs.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
    for i in range(n):
        if gold[i, top1[i]]:
            matrix[top1[i], top1[i]] += 1.0
        else:
            rows = np.flatnonzero(gold[i])
            matrix[rows, top1[i]] += 1.0 / rows.size
    return matrix


def format_metrics(metrics: Mapping[str, float], names: Sequence[str], header: str) -> str:
    """The console block printed after an evaluation, e.g. header "Validation metrics (Epoch 0, Step 534):"."""

    def line(key: str, indent: int = 2) -> str:
        if key not in metrics:
            raise ValueError(f"metrics has no {key!r}; pass the dict compute_metrics returned for these robot names")
        return f"{' ' * indent}{key}: {metrics[key]:.4f}"

    lines = [header, line("accuracy"), line("macro_f1"), "", "  Per-Robot Performance:"]
    for j, name in enumerate(names):
        if j:
            lines.append("")
        lines.extend(line(f"{metric_key(name)}_{stat}", indent=4) for stat in PER_ROBOT_STATS)
    lines.append("")
    lines.extend(
        line(key)
        for key in SET_LEVEL_KEYS
    )
    if "num_samples" in metrics:
        lines.append(f"  num_samples: {int(metrics['num_samples'])}")
    return "\n".join(lines)
