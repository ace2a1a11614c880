from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cirbench.cli import main
from cirbench.engine import TrainConfig
from cirbench.errors import CirbenchError
from cirbench.methods import MethodContext, build_method
from cirbench.methods.base import FEATURES, check_requirements
from cirbench.tasks import EvalContext


def test_fixed_stratified_split(digits) -> None:
    task, data = digits
    (xtr, ytr), (xte, yte) = data.train, data.test
    assert xtr.shape == (1257, 1, 8, 8) and xte.shape == (540, 1, 8, 8)
    assert float(xtr.min()) >= 0.0 and float(xtr.max()) <= 1.0
    assert data.num_classes == 10
    test_counts = np.bincount(yte.numpy(), minlength=10)
    all_counts = test_counts + np.bincount(ytr.numpy(), minlength=10)
    assert all_counts.sum() == 1797
    assert np.all(np.abs(test_counts - 0.3 * all_counts) <= 1)  # stratified 70/30
    again = task.load(Path("unused"))
    assert again.fingerprint == data.fingerprint
    assert torch.equal(again.test[1], yte)


def test_model_outputs(digits) -> None:
    task, data = digits
    model = task.build_model(data, task.profile("smoke"))
    feats = model(data.train[0][:5])
    assert feats.shape == (5, model.embed_dim)
    assert model.head is not None and model.head(feats).shape == (5, 10)


def test_embedding_methods_get_no_top1(digits) -> None:
    task, data = digits
    model = task.build_model(data, task.profile("smoke")).eval()
    method = build_method("triplet", MethodContext(10, model.embed_dim)).eval()
    with torch.inference_mode():
        ctx = EvalContext(model, method, data, task.profile("smoke"), torch.device("cpu"))
        metrics = task.evaluate(ctx).metrics
    assert set(metrics) == {"recall@1", "mAP"}


def test_a_task_without_classifier_rejects_classification_losses(digits) -> None:
    method = build_method("cir+ce", MethodContext(10, 64))
    with pytest.raises(CirbenchError, match="needs a classifier"):
        check_requirements(method.spec, frozenset({FEATURES}), "features-only")


def test_circle_gets_the_task_defaults(digits) -> None:
    task, _ = digits
    method = build_method("circle", MethodContext(10, 64), defaults=task.method_defaults)
    assert method.configs()["circle"] == {"weight": 1.0, "m": 0.4, "gamma": 80.0}


def test_unknown_profile(digits) -> None:
    task, _ = digits
    with pytest.raises(CirbenchError, match="Did you mean 'smoke'"):
        task.profile("smok")
    assert isinstance(task.profile(None), TrainConfig)


@pytest.mark.slow
def test_default_job_end_to_end(tmp_path: Path, capsys) -> None:
    """The README's main job: 5 methods x 3 seeds on real digits (about a minute on 2 cores)."""
    assert main(["run", "digits", "--out", str(tmp_path), "-q"]) == 0
    table = capsys.readouterr().out
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "digits").glob("*.json")]
    assert len(records) == 15
    by_method: dict[str, list[dict[str, float]]] = {}
    for rec in records:
        by_method.setdefault(rec["method"], []).append(rec["metrics"])
    assert set(by_method) == {"ce", "ls", "cir+ce", "triplet", "cir+triplet"}
    assert np.mean([m["top1"] for m in by_method["ce"]]) >= 0.95
    maps = {k: tuple(m["mAP"] for m in v) for k, v in by_method.items()}
    assert len(set(maps.values())) == 5  # methods really differ
    for name in by_method:
        assert f"| {name} " in table
    # The same job in default mode (this CPU's kernels, all threads) is a fresh draw for the
    # statistical gate: it must agree with the committed exact-mode baseline.
    baselines = Path(__file__).resolve().parents[2] / "results" / "baselines"
    args = ["check", "digits", "--runs", str(tmp_path), "--baselines", str(baselines)]
    assert main([*args, "--mode", "statistical"]) == 0
    assert "(statistical)" in capsys.readouterr().out
