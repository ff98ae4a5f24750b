"""The accuracy gate of `ember export quantize`: hit@1 and top-1 ECE of the fp32 export and of the quantized one.

Each report set is scored text only and with rendered scenes, by both exports, the way `ember eval` scores a
model (ember_train.evaluate: the same features, robot logits, calibration and metrics). A set on which hit@1
falls by more than the tolerance, in points (1 point = 0.01), fails the gate.
"""
from __future__ import annotations

from dataclasses import dataclass

from ember_core.backend import Backend
from ember_train.data import TaskRecord
from ember_train.evaluate import score_backend

_ROUNDING = 1e-9  # hit@1 is a fraction of tasks; equal fractions must not fail a tolerance of 0


@dataclass
class GateSet:
    """A report set: its name, as the table shows it, and its tasks."""

    name: str
    records: list[TaskRecord]


@dataclass
class GateRow:
    """One set in one mode, scored before (fp32 export) and after (quantized)."""

    name: str
    images: bool  # with rendered scenes, else text only
    tasks: int
    hit_before: float
    hit_after: float
    ece_before: float
    ece_after: float

    @property
    def drop_points(self) -> float:
        return (self.hit_before - self.hit_after) * 100

    def passes(self, max_drop: float) -> bool:
        return self.drop_points <= max_drop + _ROUNDING

    @property
    def label(self) -> str:
        return f"{self.name}, {'rendered scenes' if self.images else 'text only'}"


def gate_rows(before: Backend, after: Backend, sets: list[GateSet]) -> list[GateRow]:
    """Each set text only and with rendered scenes, scored by both backends."""
    rows = []
    for gate_set in sets:
        for images in (False, True):
            hit, ece = [], []
            for backend in (before, after):
                metrics = score_backend(backend, gate_set.records, use_images=images).metrics(
                    backend.processor.fleet.names, backend.processor.config.calibration)
                hit.append(metrics["accuracy"])
                ece.append(metrics["expected_calibration_error"])
            rows.append(GateRow(gate_set.name, images, len(gate_set.records), *hit, *ece))
    return rows


def format_gate(rows: list[GateRow], max_drop: float) -> str:
    """The gate as a table: hit@1 and top-1 ECE before and after, the drop and the verdict per row."""
    width = max(len(row.label) for row in rows)
    lines = [f"{'set':<{width}}{'tasks':>7}{'hit@1 fp32':>12}{'hit@1 int8':>12}{'drop pts':>10}"
             f"{'ECE fp32':>10}{'ECE int8':>10}"]
    lines += [f"{row.label:<{width}}{row.tasks:>7}{row.hit_before:>12.3f}{row.hit_after:>12.3f}{row.drop_points:>10.1f}"
              f"{row.ece_before:>10.3f}{row.ece_after:>10.3f}  {'ok' if row.passes(max_drop) else 'FAILED'}"
              for row in rows]
    return "\n".join(lines)
