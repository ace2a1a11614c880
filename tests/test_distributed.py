from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cirbench import distributed
from cirbench.cli import main, without_nproc

ARGS = ["digits", "--method", "ce", "--seeds", "0", "-q", "--set", "train.epochs=8"]

# Two ranks see the same global batch of 128 (64 each) and average gradients, so the only
# difference to one process is batch-norm statistics over 64 instead of 128 images per step.
TOLERANCE = 0.02


def test_without_nproc() -> None:
    argv = ["run", "digits", "--nproc", "2", "--seeds", "0", "--nproc=3", "-q"]
    assert without_nproc(argv) == ["run", "digits", "--seeds", "0", "-q"]


def test_single_process_world_and_shard() -> None:
    assert distributed.world() == (0, 1)
    idx = torch.arange(6)
    assert torch.equal(distributed.shard(idx), idx)
    assert distributed.gather("x") == ["x"]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    assert main(["run", *ARGS, "--out", str(tmp_path / "one")]) == 0
    assert main(["run", *ARGS, "--nproc", "2", "--out", str(tmp_path / "two")]) == 0
    (one,) = (tmp_path / "one" / "runs" / "digits").glob("*.json")
    records = list((tmp_path / "two" / "runs" / "digits").glob("*.json"))
    assert len(records) == 1  # only rank 0 writes
    a, b = json.loads(one.read_text()), json.loads(records[0].read_text())
    assert a["processes"] == 1 and b["processes"] == 2
    assert a["config_hash"] == b["config_hash"]
    assert len(b["history"]) == 8
    for metric in ("top1", "recall@1", "mAP"):
        assert abs(a["metrics"][metric] - b["metrics"][metric]) <= TOLERANCE, metric


def test_shutdown_leaves_the_process_group(tmp_path: Path) -> None:
    """A rank leaves its gloo group before exit (an open one can SIGABRT at interpreter exit)."""
    import torch.distributed as dist

    distributed.shutdown()  # no group: nothing to do
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    assert dist.is_initialized()
    distributed.shutdown()
    assert not dist.is_initialized()
    dist.init_process_group(
        "gloo", store=dist.FileStore(str(tmp_path / "s2"), 1), rank=0, world_size=1
    )
    distributed.shutdown(clean=False)  # after an error: no barrier, still left
    assert not dist.is_initialized()
