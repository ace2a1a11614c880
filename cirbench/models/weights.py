"""Pretrained backbone weights: the catalogue (``weights.yaml``), the libraries' caches, and a
strict loader.

The references start from ImageNet weights: reid-strong-baseline loads torchvision's
``resnet50-19c8e357.pth`` (``configs/softmax_triplet.yml`` line 3, ``PRETRAIN_PATH``) and SeqNet
calls torchvision's ``resnet50(pretrained=True)`` (``models/resnet.py`` line 44, torchvision
0.4.0 in its ``requirements.txt``, whose URL is that same file). ``weights.yaml`` (repository
root, or ``cirbench/weights.yaml`` in a wheel; ``$CIRBENCH_WEIGHTS_YAML`` overrides) names each
weight set, its source, its SHA-256 (full or the published prefix) and the profiles using it.

Where files live: nothing here downloads by hand. ``source: torchvision`` files are fetched by
``torch.hub.load_state_dict_from_url`` into ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME``,
default ``~/.cache/torch``), which also checks the hash prefix in the file name; ``source: timm``
files by ``huggingface_hub.hf_hub_download`` into the hub cache (``$HF_HUB_CACHE``). A run only
reads the cache (:func:`resolve_weights`); missing weights are a :class:`CirbenchError` naming
the file, the fetch command, where to copy it, and the ``--set`` for a local file.

Loading (:func:`load_backbone_state`): a torchvision ``.pth`` or a timm ``.safetensors`` ResNet
state dict (timm's ResNet uses torchvision's parameter names: ``conv1``, ``bn1``,
``layerN.i.convK``, ``layerN.i.downsample.{0,1}``), optionally wrapped in ``state_dict`` /
``model`` or prefixed with ``module.``; the classifier (``fc.*``) is dropped. Every other key
must match the target by name and shape, else the error names the missing, unexpected and
mismatched keys: never a silent partial load. ``num_batches_tracked`` is not compared (the 2017
torchvision file predates it).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import yaml
from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
from safetensors.torch import load_file
from torch import Tensor, nn

from cirbench.errors import CirbenchError, did_you_mean

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

CATALOG_ENV = "CIRBENCH_WEIGHTS_YAML"
Source = Literal["torchvision", "timm"]
State = Literal["cached", "missing", "corrupt"]

_KEYS = frozenset(
    {"description", "architecture", "source", "url", "hub", "file", "sha256", "used_by", "notes"}
)
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]*")
_SHA_RE = re.compile(r"[0-9a-f]{8,64}")
_HUB_HASH_RE = re.compile(r"-([a-f0-9]*)\.")  # torch.hub's HASH_REGEX on the file name
_CHUNK = 1 << 20
_IGNORED = ("fc.",)  # the ImageNet classifier
_NOT_COMPARED = "num_batches_tracked"


@dataclass(frozen=True)
class WeightsEntry:
    """One weight set of ``weights.yaml``."""

    name: str
    description: str
    architecture: str
    source: Source
    url: str | None = None
    hub: str | None = None
    file: str = ""
    sha256: str | None = None
    used_by: tuple[str, ...] = ()
    notes: str | None = None


@dataclass(frozen=True)
class ResolvedWeights:
    """A weights file on disk and what it is: ``name`` is the catalogue entry (None for a local
    file that matches none), ``sha256`` the full digest of the file."""

    name: str | None
    path: Path
    sha256: str

    def provenance(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.path.name, "sha256": self.sha256}


@dataclass(frozen=True)
class WeightsStatus:
    entry: WeightsEntry
    state: State
    path: Path
    sha256: str | None = None
    problem: str = ""


# --- catalogue -----------------------------------------------------------------------------


def locate_weights_catalog() -> Path | Traversable:
    """``$CIRBENCH_WEIGHTS_YAML``, else the repository's weights.yaml, else the packaged one."""
    override = os.environ.get(CATALOG_ENV)
    if override:
        if not Path(override).is_file():
            raise CirbenchError(f"{CATALOG_ENV}={override} is not a file; fix or unset it")
        return Path(override)
    repo_file = Path(__file__).resolve().parents[2] / "weights.yaml"
    if repo_file.is_file():
        return repo_file
    packaged = importlib.resources.files("cirbench") / "weights.yaml"
    if packaged.is_file():
        return packaged
    raise ValueError(f"weights.yaml not found: neither {repo_file} nor the packaged copy exists")


def load_weights_catalog(path: Path | None = None) -> dict[str, WeightsEntry]:
    """Parse and validate weights.yaml; a malformed file raises ValueError (a packaging bug)."""
    source = Path(path) if path is not None else locate_weights_catalog()
    raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: expected a mapping of weights name -> entry")
    return {
        str(name): _parse_entry(f"{source}: {name!r}", name, value) for name, value in raw.items()
    }


def _parse_entry(where: str, name: object, raw: object) -> WeightsEntry:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"{where}: bad name (lowercase letters, digits, '.', '_', '-')")
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping")
    unknown = sorted(set(map(str, raw)) - _KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}")
    text = {k: _text(raw, k, where) for k in _KEYS - {"used_by"} if k in raw}
    for key in ("description", "architecture", "source"):
        if key not in text:
            raise ValueError(f"{where}: missing key {key}")
    source = text["source"]
    if source == "torchvision":
        if "url" not in text or "hub" in text or "file" in text:
            raise ValueError(f"{where}: source torchvision takes url (no hub, no file)")
        file = text["url"].rsplit("/", 1)[-1]
    elif source == "timm":
        if "hub" not in text or "file" not in text or "url" in text:
            raise ValueError(f"{where}: source timm takes hub and file (no url)")
        file = text["file"]
    else:
        raise ValueError(f"{where}: source must be torchvision or timm, got {source!r}")
    sha = text.get("sha256")
    if sha is not None and not _SHA_RE.fullmatch(sha):
        raise ValueError(f"{where}: sha256 must be 8 to 64 lowercase hex digits")
    published = hash_prefix(text["url"]) if source == "torchvision" else None
    if published and (sha is None or not sha.startswith(published)):
        raise ValueError(f"{where}: sha256 must start with {published}, the file name's prefix")
    used_by = raw.get("used_by", [])
    if not isinstance(used_by, list) or not all(isinstance(u, str) for u in used_by):
        raise ValueError(f"{where}: used_by must be a list of task/profile strings")
    return WeightsEntry(
        name=name,
        description=text["description"],
        architecture=text["architecture"],
        source="torchvision" if source == "torchvision" else "timm",
        url=text.get("url"),
        hub=text.get("hub"),
        file=file,
        sha256=sha,
        used_by=tuple(used_by),
        notes=text.get("notes"),
    )


def _text(raw: Mapping[Any, Any], key: str, where: str) -> str:
    value = raw[key]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: {key} must be a non-empty string")
    return value.strip()


def get_entry(name: str, catalog: Mapping[str, WeightsEntry] | None = None) -> WeightsEntry:
    catalog = load_weights_catalog() if catalog is None else catalog
    if name not in catalog:
        hint = did_you_mean(name, catalog, n=2)
        raise CirbenchError(f"unknown weights {name!r}.{hint} Known: {', '.join(catalog)}.")
    return catalog[name]


# --- the libraries' caches -----------------------------------------------------------------


def hub_folder(entry: WeightsEntry) -> Path:
    """huggingface_hub's cache folder of ``entry``'s repository (``models--owner--name``)."""
    assert entry.hub is not None
    return Path(constants.HF_HUB_CACHE) / f"models--{entry.hub.replace('/', '--')}"


def cache_path(entry: WeightsEntry) -> Path:
    """Where the library keeps (or would keep) ``entry``'s file on this machine."""
    if entry.source == "torchvision":
        return Path(torch.hub.get_dir()) / "checkpoints" / entry.file
    found = _hub_cached(entry)
    return found if found is not None else hub_folder(entry) / "snapshots" / "REVISION" / entry.file


def copy_hint(entry: WeightsEntry) -> str:
    """What to copy where, so that the library finds it here."""
    if entry.source == "torchvision":
        return f"copy the file to {cache_path(entry)}"
    folder = hub_folder(entry)
    return f"copy its cache folder {folder.name}/ (refs/, snapshots/, blobs/) to {folder}"


def _hub_cached(entry: WeightsEntry) -> Path | None:
    assert entry.hub is not None
    found = try_to_load_from_cache(entry.hub, entry.file)
    return Path(found) if isinstance(found, str) else None


def cached_file(entry: WeightsEntry) -> Path | None:
    """The cached file of ``entry``, or None; never touches the network."""
    if entry.source == "torchvision":
        path = cache_path(entry)
        return path if path.is_file() else None
    return _hub_cached(entry)


def fetch(entry: WeightsEntry) -> Path:
    """Download ``entry`` through its library's cache (no-op when cached); return the file."""
    try:
        if entry.source == "torchvision":
            assert entry.url is not None
            torch.hub.load_state_dict_from_url(
                entry.url, map_location="cpu", progress=False, check_hash=True, weights_only=True
            )
            return cache_path(entry)
        assert entry.hub is not None
        return Path(hf_hub_download(entry.hub, entry.file))
    except (OSError, RuntimeError) as exc:  # URLError, HTTP errors, hash mismatch
        where = entry.url or f"the Hugging Face hub ({entry.hub})"
        raise CirbenchError(
            f"cannot fetch {entry.name} from {where}: {exc}. On a machine with internet run "
            f"`cirbench weights fetch {entry.name}` and {copy_hint(entry)}"
        ) from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def expected_sha256(entry: WeightsEntry, path: Path) -> str | None:
    """The catalogue's digest (or prefix); for an unpinned hub file, the object id that
    huggingface_hub stored as the blob's name (the hub's SHA-256 of an LFS file)."""
    if entry.sha256 is not None:
        return entry.sha256
    blob = path.resolve().name
    return blob if re.fullmatch(r"[0-9a-f]{64}", blob) else None


def verify(entry: WeightsEntry) -> WeightsStatus:
    """Cached, missing, or corrupt (digest differs from the catalogue's)."""
    path = cached_file(entry)
    if path is None:
        return WeightsStatus(entry, "missing", cache_path(entry), problem="not in the cache")
    digest = sha256_of(path)
    expected = expected_sha256(entry, path)
    if expected is None:
        return WeightsStatus(entry, "cached", path, digest, "no published sha256 to compare")
    if not digest.startswith(expected):
        problem = f"sha256 {digest[:16]}... does not start with the expected {expected}"
        return WeightsStatus(entry, "corrupt", path, digest, problem)
    return WeightsStatus(entry, "cached", path, digest)


def missing_message(entry: WeightsEntry) -> str:
    """One line: the file, the fetch command, where to copy it, the --set for a local file."""
    return (
        f"pretrained weights {entry.name} ({entry.file}) are not cached at {cache_path(entry)} "
        f"and runs never download; on a machine with internet run `cirbench weights fetch "
        f"{entry.name}` and {copy_hint(entry)} here, or pass --set "
        f"train.pretrained=/path/to/{entry.file} (--set train.pretrained=none trains from "
        "scratch, not comparable with the papers)"
    )


def resolve_weights(value: str) -> ResolvedWeights:
    """``value`` is a catalogue name (read from the library's cache, verified) or a local file
    (identified as a catalogue entry when its digest matches one)."""
    catalog = load_weights_catalog()
    if value in catalog:
        status = verify(catalog[value])
        if status.state == "missing":
            raise CirbenchError(missing_message(status.entry))
        if status.state == "corrupt":
            raise CirbenchError(
                f"pretrained weights {value} at {status.path}: {status.problem}; delete the file "
                f"and run `cirbench weights fetch {value}` again"
            )
        assert status.sha256 is not None
        return ResolvedWeights(value, status.path, status.sha256)
    path = Path(value).expanduser()
    if not path.is_file():
        raise CirbenchError(
            f"--set train.pretrained={value}: neither a weights name ({', '.join(catalog)}; "
            "see `cirbench weights list`) nor a file; give one, or none to train from scratch"
        )
    digest = sha256_of(path)
    named = [
        e.name for e in catalog.values() if e.sha256 is not None and digest.startswith(e.sha256)
    ]
    return ResolvedWeights(named[0] if named else None, path, digest)


# --- loading a ResNet state dict -------------------------------------------------------------


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """A torchvision ``.pth`` (``torch.load``, weights only) or a ``.safetensors`` file."""
    try:
        if path.suffix == ".safetensors":
            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # whatever makes a file unreadable, the fix is a new copy
        raise CirbenchError(
            f"{path} is not a readable state dict ({exc}); fetch it again"
        ) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CirbenchError(f"{path} does not hold a state dict of tensors")
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def _keys_problem(path: Path, missing: list[str], unexpected: list[str], shapes: list[str]) -> str:
    def show(keys: list[str]) -> str:
        return ", ".join(keys[:6]) + (f", ... ({len(keys)} in all)" if len(keys) > 6 else "")

    parts = [f"missing keys: {show(missing)}"] if missing else []
    parts += [f"unexpected keys: {show(unexpected)}"] if unexpected else []
    parts += [f"wrong shapes: {show(shapes)}"] if shapes else []
    return (
        f"{path} does not fit the backbone ({'; '.join(parts)}). Give the full ResNet state dict "
        "of the architecture train.backbone names (torchvision or timm key names)"
    )


def load_backbone_state(module: nn.Module, path: Path, skip: tuple[str, ...] = _IGNORED) -> None:
    """Load ``path`` into ``module`` strictly (names and shapes), ignoring keys under ``skip``
    on both sides and ``num_batches_tracked``; any difference is a CirbenchError naming keys."""
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(skip)}
    target = {k: v for k, v in module.state_dict().items() if not k.startswith(skip)}

    def compared(keys: Mapping[str, Tensor]) -> set[str]:
        return {k for k in keys if not k.endswith(_NOT_COMPARED)}

    missing = sorted(compared(target) - compared(state))
    unexpected = sorted(compared(state) - compared(target))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(target[k].shape)}"
        for k in sorted(compared(target) & compared(state))
        if state[k].shape != target[k].shape
    ]
    if missing or unexpected or shapes:
        raise CirbenchError(_keys_problem(path, missing, unexpected, shapes))
    loadable = {k: v for k, v in state.items() if k in target}
    result = module.load_state_dict(loadable, strict=False)
    left = [
        k for k in result.missing_keys if not k.startswith(skip) and not k.endswith(_NOT_COMPARED)
    ]
    assert not left and not result.unexpected_keys, (left, result.unexpected_keys)


def hash_prefix(url: str) -> str | None:
    """The SHA-256 prefix torch.hub reads from a published file name (``name-<hex>.pth``)."""
    found = _HUB_HASH_RE.search(url.rsplit("/", 1)[-1])
    return found.group(1) if found else None
