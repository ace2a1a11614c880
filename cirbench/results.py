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
import os
import platform
import subprocess
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import torch

log = logging.getLogger(__name__)

SCHEMA = 1
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


def provenance(device: torch.device) -> dict[str, Any]:
    return {
        "git": git_commit(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device_name(device),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write JSON atomically: readers see the old file or the complete new one, never a part."""
    write_atomic(path, (json.dumps(record, indent=2, sort_keys=True, default=str) + "\n").encode())


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync, rename over ``path``, fsync the
    folder: a crash or a full disk leaves the old file or the new one, never a part, and no
    temp file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        folder = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return  # a folder that cannot be opened cannot be fsynced either (some filesystems)
    try:
        os.fsync(folder)
    except OSError:
        pass
    finally:
        os.close(folder)


def read_record(path: Path) -> dict[str, Any] | None:
    """The record at ``path``, or None (with a warning naming the file) if it is not one."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("skipping %s: not a readable JSON record (%s)", path, exc)
        return None
    if not isinstance(record, dict) or any(k not in record for k in REQUIRED):
        log.warning("skipping %s: not a cirbench result record", path)
        return None
    if not isinstance(record["metrics"], dict):
        log.warning("skipping %s: its metrics are not a mapping", path)
        return None
    return record


def record_mode(record: dict[str, Any]) -> str:
    """``exact`` for a run made with ``--exact`` (see :mod:`cirbench.exact`), else ``default``
    (records written before exact mode existed included)."""
    repro = record.get("reproducibility")
    return "exact" if isinstance(repro, dict) and repro.get("mode") == "exact" else "default"


def load_records(root: Path | str = "results", task: str | None = None) -> pd.DataFrame:
    """All records under ``root/runs`` as one row each: identity columns plus one per metric.

    Columns: task, method, seed, profile, overrides, config_hash, wall_time_s, device, mode
    (``exact`` or ``default``, see :mod:`cirbench.exact`), path,
    then every metric name. Unreadable or foreign JSON files are skipped with a warning.
    """
    runs = Path(root) / "runs"
    pattern = f"{task}/*.json" if task else "*/*.json"
    rows = []
    for path in sorted(runs.glob(pattern)):
        record = read_record(path)
        if record is None:
            continue
        rows.append(
            {
                "task": record["task"],
                "method": record["method"],
                "seed": record["seed"],
                "profile": record.get("profile"),
                "overrides": " ".join(record.get("overrides", [])),
                "config_hash": record["config_hash"],
                "wall_time_s": record.get("wall_time_s"),
                "device": record.get("provenance", {}).get("device"),
                "mode": record_mode(record),
                "path": str(path),
                **record["metrics"],
            }
        )
    return pd.DataFrame(rows)
