"""No code runs from a file a user hands us: each loader gets a pickle whose ``__reduce__`` would
create a marker file, and the marker must not exist afterwards (issue: reliability and security).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from fixture_tiered import make_tiered

from cirbench.data.cifar import load_pickle
from cirbench.data.tiered import load_split, read_labels
from cirbench.engine import FitOptions, TrainConfig
from cirbench.errors import CirbenchError

CPU = torch.device("cpu")


class Payload:
    """Unpickling this calls ``os.system("touch MARKER")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def hostile(path: Path, marker: Path, wrap: bool = True) -> None:
    obj = {"label_specific": Payload(marker)} if wrap else Payload(marker)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def test_payload_runs_under_plain_pickle(tmp_path: Path) -> None:
    """The payload is real: plain pickle.loads does run it (so the tests below can fail)."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


def test_tiered_labels_pickle_runs_no_code(tmp_path: Path) -> None:
    folder = make_tiered(tmp_path / "tiered", "pkl", per_class=2)
    marker = tmp_path / "ran"
    hostile(folder / "train_labels.pkl", marker)
    with pytest.raises(CirbenchError, match=r"references (posix|os)\.system"):
        read_labels(folder / "train_labels.pkl")
    with pytest.raises(CirbenchError, match=r"train_labels\.pkl is not a readable pickle"):
        load_split(folder, "train")
    assert not marker.exists()


def test_tiered_images_pickle_runs_no_code(tmp_path: Path) -> None:
    folder = make_tiered(tmp_path / "tiered", "pkl", per_class=2)
    marker = tmp_path / "ran"
    hostile(folder / "test_images_png.pkl", marker, wrap=False)
    with pytest.raises(CirbenchError, match="not a readable pickle"):
        load_split(folder, "test").images([0])
    assert not marker.exists()


def test_cifar_pickle_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "data_batch_1"
    hostile(path, marker)
    with pytest.raises(CirbenchError, match="not a readable CIFAR pickle"):
        load_pickle(path)
    assert not marker.exists()


def test_checkpoint_runs_no_code_on_resume(digits, tmp_path: Path) -> None:
    from cirbench.runner import RunSpec, prepare, train

    marker = tmp_path / "ran"
    checkpoint = tmp_path / "c.pt"
    torch.save({"fingerprint": "x", "model": Payload(marker)}, checkpoint)
    task, data = digits
    spec = RunSpec(task, data, "ce", 0, TrainConfig(epochs=1, batch_size=128, lr=1e-3), "t", {})
    model, method = prepare(spec)
    with pytest.raises(CirbenchError, match=r"not readable .*without --resume"):
        train(spec, model, method, CPU, FitOptions(checkpoint, resume=True, fingerprint="x"))
    assert not marker.exists()


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00\x01garbage", None, "folder", "truncated", "missing-key"],
    ids=["empty", "random", "not-a-dict", "folder", "truncated", "missing-key"],
)
def test_a_corrupt_checkpoint_is_one_line_not_a_traceback(
    digits, tmp_path: Path, content: bytes | str | None
) -> None:
    from cirbench.runner import RunSpec, prepare, train

    task, data = digits
    cfg = TrainConfig(epochs=1, batch_size=128, lr=1e-3)
    spec = RunSpec(task, data, "ce", 0, cfg, "t", {})
    checkpoint = tmp_path / "c.pt"
    model, method = prepare(spec)
    train(spec, model, method, CPU, FitOptions(checkpoint, fingerprint="x"))  # a good one
    if content == "folder":
        checkpoint.unlink()
        checkpoint.mkdir()
    elif content == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    elif content == "missing-key":
        ckpt = torch.load(checkpoint, weights_only=True)
        del ckpt["optimizers"]
        torch.save(ckpt, checkpoint)
    elif content is None:
        torch.save([1, 2, 3], checkpoint)
    else:
        checkpoint.write_bytes(content)
    cfg2 = TrainConfig(epochs=2, batch_size=128, lr=1e-3)
    spec2 = RunSpec(task, data, "ce", 0, cfg2, "t", {})
    model, method = prepare(spec2)
    with pytest.raises(CirbenchError, match="delete it, or run without --resume"):
        train(spec2, model, method, CPU, FitOptions(checkpoint, resume=True, fingerprint="x"))
