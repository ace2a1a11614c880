"""Pretrained weights: the catalogue, the libraries' cache layouts (built here, nothing is
downloaded), strict loading into the BoT and person-search backbones, the offline error path
of the paper profiles, and the record's provenance."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import timm
import torch
import yaml
from fixture_cuhk import write_cuhk_fixture
from fixture_market import write_market_fixture
from safetensors.torch import save_file
from torchvision.models import resnet50

from cirbench.cli import main
from cirbench.config import apply_overrides
from cirbench.errors import CirbenchError
from cirbench.models import weights as w
from cirbench.models.bot import BoTNet
from cirbench.models.person_search import build_person_search
from cirbench.tasks import TASKS
from cirbench.tasks.market import Market1501

REV = "0123456789abcdef0123456789abcdef01234567"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def torchvision_cache(state: dict[str, torch.Tensor], stem: str) -> tuple[Path, str]:
    """Save ``state`` where torch.hub keeps downloads, named ``<stem>-<sha256 prefix>.pth`` as
    torchvision publishes files; return (path, full sha256)."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "tmp.pth"
    torch.save(state, tmp)
    digest = sha256(tmp)
    path = tmp.rename(folder / f"{stem}-{digest[:8]}.pth")
    return path, digest


def hub_cache(state: dict[str, torch.Tensor], repo: str, blob_name: str | None = None) -> Path:
    """``state`` as a safetensors file in huggingface_hub's cache layout: refs/main names a
    revision, snapshots/<rev>/model.safetensors links to blobs/<sha256>."""
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    (folder / "blobs").mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(REV)
    tmp = folder / "blobs" / "tmp"
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    blob = tmp.rename(folder / "blobs" / (blob_name or sha256(tmp)))
    snapshot = folder / "snapshots" / REV
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(Path("../..") / "blobs" / blob.name)
    return snapshot / "model.safetensors"


def catalogue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: dict[str, dict]) -> None:
    path = tmp_path / "weights.yaml"
    path.write_text(yaml.safe_dump(entries))
    monkeypatch.setenv(w.CATALOG_ENV, str(path))


def tv_entry(url: str, digest: str) -> dict[str, object]:
    return {
        "description": "test",
        "architecture": "resnet50",
        "source": "torchvision",
        "url": url,
        "sha256": digest,
    }


def timm_entry(hub: str) -> dict[str, object]:
    return {
        "description": "test",
        "architecture": "resnet50",
        "source": "timm",
        "hub": hub,
        "file": "model.safetensors",
    }


# --- the catalogue -------------------------------------------------------------------------


def test_catalogue_names_the_references_file_and_the_profiles_use_it() -> None:
    catalog = w.load_weights_catalog()
    ref = catalog["resnet50-tv"]
    assert ref.url == "https://download.pytorch.org/models/resnet50-19c8e357.pth"
    assert ref.file == "resnet50-19c8e357.pth" and ref.sha256 == "19c8e357"
    assert catalog["resnet50.tv_in1k"].hub == "timm/resnet50.tv_in1k"
    for entry in catalog.values():
        for use in entry.used_by:
            task, _, profile = use.partition("/")
            assert getattr(TASKS.get(task).profiles[profile], "pretrained", None) == entry.name
    for task in ("market1501", "cuhk-sysu"):
        profiles = TASKS.get(task).profiles
        assert profiles["paper"].pretrained == "resnet50-tv"
        assert profiles["smoke"].pretrained is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sha256": "00000000"}, "must start with 19c8e357"),
        ({"colour": "red"}, "unknown key"),
        ({"source": "s3"}, "source must be"),
        ({"sha256": "19C8E357"}, "lowercase hex"),
    ],
)
def test_malformed_catalogue_is_a_packaging_error(tmp_path: Path, change, message) -> None:
    entry = {**tv_entry("https://x/resnet50-19c8e357.pth", "19c8e357"), **change}
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump({"r": entry}))
    with pytest.raises(ValueError, match=message):
        w.load_weights_catalog(path)


# --- caches and resolution -------------------------------------------------------------------


def test_torchvision_file_in_torch_hub_cache_loads_without_network(tmp_path, monkeypatch) -> None:
    src = resnet50(weights=None)
    path, digest = torchvision_cache(src.state_dict(), "r50")
    catalogue(tmp_path, monkeypatch, {"r50": tv_entry(f"https://invalid/{path.name}", digest[:8])})
    resolved = w.resolve_weights("r50")
    assert resolved == w.ResolvedWeights("r50", path, digest)
    bot = BoTNet(5, "resnet50", weights=resolved)
    assert torch.equal(bot.backbone.layer4[2].conv3.weight, src.layer4[2].conv3.weight)
    assert torch.equal(bot.backbone.bn1.running_var, src.bn1.running_var)
    assert bot.pretrained_weights == {"name": "r50", "file": path.name, "sha256": digest}
    search = build_person_search("resnet50", 96, 128, resolved)
    body = search.detector.backbone
    assert torch.equal(body[0].weight, src.conv1.weight)  # conv1
    assert torch.equal(body[6][5].conv2.weight, src.layer3[5].conv2.weight)  # res4
    head = search.detector.roi_heads.box_head
    assert torch.equal(head[0][0].conv1.weight, src.layer4[0].conv1.weight)  # res5


def test_timm_file_in_hub_cache_loads_and_verifies(tmp_path, monkeypatch) -> None:
    src = timm.create_model("resnet50", pretrained=False)
    file = hub_cache(src.state_dict(), "timm/r50-test")
    catalogue(tmp_path, monkeypatch, {"r50.hub": timm_entry("timm/r50-test")})
    status = w.verify(w.get_entry("r50.hub"))
    assert status.state == "cached" and status.sha256 == file.resolve().name
    resolved = w.resolve_weights("r50.hub")
    bot = BoTNet(5, "resnet50", weights=resolved)
    assert torch.equal(
        bot.backbone.layer1[0].downsample[0].weight, src.layer1[0].downsample[0].weight
    )
    search = build_person_search("resnet50", 96, 128, resolved)
    assert torch.equal(search.detector.backbone[1].running_mean, src.bn1.running_mean)


def test_hub_file_that_differs_from_its_object_id_is_corrupt(tmp_path, monkeypatch) -> None:
    hub_cache({"w": torch.zeros(2)}, "timm/r50-test", blob_name="f" * 64)
    catalogue(tmp_path, monkeypatch, {"r50.hub": timm_entry("timm/r50-test")})
    assert w.verify(w.get_entry("r50.hub")).state == "corrupt"
    with pytest.raises(CirbenchError, match=r"does not start with the expected f{64}"):
        w.resolve_weights("r50.hub")
    assert main(["weights", "verify", "r50.hub"]) == 1


def test_local_file_matching_an_entry_is_named_by_its_digest(tmp_path, monkeypatch) -> None:
    local = tmp_path / "copy.pth"
    torch.save({"w": torch.ones(3)}, local)
    digest = sha256(local)
    catalogue(tmp_path, monkeypatch, {"r50": tv_entry(f"https://x/r50-{digest[:8]}.pth", digest)})
    assert w.resolve_weights(str(local)) == w.ResolvedWeights("r50", local, digest)
    other = tmp_path / "other.pth"
    torch.save({"w": torch.zeros(3)}, other)
    assert w.resolve_weights(str(other)).name is None
    with pytest.raises(CirbenchError, match="neither a weights name"):
        w.resolve_weights(str(tmp_path / "absent.pth"))


# --- strict key mapping ------------------------------------------------------------------------


def test_partial_file_names_the_missing_keys(tmp_path: Path) -> None:
    state = {k: v for k, v in resnet50(weights=None).state_dict().items() if "layer4" not in k}
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(CirbenchError, match=r"missing keys: layer4\.0\.bn1\.bias, .*in all"):
        BoTNet(5, "resnet50", weights=w.ResolvedWeights(None, path, "0" * 64))
    with pytest.raises(CirbenchError, match=r"missing keys: layer4\."):
        build_person_search("resnet50", 96, 128, w.ResolvedWeights(None, path, "0" * 64))


def test_other_architecture_names_shapes_and_unexpected_keys(tmp_path: Path) -> None:
    path = tmp_path / "r18.pth"
    torch.save(
        {"module." + k: v for k, v in timm.create_model("resnet18").state_dict().items()}, path
    )
    with pytest.raises(CirbenchError, match=r"missing keys: layer1\.0\.bn3.*wrong shapes"):
        BoTNet(5, "resnet50", weights=w.ResolvedWeights(None, path, "0" * 64))
    extra = tmp_path / "extra.pth"
    torch.save({**resnet50(weights=None).state_dict(), "head.weight": torch.ones(1)}, extra)
    with pytest.raises(CirbenchError, match=r"unexpected keys: head\.weight"):
        BoTNet(5, "resnet50", weights=w.ResolvedWeights(None, extra, "0" * 64))


# --- the paper profiles: offline error, from scratch, record provenance -----------------------


def test_paper_profile_offline_and_not_cached_exits_2_naming_file_and_fetch(
    tmp_path, monkeypatch, capsys
) -> None:
    fx = write_market_fixture(tmp_path / "data")
    monkeypatch.setenv("CIRBENCH_DATASETS_YAML", str(fx.catalog))
    out = tmp_path / "out"
    argv = ["run", "market1501", "--method", "ls+triplet", "--seeds", "0", "-q"]
    code = main([*argv, "--data-root", str(fx.data_root), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    expected = Path(torch.hub.get_dir()) / "checkpoints" / "resnet50-19c8e357.pth"
    for part in (str(expected), "`cirbench weights fetch resnet50-tv`", "--set train.pretrained="):
        assert part in err
    assert not out.exists()


def test_cuhk_paper_profile_offline_exits_2_before_writing(tmp_path, capsys) -> None:
    write_cuhk_fixture(tmp_path / "d" / "cuhk_sysu")
    out = tmp_path / "out"
    argv = ["run", "cuhk-sysu", "--method", "oim", "--seeds", "0", "-q", "--out", str(out)]
    assert main([*argv, "--data-root", str(tmp_path / "d")]) == 2
    assert "cirbench weights fetch resnet50-tv" in capsys.readouterr().err
    assert not out.exists()


def test_pretrained_none_trains_from_scratch() -> None:
    task = Market1501()
    cfg = apply_overrides(task.profile("paper"), {"pretrained": "none"}, "train")
    data = type("D", (), {"num_classes": 4})()
    assert cfg.pretrained is None and task.build_model(data, cfg).pretrained_weights is None


def test_record_carries_weight_name_and_checksum(tmp_path, monkeypatch, capsys) -> None:
    """The smoke pipeline with a catalogue entry laid out in torch.hub's cache."""
    fx = write_market_fixture(tmp_path / "data")
    monkeypatch.setenv("CIRBENCH_DATASETS_YAML", str(fx.catalog))
    thin = timm.create_model(
        "resnet18", num_classes=0, channels=(16, 32, 64, 128), stem_width=16
    ).state_dict()
    path, digest = torchvision_cache(thin, "thin18")
    entry = {**tv_entry(f"https://invalid/{path.name}", digest), "architecture": "resnet18"}
    catalogue(tmp_path, monkeypatch, {"thin18": entry})
    out = tmp_path / "out"
    argv = ["run", "market1501", "--profile", "smoke", "--method", "triplet", "--seeds", "0"]
    argv += ["-q", "--set", "train.pretrained=thin18", "train.epochs=1"]
    code = main([*argv, "--data-root", str(fx.data_root), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    (record_path,) = (out / "runs" / "market1501").glob("*.json")
    record = json.loads(record_path.read_text())
    assert record["weights"] == {"name": "thin18", "file": path.name, "sha256": digest}
    assert record["details"]["pretrained_backbone"] is True
    assert main(["weights", "verify", "thin18"]) == 0
    assert f"sha256 {digest}" in capsys.readouterr().out


# --- the command line ----------------------------------------------------------------------------


def test_weights_list_and_verify_report_cached_missing_corrupt(
    tmp_path, monkeypatch, capsys
) -> None:
    good, digest = torchvision_cache({"w": torch.ones(2)}, "good")
    bad, _ = torchvision_cache({"w": torch.zeros(2)}, "bad")
    entries = {
        "good": tv_entry(f"https://invalid/{good.name}", digest[:8]),
        "bad": tv_entry("https://invalid/bad-00000000.pth", "00000000"),
        "absent": tv_entry("https://invalid/absent-12345678.pth", "12345678"),
    }
    bad.rename(bad.with_name("bad-00000000.pth"))  # right name, wrong content
    catalogue(tmp_path, monkeypatch, entries)
    assert main(["weights", "list", "--checksums"]) == 0
    rows = {line.split()[0]: line.split()[2] for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows == {"good": "cached", "bad": "corrupt", "absent": "missing"}
    assert main(["weights", "verify", "good"]) == 0
    assert main(["weights", "verify", "bad"]) == 1
    assert "CORRUPT: bad" in capsys.readouterr().out
    assert main(["weights", "verify", "absent"]) == 1
    assert "`cirbench weights fetch absent`" in capsys.readouterr().out
    assert main(["weights", "verify", "god"]) == 2
    assert "Did you mean 'good'" in capsys.readouterr().err


def test_fetch_goes_through_torch_hub_and_a_network_failure_exits_2(
    tmp_path, monkeypatch, capsys
) -> None:
    from urllib.error import URLError

    catalogue(tmp_path, monkeypatch, {"r": tv_entry("https://invalid/r-12345678.pth", "12345678")})
    calls = []

    def offline(url: str, **kwargs: object) -> None:
        calls.append((url, kwargs["check_hash"]))
        raise URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    assert main(["weights", "fetch", "r"]) == 2
    err = capsys.readouterr().err
    assert calls == [("https://invalid/r-12345678.pth", True)]
    assert "cannot fetch r from https://invalid/r-12345678.pth" in err
    assert str(Path(torch.hub.get_dir()) / "checkpoints" / "r-12345678.pth") in err
