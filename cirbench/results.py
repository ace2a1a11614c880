"""Result records: one JSON file per (task, method, seed, config) under ``<out>/runs/<task>/``.

A record carries the metrics and everything needed to trust them: the resolved config, git
commit, package versions, device, seed, dataset fingerprint, wall time and per-epoch losses.
Records are written atomically (temp file, fsync, rename), so a killed process never leaves a
partial JSON behind. Tables are computed from records, never hand-edited.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO, Literal

import pandas as pd
import torch

from cirbench.config import Overrides
from cirbench.errors import CirbenchError
from cirbench.exact import DEFAULT, EXACT

log = logging.getLogger(__name__)

#: Version of the record format this cirbench writes; it reads 1..SCHEMA. 2 added ``split``
#: (test or val) and ``origin`` (the tuning study and trial): a cirbench that knows only 1
#: must skip such records rather than count a validation run as a test result.
SCHEMA = 2
#: The committed reference records, tables and baselines (``cirbench report`` / ``check``).
COMMITTED = "results"
#: Where ``cirbench run`` writes unless told otherwise (git-ignored; ``$CIRBENCH_OUT`` wins).
DEFAULT_OUT = "outputs"
PACKAGES = ("cirbench", "torch", "torchvision", "timm", "numpy", "scikit-learn", "pandas")
REQUIRED = ("schema", "task", "method", "seed", "config_hash", "metrics")


def default_out() -> str:
    """``cirbench run``'s output folder: ``$CIRBENCH_OUT``, else ``outputs/`` (git-ignored), so
    that user runs never overwrite the committed records under ``results/``."""
    return os.environ.get("CIRBENCH_OUT") or DEFAULT_OUT


def config_hash(config: dict[str, Any]) -> str:
    """Short stable hash of a JSON-ready config (seed excluded by the caller)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def record_path(out: Path, task: str, method: str, seed: int, chash: str) -> Path:
    return out / "runs" / task / f"{method}__seed{seed}__{chash}.json"


GIT_TIMEOUT_S = 5


def git_commit() -> dict[str, Any]:
    """HEAD of the repository holding the package, and whether the tree had changes. Best
    effort: with no ``git``, no repository or a slow one, both are ``None`` (unknown), since
    provenance must never cost a finished run its record."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("git provenance unknown: %s", exc)
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no")) if commit else None
    return {"commit": commit or None, "dirty": dirty}


_CODE_VERSION: dict[str, Any] = {}


def code_version() -> dict[str, Any]:
    """:func:`git_commit` as it was the first time this process asked. A run executes the code
    it imported when it started; a commit made while it trained (an hour, for some tasks) must
    not be stamped on its record. :func:`runner.train_and_record` asks before training."""
    if not _CODE_VERSION:
        _CODE_VERSION.update(git_commit())
    return dict(_CODE_VERSION)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    return f"cpu ({cpu}, {torch.get_num_threads()} threads)"


def provenance(device: torch.device, git: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Where a record came from; ``git`` as captured when the run started (else asked now)."""
    return {
        "git": dict(git) if git is not None else git_commit(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device_name(device),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write JSON atomically: readers see the old file or the complete new one, never a part."""
    write_atomic(path, (json.dumps(record, indent=2, sort_keys=True, default=str) + "\n").encode())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content into: a temp file beside ``path``, fsynced
    and renamed over it when the block ends, then the folder fsynced. A crash, an exception or a
    full disk leaves the old file or the new one, never a part, and no temp file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a result is for everyone to read
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Replace ``path`` by ``data`` through :func:`atomic_file`."""
    with atomic_file(path) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)


def fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (power loss keeps the new name); best effort on
    filesystems that cannot open or fsync a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


#: Columns that :func:`load_records` fills from the record itself; no metric may take a name.
IDENTITY = (
    "task",
    "method",
    "seed",
    "split",
    "profile",
    "overrides",
    "config_hash",
    "wall_time_s",
    "device",
    "mode",
    "weights",
    "weights_sha256",
    "backbone",
    "commit",
    "path",
)
MAX_SEED = 2**32 - 1  # numpy's seed range
#: Where a record was evaluated: the task's test split, or its validation hold-out of training
#: data (``Task.validation``). Records older than the field are test records.
Split = Literal["test", "val"]
SPLITS: tuple[Split, ...] = ("test", "val")


def _number(value: Any) -> bool:
    """A finite int or float (not a bool); ints too large for a float do not count."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _optional(record: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> bool:
    return key not in record or record[key] is None or isinstance(record[key], kind)


def record_problem(record: Any) -> str | None:
    """Why ``record`` is not a usable result record, or None. The one schema check behind
    ``table``, ``report``, ``check`` and sweeps: a record that fails it is skipped by name."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        return f"not a cirbench result record (no {', '.join(missing)})"
    schema = record["schema"]
    if isinstance(schema, bool) or not isinstance(schema, int) or not 1 <= schema <= SCHEMA:
        return f"schema {schema!r} is not one this cirbench reads (1..{SCHEMA}); upgrade cirbench"
    if not isinstance(record["task"], str) or not isinstance(record["method"], str):
        return "task and method must be strings"
    if not record["task"] or not record["method"]:
        return "task and method must not be empty"
    seed = record["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        return f"seed must be an integer in 0..{MAX_SEED}"
    if not isinstance(record["config_hash"], str):
        return "config_hash must be a string"
    metrics = record["metrics"]
    if not isinstance(metrics, dict) or not metrics:
        return "metrics must be a non-empty mapping"
    bad = sorted(str(k) for k, v in metrics.items() if not _number(v))
    if bad:
        return f"metrics {bad} are not finite numbers"
    clash = sorted(set(metrics) & set(IDENTITY))
    if clash:
        return f"metric names {clash} clash with record fields"
    if record.get("split", "test") not in SPLITS:
        return f"split must be one of {', '.join(SPLITS)}"
    if not _optional(record, "profile", str):
        return "profile must be a string"
    if not _optional(record, "backbone", str):
        return "backbone must be a string"
    overrides = record.get("overrides")
    if overrides is not None and (
        not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides)
    ):
        return "overrides must be a list of strings"
    try:
        Overrides.parse(overrides or [])
    except CirbenchError as exc:
        return f"overrides: {exc}"
    for key in (
        "provenance",
        "reproducibility",
        "details",
        "config",
        "dataset",
        "weights",
        "origin",
    ):
        if not _optional(record, key, dict):
            return f"{key} must be a mapping"
    wall = record.get("wall_time_s")
    if wall is not None and not _number(wall):
        return "wall_time_s must be a finite number"
    history = record.get("history")
    if history is not None and (
        not isinstance(history, list)
        or not all(isinstance(h, dict) and all(_number(v) for v in h.values()) for h in history)
    ):
        return "history must be a list of mappings of finite numbers"
    return None


def load_record(path: Path) -> tuple[dict[str, Any] | None, str]:
    """``(record, "")``, or ``(None, why)`` when ``path`` is not a usable record
    (:func:`record_problem`); the reason is also logged as a warning naming the file."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        why = f"not a readable JSON record ({type(exc).__name__}: {str(exc)[:100]})"
        log.warning("skipping %s: %s", path, why)
        return None, why
    problem = record_problem(record)
    if problem is not None:
        log.warning("skipping %s: %s", path, problem)
        return None, problem
    assert isinstance(record, dict)
    return record, ""


def read_record(path: Path) -> dict[str, Any] | None:
    """The record at ``path``, or None (with a warning naming the file and the reason)."""
    return load_record(path)[0]


def record_mode(record: dict[str, Any]) -> str:
    """``exact`` for a run made with ``--exact`` (see :mod:`cirbench.exact`), else ``default``
    (records written before exact mode existed included)."""
    repro = record.get("reproducibility")
    return EXACT if isinstance(repro, dict) and repro.get("mode") == EXACT else DEFAULT


def _row(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    weights = record.get("weights") or {}  # pretrained backbone weights; empty: random init
    return {
        "task": record["task"],
        "method": record["method"],
        "seed": record["seed"],
        "split": record.get("split", "test"),
        "profile": record.get("profile"),
        "overrides": str(Overrides.parse(record.get("overrides") or [])),
        "config_hash": record["config_hash"],
        "wall_time_s": record.get("wall_time_s"),
        "device": (record.get("provenance") or {}).get("device"),
        "mode": record_mode(record),
        "weights": weights.get("name") or "",
        "weights_sha256": weights.get("sha256") or "",
        "backbone": record.get("backbone") or "",  # "" in records written before it existed
        "commit": _commit(record),
        "path": str(path),
        **{str(k): float(v) for k, v in record["metrics"].items()},
    }


def _commit(record: dict[str, Any]) -> str:
    """The code version that wrote ``record``: its git commit (``+dirty`` for uncommitted
    changes), "" when unknown."""
    git = (record.get("provenance") or {}).get("git")
    if not isinstance(git, dict):
        return ""
    commit = git.get("commit")
    if not isinstance(commit, str) or not commit:
        return ""
    return commit[:10] + ("+dirty" if git.get("dirty") else "")


def records_frame(
    records: Iterable[tuple[Path, dict[str, Any]]], split: Split = "test"
) -> pd.DataFrame:
    """One row per (path, record) of ``split``: identity columns plus one per metric (see
    load_records). Validation and test records never share a frame, so no table, report or
    check mixes them."""
    rows = (_row(path, record) for path, record in records)
    return pd.DataFrame([row for row in rows if row["split"] == split])


def load_records(
    root: Path | str = "results", task: str | None = None, split: Split = "test"
) -> pd.DataFrame:
    """All records under ``root/runs`` as one row each: identity columns plus one per metric.

    Columns: task, method, seed, profile, overrides, config_hash, wall_time_s, device, mode
    (``exact`` or ``default``, see :mod:`cirbench.exact`), weights and weights_sha256 (the
    pretrained backbone's weights.yaml name and digest; empty for a random init), backbone (as
    reported.yaml names it; empty in records older than the field), path,
    then every metric name. Only records of ``split`` (the test split by default).
    Unreadable or foreign JSON files are skipped with a warning.
    """
    runs = Path(root) / "runs"
    pattern = f"{task}/*.json" if task else "*/*.json"
    found = ((path, read_record(path)) for path in sorted(runs.glob(pattern)))
    return records_frame(((path, rec) for path, rec in found if rec is not None), split)
