from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fixture_market import write_market_fixture

from cirbench.cli import main
from cirbench.config import apply_overrides
from cirbench.engine import lr_factor
from cirbench.errors import CirbenchError
from cirbench.methods import MethodContext, build_method
from cirbench.models.bot import BoTNet
from cirbench.models.weights import resolve_weights
from cirbench.tasks import TASKS
from cirbench.tasks.market import Market1501, MarketConfig, RandomErasing

SMOKE = ["--profile", "smoke", "--seeds", "0", "-q"]


@pytest.fixture()
def fixture_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    fx = write_market_fixture(tmp_path / "data")
    monkeypatch.setenv("CIRBENCH_DATASETS_YAML", str(fx.catalog))
    return fx


def run(out: Path, *args: str) -> int:
    return main(["run", "market1501", *args, "--out", str(out)])


def records(out: Path) -> list[Path]:
    return sorted((out / "runs").glob("*/*.json"))


def test_smoke_cli_end_to_end(fixture_root, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = run(
        out,
        "--method",
        "ls+triplet,cir+ls+triplet",
        "--data-root",
        str(fixture_root.data_root),
        *SMOKE,
    )
    assert code == 0, capsys.readouterr().err
    recs = [json.loads(p.read_text()) for p in records(out)]
    assert sorted(r["method"] for r in recs) == ["cir+ls+triplet", "ls+triplet"]
    for rec in recs:
        assert set(rec["metrics"]) == {"recall@1", "recall@5", "recall@10", "mAP", "mINP"}
        assert all(0.0 <= v <= 1.0 for v in rec["metrics"].values())
        d = rec["details"]
        assert d["pretrained_backbone"] is False and d["backbone"] == "resnet18"
        assert d["backbone_width"] == 16
        assert d["num_queries"] == fixture_root.query_images
        assert d["num_gallery"] == fixture_root.gallery_images
        assert rec["config"]["train"]["pretrained"] is None
        assert rec["dataset"]["fingerprint"].startswith("market1501:sha256:")
    assert "| ls+triplet " in capsys.readouterr().out


@pytest.mark.slow
def test_same_seed_same_metrics(fixture_root, tmp_path: Path) -> None:
    args = [
        "--method",
        "cir+triplet",
        "--data-root",
        str(fixture_root.data_root),
        *SMOKE,
        "--set",
        "train.epochs=1",
    ]
    assert run(tmp_path / "a", *args) == 0
    assert run(tmp_path / "b", *args) == 0
    a, b = (json.loads(records(tmp_path / s)[0].read_text())["metrics"] for s in "ab")
    assert a == b


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda f: (f / "query").rename(f / "q"), "query/ missing"),
        (
            lambda f: (f / "query" / "0100_c1s1_999999_01.jpg").write_bytes(b"GIF89a"),
            "unreadable image query/0100_c1s1_999999_01.jpg",
        ),
        (lambda f: (f / "query" / "person.jpg").write_bytes(b"\xff\xd8\xff"), "bad file name"),
    ],
)
def test_bad_trees_exit_2_without_record(
    fixture_root, tmp_path: Path, capsys, break_it, message: str
) -> None:
    break_it(fixture_root.folder)
    out = tmp_path / "out"
    assert (
        run(out, "--method", "ls+triplet", "--data-root", str(fixture_root.data_root), *SMOKE) == 2
    )
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert records(out) == []


def test_missing_dataset_says_where_to_put_it(tmp_path: Path, capsys) -> None:
    assert run(tmp_path / "out", "--data-root", str(tmp_path / "nothing"), *SMOKE) == 2
    err = capsys.readouterr().err
    assert "Market-1501-v15.09.15" in err and "where to get it" in err


def test_truncated_jpeg_fails_at_decode_with_its_name(fixture_root, tmp_path: Path, capsys) -> None:
    train = sorted((fixture_root.folder / "bounding_box_train").glob("*.jpg"))
    victim = train[0]
    victim.write_bytes(victim.read_bytes()[:40])  # JPEG signature kept, data cut
    assert (
        run(
            tmp_path / "out",
            "--method",
            "ls+triplet",
            "--data-root",
            str(fixture_root.data_root),
            *SMOKE,
        )
        == 2
    )
    err = capsys.readouterr().err
    assert f"unreadable image bounding_box_train/{victim.name}" in err
    assert "Traceback" not in err


def test_file_counts_are_checked_against_the_catalogue(
    fixture_root, tmp_path: Path, capsys
) -> None:
    extra = fixture_root.folder / "bounding_box_train" / "0001_c1s1_777777_01.jpg"
    extra.write_bytes((fixture_root.folder / "query").glob("*.jpg").__next__().read_bytes())
    assert run(tmp_path / "out", "--data-root", str(fixture_root.data_root), *SMOKE) == 2
    assert "bounding_box_train/*.jpg: expected" in capsys.readouterr().err


def test_paper_profile_is_the_strong_baseline() -> None:
    cfg = Market1501.profiles["paper"]
    assert isinstance(cfg, MarketConfig)
    assert (cfg.epochs, cfg.batch_size, cfg.p, cfg.k, cfg.lr, cfg.weight_decay) == (
        120,
        64,
        16,
        4,
        3.5e-4,
        5e-4,
    )

    # reid-strong-baseline: WarmupMultiStepLR(steps 40/70, gamma 0.1, factor 0.01, 10 iters,
    # linear) stepped at every epoch start after its constructor's step: epoch e (1-based) runs
    # at the scheduler's value for last_epoch = e (solver/lr_scheduler.py lines 43-55).
    def reference(e: int) -> float:
        alpha = e / 10
        warm = 0.01 * (1 - alpha) + alpha if e < 10 else 1.0
        return warm * 0.1 ** sum(e >= m for m in (40, 70))

    ours = [lr_factor(i, cfg) for i in range(cfg.epochs)]
    assert ours == pytest.approx([reference(e) for e in range(1, 121)], rel=1e-12)
    assert ours[0] == pytest.approx(0.109) and ours[39] == pytest.approx(0.1)
    assert (cfg.height, cfg.width, cfg.pad, cfg.flip, cfg.erasing) == (256, 128, 10, 0.5, 0.5)
    assert cfg.backbone == "resnet50" and cfg.last_stride == 1 and cfg.pretrained == "resnet50-tv"


def test_set_checks_p_times_k() -> None:
    cfg = Market1501.profiles["paper"]
    with pytest.raises(CirbenchError, match="must equal p"):
        apply_overrides(cfg, {"p": "8"}, "train")
    ok = apply_overrides(cfg, {"p": "8", "batch_size": "32", "pretrained": "/w.pth"}, "train")
    assert ok.p == 8 and ok.pretrained == "/w.pth"


def test_bot_model_contract() -> None:
    torch.manual_seed(0)
    model = BoTNet(num_classes=7, backbone="resnet18")
    x = torch.randn(4, 3, 64, 32)
    f = model(x)
    assert f.shape == (4, 512) and model.embed_dim == 512
    assert model.head is not None and model.head(f).shape == (4, 7)
    neck = model.head
    assert not neck.bn.bias.requires_grad and neck.classifier.bias is None
    # last stride 1: layer4 keeps layer3's spatial size
    feats = model.backbone.forward_features(x)
    assert feats.shape[-2:] == (4, 2)
    model.eval()
    assert torch.allclose(model.embed(x), neck.bn(model(x)))


def test_pretrained_weights_are_loaded(tmp_path: Path) -> None:
    import timm

    src = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "r18.pth"
    torch.save(src.state_dict(), path)  # includes fc.*: ignored
    model = BoTNet(3, "resnet18", weights=resolve_weights(str(path)))
    assert torch.equal(model.backbone.conv1.weight, src.conv1.weight)


def test_random_erasing_erases_with_the_mean() -> None:
    torch.manual_seed(0)
    img = torch.full((3, 64, 32), 5.0)
    out = RandomErasing(1.0)(img.clone())
    erased = out[0] != 5.0
    assert erased.any() and torch.allclose(out[0][erased], torch.tensor(0.485))
    assert torch.equal(RandomErasing(0.0)(img.clone()), img)


def test_all_default_methods_build_for_the_task() -> None:
    task = TASKS.get("market1501")()
    for spec in task.default_methods:
        method = build_method(
            spec, MethodContext(num_classes=5, feature_dim=16), defaults=task.method_defaults
        )
        assert method.requires <= task.provides
