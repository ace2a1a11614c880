"""The Python API runs what the CLI runs; a method from another installed package (entry-point
group ``cirbench.plugins``) is used by name without touching cirbench."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cirbench.plugins as plugins
from cirbench import api
from cirbench.cli import main
from cirbench.methods import METHODS
from cirbench.tasks import TASKS

PLUGIN = '''
"""A toy third-party loss: pulls each feature towards its class mean."""
from dataclasses import dataclass

import torch

from cirbench.methods.base import METHODS, FEATURES, Loss, LossConfig


@dataclass(frozen=True)
class ToyConfig(LossConfig):
    scale: float = 1.0


@METHODS.register
class ToyPull(Loss):
    key = "toy-pull"
    Config = ToyConfig
    requires = frozenset({FEATURES})

    def forward(self, features, logits, labels):
        onehot = torch.nn.functional.one_hot(labels).float()
        means = (onehot.T @ features) / onehot.sum(0).clamp(min=1)[:, None]
        return self.cfg.scale * (features - means[labels]).pow(2).sum(1).mean()


# A toy metric on a toy task: declared once, on the task (docs/ARCHITECTURE.md, "Add a metric").
from cirbench.engine import Evaluation
from cirbench.tasks import TASKS
from cirbench.tasks.digits import Digits


@TASKS.register
class DigitsSpread(Digits):
    name = "digits-spread"
    metrics = (*Digits.metrics, "spread")
    lower_is_better = frozenset({"spread"})

    def evaluate(self, ctx):
        base = super().evaluate(ctx)
        x = ctx.data.test[0].to(ctx.device)
        spread = float(ctx.model.embed(x).float().std(0).mean().clamp(max=1.0))
        return Evaluation({**base.metrics, "spread": spread}, base.details)
'''


def install_plugin(root: Path, module: str, source: str) -> None:
    """A package as pip leaves it: the module and a dist-info with the entry point."""
    (root / f"{module}.py").write_text(source)
    info = root / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[cirbench.plugins]\n{module} = {module}\n")


@pytest.fixture()
def isolated_registries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test's plug-in disappear after it."""
    monkeypatch.setattr(METHODS, "_items", dict(METHODS._items))
    monkeypatch.setattr(TASKS, "_items", dict(TASKS._items))
    monkeypatch.setattr(plugins, "_loaded", set())


def test_api_run_writes_the_record_the_cli_would_and_tables_read_it(tmp_path: Path) -> None:
    record = api.run(
        "digits", "ce+cir", seed=0, profile="smoke", overrides=["cir.p=0.3"], out=tmp_path
    )
    assert record["method"] == "cir+ce" and record["overrides"] == ["cir.p=0.3"]
    assert record["provenance"]["command"] == [
        "cirbench", "run", "digits", "--method", "cir+ce", "--seeds", "0", "--profile", "smoke",
        "--set", "cir.p=0.3",
    ]  # fmt: skip
    assert json.loads(Path(record["path"]).read_text())["metrics"] == record["metrics"]
    df = api.records(tmp_path, "digits")
    assert list(df["method"]) == ["cir+ce"]
    assert "cir+ce (cir.p=0.3)" in api.table("digits", tmp_path)


def test_a_plugin_method_runs_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_registries: None
) -> None:
    install_plugin(tmp_path / "site", "toylab", PLUGIN) if (
        tmp_path / "site"
    ).mkdir() is None else None
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    argv = ["run", "digits", "--method", "toy-pull+cir", "--seeds", "0", "--profile", "smoke"]
    assert main([*argv, "--set", "toy-pull.scale=0.5", "--out", str(tmp_path / "out")]) == 0
    (path,) = (tmp_path / "out" / "runs" / "digits").glob("*.json")
    rec = json.loads(path.read_text())
    assert rec["method"] == "cir+toy-pull" and rec["config"]["method"]["toy-pull"]["scale"] == 0.5


def test_a_plugin_task_with_its_own_metric_reaches_the_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, isolated_registries: None
) -> None:
    """Adding a task and a metric touches only the plug-in's own file (the checklist's files)."""
    (tmp_path / "site").mkdir()
    install_plugin(tmp_path / "site", "toylab_metric", PLUGIN)  # a module name of its own
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    argv = ["run", "digits-spread", "--method", "ce,toy-pull", "--seeds", "0,1", "-q"]
    assert main([*argv, "--profile", "smoke", "--out", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    assert main(["table", "digits-spread", "--runs", str(tmp_path / "out")]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.index("mAP (%)") < header.index("spread (%)")  # the declared order
    from cirbench.tasks import metric_info

    assert metric_info("digits-spread", "spread").lower_is_better


def test_a_broken_plugin_is_named_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, isolated_registries: None
) -> None:
    (tmp_path / "site").mkdir()
    install_plugin(tmp_path / "site", "brokenlab", "raise ImportError('needs libfoo')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert main(["list", "methods"]) == 2
    err = capsys.readouterr().err
    assert "plug-in 'brokenlab'" in err and "needs libfoo" in err
