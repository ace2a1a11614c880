"""Shared fixtures: the digits task loaded once, a fast training config, shared real data."""

from __future__ import annotations

from pathlib import Path

import pytest

import cirbench.methods  # noqa: F401  (registers methods)
from cirbench.engine import TrainConfig
from cirbench.tasks import TASKS, Task, TaskData

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def digits() -> tuple[Task, TaskData]:
    task = TASKS.get("digits")()
    return task, task.load(Path("unused"))


@pytest.fixture()
def tiny_cfg() -> TrainConfig:
    return TrainConfig(epochs=3, batch_size=128, lr=3e-3, weight_decay=5e-4)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA
