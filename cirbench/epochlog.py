"""Per-epoch training logs written while a run trains, beside its record.

- ``csv`` (the default): ``<out>/logs/<task>/<record stem>.csv``, one row per epoch (epoch, lr,
  every loss term, images/s), rewritten atomically after each epoch, so it is complete up to
  the last finished epoch even when the run is killed, and right after a ``--resume``.
- ``tensorboard``: the same scalars as TensorBoard events under
  ``<out>/tensorboard/<task>/<record stem>/`` (``tensorboard --logdir <out>/tensorboard``); needs
  the ``tensorboard`` package (``pip install 'cirbench[tensorboard]'``).
- ``none``: nothing but the record, which holds the same history at the end.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Literal

from cirbench.engine import EpochReport
from cirbench.errors import CirbenchError
from cirbench.results import write_atomic

Logger = Literal["csv", "tensorboard", "none"]
LOGGERS: tuple[Logger, ...] = ("csv", "tensorboard", "none")


def csv_text(history: tuple[dict[str, float], ...]) -> str:
    columns = list(dict.fromkeys(k for row in history for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


class EpochLog:
    """Called after every epoch (``FitOptions.on_epoch``); ``close()`` when the run ends."""

    def __init__(self, kind: Logger, out: Path, task: str, stem: str) -> None:
        self.kind = kind
        self.csv_path = out / "logs" / task / f"{stem}.csv"
        self.writer: Any = None
        if kind == "tensorboard":
            try:  # optional dependency: only this logger needs it
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise CirbenchError(
                    "--logger tensorboard needs the tensorboard package: "
                    "pip install 'cirbench[tensorboard]' (or use --logger csv)"
                ) from None
            self.writer = SummaryWriter(log_dir=str(out / "tensorboard" / task / stem))

    def __call__(self, report: EpochReport) -> None:
        if self.kind == "csv":
            write_atomic(self.csv_path, csv_text(report.history))
        elif self.writer is not None:
            row = report.history[-1]
            for key, value in row.items():
                if key != "epoch":
                    self.writer.add_scalar(f"train/{key}", value, report.epoch)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
