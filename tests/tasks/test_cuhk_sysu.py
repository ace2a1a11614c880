"""``cuhk-sysu`` end to end on a generated fixture: the CLI trains and evaluates oim and cir+oim;
with an oracle detector the evaluation gives the values computed by hand below; bad inputs end
with exit status 2, one message, and no record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from fixture_cuhk import CuhkFixture, write_cuhk_fixture

from cirbench.cli import main
from cirbench.data.cuhk_sysu import IMAGE_DIR
from cirbench.methods import MethodContext, build_method
from cirbench.models.person_search import PersonSearchNet
from cirbench.tasks import TASKS, EvalContext
from cirbench.tasks.cuhk_sysu import load_image

METRICS = {"mAP", "top1", "top5", "top10", "det_recall", "det_ap"}


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CuhkFixture]:
    data_root = tmp_path_factory.mktemp("data")
    return data_root, write_cuhk_fixture(data_root / "cuhk_sysu")


def records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("runs/cuhk-sysu/*.json"))]


def run(data_root: Path, out: Path, *extra: str) -> int:
    argv = ["run", "cuhk-sysu", "--profile", "smoke", "--seeds", "0", "--device", "cpu"]
    return main([*argv, "--data-root", str(data_root), "--out", str(out), "-q", *extra])


def test_smoke_cli_trains_and_evaluates_oim_and_cir_oim(fixture_root, tmp_path) -> None:
    data_root, _ = fixture_root
    assert run(data_root, tmp_path, "--method", "oim,cir+oim") == 0
    recs = records(tmp_path)
    assert sorted(r["method"] for r in recs) == ["cir+oim", "oim"]
    for rec in recs:
        assert set(rec["metrics"]) >= METRICS
        assert all(0.0 <= rec["metrics"][m] <= 1.0 for m in METRICS)
        terms = set(rec["history"][0])
        assert {"oim", "loss_classifier", "loss_box_reg", "loss_objectness", "total"} <= terms
        assert len(rec["details"]["ap_g100"]) == 3
        assert rec["config"]["method"]["oim"]["queue_size"] == 5000


class Oracle:
    """Detects every person of the fixture (except the target t1 in s102.jpg) at score 0.9,
    plus a look-alike of t1 at score 0.3 in s201.jpg; a person's feature is the one-hot vector
    of its name, and the distractor d0 looks exactly like t3."""

    def __init__(self, fx: CuhkFixture) -> None:
        self.who = fx.who
        names = sorted({p[4] for ps in fx.who.values() for p in ps})
        self.dim = {name: k for k, name in enumerate(names)}
        self.by_pixels = {
            load_image(fx.root / IMAGE_DIR / image).numpy().tobytes(): image for image in fx.who
        }

    def feature(self, who: str) -> torch.Tensor:
        f = torch.zeros(len(self.dim))
        f[self.dim["t3" if who == "d0" else who]] = 1.0
        return f

    def detect(self, images: list[torch.Tensor]) -> list[tuple[torch.Tensor, ...]]:
        out = []
        for img in images:
            name = self.by_pixels[img.numpy().tobytes()]
            found = [p for p in self.who[name] if (name, p[4]) != ("s102.jpg", "t1")]
            scores = [0.9] * len(found)
            if name == "s201.jpg":
                found.append((60, 20, 18, 40, "t1"))
                scores.append(0.3)
            boxes = [[x, y, x + w, y + h] for x, y, w, h, _ in found]
            feats = torch.stack([self.feature(p[4]) for p in found])
            out.append((torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores), feats))
        return out

    def query_features(self, images: list[torch.Tensor], boxes: list[torch.Tensor]) -> torch.Tensor:
        rows = []
        for img, box in zip(images, boxes, strict=True):
            name = self.by_pixels[img.numpy().tobytes()]
            corner = (int(box[0]), int(box[1]))
            rows.append(self.feature(next(p[4] for p in self.who[name] if p[:2] == corner)))
        return torch.stack(rows)


def test_cli_with_oracle_detector_gives_hand_computed_metrics(
    fixture_root, tmp_path, monkeypatch
) -> None:
    data_root, fx = fixture_root
    oracle = Oracle(fx)
    monkeypatch.setattr(PersonSearchNet, "detect", lambda self, images: oracle.detect(images))
    monkeypatch.setattr(
        PersonSearchNet, "query_features", lambda self, im, bx: oracle.query_features(im, bx)
    )
    assert run(data_root, tmp_path, "--method", "oim", "--set", "train.epochs=1") == 0
    (rec,) = records(tmp_path)
    m = rec["metrics"]
    # query t1: gallery s101 (found, rank 1), s102 (missed): AP 1 x recall 1/2 = 0.5, top-1 hit;
    #   the 0.3-score look-alike in s201 is below the detection threshold.
    # query t2: both found, nothing else similar: AP 1, top-1 hit.
    # query t3: both found, but distractor d0 in s200 ties at similarity 1: one threshold
    #   with 2 of 3 correct -> AP 2/3; among the tie the later item (d0) ranks first: top-1 miss.
    assert m["mAP"] == pytest.approx((0.5 + 1.0 + 2 / 3) / 3)
    assert m["top1"] == pytest.approx(2 / 3)
    assert m["top5"] == 1.0 and m["top10"] == 1.0
    # detection: 20 people in the 11 test scenes, 19 found, all at 0.9: recall = AP = 0.95
    assert m["det_recall"] == pytest.approx(0.95)
    assert m["det_ap"] == pytest.approx(0.95)
    assert rec["details"]["ap_g100"] == pytest.approx([0.5, 1.0, 2 / 3], abs=1e-6)


def test_gallery_sizes_are_reported_with_suffixes(fixture_root, monkeypatch) -> None:
    data_root, fx = fixture_root
    oracle = Oracle(fx)
    task = TASKS.get("cuhk-sysu")()
    data = task.load(data_root)
    cfg = task.profile("smoke")
    import dataclasses

    cfg = dataclasses.replace(cfg, gallery_sizes=(50, 100, -1))
    task.check(data, cfg)
    monkeypatch.setattr(PersonSearchNet, "detect", lambda self, images: oracle.detect(images))
    monkeypatch.setattr(
        PersonSearchNet, "query_features", lambda self, im, bx: oracle.query_features(im, bx)
    )
    model = task.build_model(data, cfg)
    method = build_method("oim", MethodContext(data.num_classes, 256))
    ev = task.evaluate(EvalContext(model, method, data, cfg, torch.device("cpu")))
    assert {"mAP", "mAP_g50", "mAP_gall", "top1_gall"} <= set(ev.metrics)
    assert ev.metrics["mAP_g50"] == ev.metrics["mAP"]  # same protocol content in the fixture
    # full pool: query t3's gallery now also holds s104/s105/s106... no new ties at 1
    assert 0.0 < ev.metrics["mAP_gall"] <= ev.metrics["mAP"] + 1e-12


def expect_exit_2(data_root: Path, out: Path, capsys, pattern: str, *extra: str) -> None:
    assert run(data_root, out, "--method", "oim", *extra) == 2
    err = capsys.readouterr().err
    assert "cirbench: error:" in err and pattern in err, err
    assert records(out) == []


def test_missing_mat_file_exits_2(tmp_path, capsys) -> None:
    fx = write_cuhk_fixture(tmp_path / "d" / "cuhk_sysu")
    (fx.root / "annotation/test/train_test/Train.mat").unlink()
    expect_exit_2(tmp_path / "d", tmp_path / "out", capsys, "Train.mat")


def test_mat_with_other_structure_exits_2(tmp_path, capsys) -> None:
    fx = write_cuhk_fixture(tmp_path / "d" / "cuhk_sysu")
    scipy.io.savemat(fx.root / "annotation/pool.mat", {"pool": np.ones((2, 2))})
    expect_exit_2(tmp_path / "d", tmp_path / "out", capsys, "does not have the structure")


def test_image_missing_on_disk_exits_2(tmp_path, capsys) -> None:
    fx = write_cuhk_fixture(tmp_path / "d" / "cuhk_sysu")
    (fx.root / "Image/SSM/s3.jpg").unlink()
    expect_exit_2(tmp_path / "d", tmp_path / "out", capsys, "s3.jpg")


def test_gallery_size_without_testg_file_exits_2(fixture_root, tmp_path, capsys) -> None:
    data_root, _ = fixture_root
    expect_exit_2(
        data_root, tmp_path, capsys, "TestG500.mat", "--set", "train.gallery_sizes=100,500"
    )


def test_horizontal_flip_mirrors_boxes() -> None:
    from cirbench.data.cuhk_sysu import Scene
    from cirbench.tasks.cuhk_sysu import scene_target

    scene = Scene("a.jpg", np.array([[10, 5, 30, 45]], dtype=np.float32), np.array([2]))
    assert scene_target(scene, True, 128)["boxes"].tolist() == [[98.0, 5.0, 118.0, 45.0]]
    assert scene_target(scene, False, 128)["pids"].tolist() == [2]


@pytest.mark.slow  # ResNet-50 on CPU: ~10 s idle, far more on a shared machine
def test_paper_model_step_detect_and_local_weights(tmp_path) -> None:
    """ResNet-50 C4 with the paper's head at a tiny image size: one step, detect, query."""
    from torchvision.models import resnet50

    from cirbench.methods import MethodContext, build_method
    from cirbench.models.person_search import build_person_search
    from cirbench.models.weights import resolve_weights

    torch.save(resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    torch.manual_seed(0)
    weights = resolve_weights(str(tmp_path / "r50.pth"))
    model = build_person_search("resnet50", 96, 128, weights)
    body = model.detector.backbone
    # SeqNet's stem: conv1 and bn1's affine fixed; batch norm otherwise ordinary and trained.
    assert type(body[1]).__name__ == "BatchNorm2d"
    assert not any(p.requires_grad for p in (body[0].weight, body[1].weight, body[1].bias))
    assert all(p.requires_grad for p in body[4].parameters())
    assert model.pretrained_weights == weights.provenance()
    method = build_method("cir+oim", MethodContext(num_classes=3, feature_dim=256)).train()
    images = [torch.rand(3, 96, 128), torch.rand(3, 96, 128)]
    targets = [
        {
            "boxes": torch.tensor([[10.0, 10.0, 40.0, 80.0], [60.0, 5.0, 90.0, 90.0]]),
            "labels": torch.ones(2, dtype=torch.int64),
            "pids": torch.tensor([0, -1]),
        },
        {
            "boxes": torch.tensor([[20.0, 10.0, 50.0, 90.0]]),
            "labels": torch.ones(1, dtype=torch.int64),
            "pids": torch.tensor([2]),
        },
    ]
    model.train()
    terms = model.training_step(images, targets, method)
    terms["total"].backward()
    assert {"oim", "loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"} <= set(
        terms
    )
    assert model.reid.weight.grad is not None and bool(torch.isfinite(terms["total"]))
    assert int(method.losses["oim"].head) > 0  # unlabeled proposals entered the queue
    model.eval()
    with torch.no_grad():
        (boxes, _scores, feats), _ = model.detect(images)
        q = model.query_features(images, [targets[0]["boxes"][0], targets[1]["boxes"][0]])
    assert feats.shape == (len(boxes), 256) and q.shape == (2, 256)
    torch.testing.assert_close(q.norm(dim=1), torch.ones(2))


def test_reported_entries_use_the_metrics_the_task_emits() -> None:
    from cirbench.reported import load_reported

    task = TASKS.get("cuhk-sysu")
    entries = [e for e in load_reported().entries if e.task == "cuhk-sysu"]
    assert {e.metric for e in entries} == {"mAP", "top1"}
    assert {e.metric for e in entries} <= set(task.metrics) == METRICS
    assert {e.protocol for e in entries} == {"gallery 100"}
    oim = {e.metric: e.value for e in entries if e.method == "oim"}
    assert oim == {"mAP": 75.5, "top1": 78.7}  # Xiao et al. 2017, percent
    assert all(e.value is None for e in entries if e.method == "cir+oim")
