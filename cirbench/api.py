"""The Python API, for notebooks and scripts: the same runs, records and tables as the CLI.

Examples:
    >>> from cirbench import api
    >>> record = api.run("digits", "cir+ce", seed=0, profile="smoke",
    ...                  overrides=["cir.p=0.3"], out="outputs")  # doctest: +SKIP
    >>> record["metrics"]["top1"]  # doctest: +SKIP
    0.87...
    >>> df = api.records("outputs", task="digits")  # one row per record  # doctest: +SKIP
    >>> print(api.table("digits", "outputs"))  # doctest: +SKIP

A run here is exactly ``cirbench run TASK --method M --seeds SEED --profile P --set ...`` (the
record stores that command), in this process, on one device; errors a user can cause raise
:class:`~cirbench.errors.CirbenchError` with the CLI's message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from cirbench.config import Overrides, apply_overrides
from cirbench.data.catalog import resolve_data_root
from cirbench.methods import MethodSpec
from cirbench.methods.base import check_sections
from cirbench.plugins import load_plugins
from cirbench.reporting import Format, format_table
from cirbench.results import default_out, load_records
from cirbench.runner import RunSpec, train_and_record
from cirbench.tasks import TASKS, default_methods


def run(
    task: str,
    method: str,
    seed: int = 0,
    profile: str | None = None,
    overrides: Iterable[str] | Overrides = (),
    config: str | Path | None = None,
    out: str | Path | None = None,
    data_root: str | Path | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train and evaluate one (task, method, seed); write its record under ``out`` (default
    ``$CIRBENCH_OUT`` or ``outputs/``) and return it. ``overrides`` are ``--set`` items,
    ``config`` a ``--config`` YAML file (applied first)."""
    load_plugins()
    t = TASKS.get(task)()
    spec = MethodSpec.parse(method).name
    items = overrides if isinstance(overrides, Overrides) else Overrides.parse(overrides)
    if config is not None:
        items = Overrides.from_yaml(Path(config)).then(items)
    check_sections(items, [spec])
    name = profile or t.default_profile
    cfg = apply_overrides(t.profile(name), items.section("train"), "train")
    data = t.load(resolve_data_root(None if data_root is None else str(data_root)))
    t.check(data, cfg)
    command = ["run", task, "--method", spec, "--seeds", str(seed), "--profile", name]
    command += ["--set", *items.as_list()] if items else []
    path = train_and_record(
        RunSpec(t, data, spec, seed, cfg, name, items),
        Path(out if out is not None else default_out()),
        torch.device(device),
        command=command,
    )
    assert path is not None  # one process: rank 0 always writes
    record: dict[str, Any] = json.loads(path.read_text())
    return {**record, "path": str(path)}


def records(root: str | Path | None = None, task: str | None = None) -> pd.DataFrame:
    """Every record under ``root/runs`` (default ``outputs``) as one row: identity columns
    (task, method, seed, profile, overrides, config_hash, ...) and one column per metric."""
    return load_records(root if root is not None else default_out(), task)


def table(task: str, root: str | Path | None = None, fmt: Format = "md") -> str:
    """``cirbench table TASK --runs ROOT --format FMT`` as a string."""
    return format_table(records(root, task), fmt, default_methods(task))
