"""The tables of a stage's run directory: `args.yaml` (the run's settings) and `results.csv` (one row per evaluation)."""
from __future__ import annotations

import csv
import io
from dataclasses import asdict
from pathlib import Path
from typing import Mapping

import yaml

from ember_core.atomic import write_text_atomic
from ember_train.args import TrainArgs

ARGS_FILE = "args.yaml"
RESULTS_FILE = "results.csv"
RESULTS_KEYS = ("step", "epoch", "split")


def write_args(stage_dir: Path, args: TrainArgs) -> Path:
    """Write every setting of the run as `stage_dir/args.yaml`; its keys are the flag names, so the
    file is also a `--config` for the same run."""
    path = stage_dir / ARGS_FILE
    write_text_atomic(path, yaml.safe_dump(asdict(args), sort_keys=False))
    return path


class ResultsTable:
    """`results.csv`: step, epoch, split, then every metric in the order first seen, one row per evaluation.

    The whole file is rewritten atomically at each row (a metric first seen late widens the header, and
    a reader never sees half a row); a metric a row lacks is left empty.
    """

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict[str, float | int | str]] = []
        self.columns: list[str] = list(RESULTS_KEYS)

    def keep_first(self, count: int) -> None:
        """Continue the existing file's first `count` rows (a resumed run drops the rows after its checkpoint)."""
        if not count:
            return
        with open(self.path, newline="", encoding="utf-8") as stream:
            reader = csv.DictReader(stream)
            self.columns = list(reader.fieldnames or RESULTS_KEYS)
            self.rows = list(reader)[:count]

    def add(self, step: int, epoch: int, split: str, metrics: Mapping[str, float]) -> None:
        """Append the row of one evaluation and rewrite the file."""
        self.rows.append({"step": step, "epoch": epoch, "split": split, **metrics})
        self.columns += [key for key in metrics if key not in self.columns]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(self.path, text.getvalue())
