"""Hand-made result records and a reported-numbers file for report and check tests.

Digits records (profile ``default``, 3 seeds each) with metric values chosen so that means,
stds and Welch's tests are easy to compute by hand; few-shot records carry per-episode details.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# method -> metric -> per-seed values (fractions)
DIGITS: dict[str, dict[str, list[float]]] = {
    "ce": {"top1": [0.90, 0.92, 0.94], "recall@1": [0.95, 0.96, 0.97], "mAP": [0.80, 0.82, 0.84]},
    "cir+ce": {
        "top1": [0.980, 0.985, 0.990],
        "recall@1": [0.94, 0.96, 0.98],
        "mAP": [0.81, 0.83, 0.85],
    },
    "triplet": {"recall@1": [0.97, 0.98, 0.99], "mAP": [0.85, 0.86, 0.87]},
    "cir+triplet": {"recall@1": [0.975, 0.98, 0.985], "mAP": [0.84, 0.865, 0.89]},
}

REPORTED_YAML = """\
papers:
  fake2020:
    title: "A Paper"
    authors: "Doe, Roe"
    venue: "NeurIPS 2020"
    arxiv: "2001.00001"
entries:
  - {paper: fake2020, where: "Table 2", task: digits, protocol: "70/30", backbone: cnn,
     label: "CE", method: ce, metric: top1, value: 91.0, tolerance: 1.5}
  - {paper: fake2020, where: "Table 2", task: digits, protocol: "70/30", backbone: cnn,
     label: "CE", method: ce, metric: mAP, value: 80.0, tolerance: 1.0}
  - {paper: fake2020, where: "Table 3", task: digits, protocol: "70/30", backbone: cnn,
     label: "CIR", method: cir+ce, metric: top1, value: null, tolerance: 1.0}
  - {paper: fake2020, where: "Table 3", task: digits, protocol: "70/30", backbone: cnn,
     label: "Other", method: null, metric: top1, value: 99.5, tolerance: 1.0}
"""


def record(
    task: str,
    method: str,
    seed: int,
    metrics: dict[str, float],
    profile: str = "default",
    details: dict[str, Any] | None = None,
    device: str = "cpu (x86_64, 2 threads)",
    exact: bool = False,
) -> dict[str, Any]:
    loss = {"epoch": 1, "total": 1.0, "lr": 0.1, "images_per_s": 1000.0}
    repro = {"mode": "exact" if exact else "default", "torch": "2.14.1", "machine": "x86_64"}
    return {
        "reproducibility": repro,
        "schema": 1,
        "task": task,
        "method": method,
        "seed": seed,
        "profile": profile,
        "overrides": [],
        "config_hash": "0123456789",
        "metrics": metrics,
        "details": details or {},
        "history": [loss, {**loss, "epoch": 2, "total": 0.5 / (seed + 1)}],
        "wall_time_s": 1.0,
        "provenance": {"device": device},
    }


def write(root: Path, rec: dict[str, Any]) -> Path:
    path = root / "runs" / rec["task"] / f"{rec['method']}__seed{rec['seed']}__0123456789.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=2))
    return path


def write_digits(root: Path, exact: bool = False) -> list[Path]:
    paths = []
    for method, metrics in DIGITS.items():
        for seed in range(3):
            values = {m: v[seed] for m, v in metrics.items()}
            paths.append(write(root, record("digits", method, seed, values, exact=exact)))
    return paths


def write_reported(folder: Path) -> Path:
    path = folder / "reported.yaml"
    path.write_text(REPORTED_YAML)
    return path
