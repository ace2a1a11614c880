"""Shared fixtures: the digits task loaded once, a fast training config, shared real data, and
empty weight caches (torch.hub, huggingface_hub) so that no test reads the machine's own."""

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


@pytest.fixture(autouse=True)
def empty_weight_caches(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """``$TORCH_HOME`` and huggingface_hub's cache point at empty folders for every test."""
    from huggingface_hub import constants

    root = tmp_path_factory.mktemp("weight-caches")
    monkeypatch.setenv("TORCH_HOME", str(root / "torch"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return root
