"""The dataset catalogue: where each dataset lives under the data root, and whether it is intact.

``datasets.yaml`` (the repository's top-level file, or ``cirbench/datasets.yaml`` inside an
installed wheel; ``$CIRBENCH_DATASETS_YAML`` overrides both) lists every dataset with its folder
relative to the data root, the files it must contain (with md5 where one is published), file
counts for image folders, where to get it, and its license. Nothing is downloaded: a missing or
broken dataset ends in a :class:`~cirbench.errors.CirbenchError` that says what is wrong, the
exact folder expected, and where to get the data.

The data root is ``--data-root``, else ``$CIRBENCH_DATA``, else ``~/cirbench-data``. An entry
may also name a ``system_folder``: an absolute path where a system package installs the dataset
(Debian's ``dataset-fashion-mnist`` puts Fashion-MNIST in ``/usr/share/datasets/fashion-mnist``).
It is the one fallback: used only when the folder under the data root does not exist, and checked
exactly like it (files, md5s, counts).

A malformed ``datasets.yaml`` is a packaging error and raises :class:`ValueError`.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import importlib.util
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

import yaml
from tabulate import tabulate

from cirbench.errors import CirbenchError

if TYPE_CHECKING:  # importlib.resources.abc is Python >= 3.11; only the type is needed
    from importlib.resources.abc import Traversable

DATA_ENV = "CIRBENCH_DATA"
CATALOG_ENV = "CIRBENCH_DATASETS_YAML"
DEFAULT_DATA_ROOT = "~/cirbench-data"
BUNDLED_SOURCE = "sklearn"

State = Literal["found", "missing", "corrupt"]

_ENTRY_KEYS = frozenset(
    {"description", "source", "folder", "system_folder", "files", "counts", "license", "notes"}
)
_FILE_KEYS = frozenset({"path", "md5"})
_COUNT_KEYS = frozenset({"glob", "count"})
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]*")
_MD5_RE = re.compile(r"[0-9a-f]{32}")
_CHUNK_BYTES = 1 << 20
_SNIFF_BYTES = 512
_HTML_STARTS = (b"<!doctype html", b"<html")
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class FileSpec:
    """A file the dataset folder must contain; ``path`` is relative to the folder.

    ``md5`` is the first accepted checksum and ``also_md5`` the others: in datasets.yaml
    ``md5`` is one string or a list (e.g. an official file and a re-zipped, content-identical
    copy).
    """

    path: str
    md5: str | None = None
    also_md5: tuple[str, ...] = ()

    @property
    def accepted_md5(self) -> tuple[str, ...]:
        return () if self.md5 is None else (self.md5, *self.also_md5)


@dataclass(frozen=True)
class CountSpec:
    """``glob`` (relative to the dataset folder) must match exactly ``count`` files."""

    glob: str
    count: int


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset of ``datasets.yaml``."""

    name: str
    description: str
    source: str
    folder: str | None = None
    system_folder: str | None = None
    files: tuple[FileSpec, ...] = ()
    counts: tuple[CountSpec, ...] = ()
    license: str | None = None
    notes: str | None = None

    @property
    def bundled(self) -> bool:
        """True for data shipped inside a package (scikit-learn's digits): no folder."""
        return self.source == BUNDLED_SOURCE


@dataclass(frozen=True)
class DatasetStatus:
    """The outcome of :func:`check_dataset`: overall state and one message per problem."""

    entry: DatasetEntry
    state: State
    root: Path
    folder: Path | None
    problems: tuple[str, ...] = ()
    checksums: bool = True

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def ok(self) -> bool:
        return self.state == "found"


@dataclass(frozen=True)
class _Problem:
    absent: bool  # True: something is not there; False: it is there but wrong
    message: str


# --- data root and catalogue location ------------------------------------------------------


def resolve_data_root(cli_value: str | None) -> Path:
    """The data root: the CLI value, else ``$CIRBENCH_DATA``, else ``~/cirbench-data``."""
    raw = cli_value or os.environ.get(DATA_ENV) or DEFAULT_DATA_ROOT
    return _absolute(Path(raw))


def _absolute(path: Path) -> Path:
    """``~`` expanded and made absolute, without resolving symlinks (what the user typed)."""
    return Path(os.path.abspath(path.expanduser()))


def locate_catalog() -> Traversable:
    """``$CIRBENCH_DATASETS_YAML``, else the repository's datasets.yaml, else the packaged one."""
    override = os.environ.get(CATALOG_ENV)
    if override:
        return _override_catalog(Path(override))
    repo_file = Path(__file__).resolve().parents[2] / "datasets.yaml"
    if repo_file.is_file():
        return repo_file
    packaged = importlib.resources.files("cirbench") / "datasets.yaml"
    if packaged.is_file():
        return packaged
    raise ValueError(
        f"datasets.yaml not found: neither {repo_file} nor cirbench/datasets.yaml inside the "
        "installed package exists (the wheel must include it as package data)"
    )


def _override_catalog(path: Path) -> Path:
    if not path.is_file():
        raise CirbenchError(
            f"{CATALOG_ENV} points to {_absolute(path)}, which is not a file. "
            f"Fix the path or unset {CATALOG_ENV} to use the datasets.yaml shipped with cirbench."
        )
    return path


# --- loading and validating datasets.yaml ---------------------------------------------------


def load_catalog(path: Path | None = None) -> dict[str, DatasetEntry]:
    """Parse and validate datasets.yaml (``path``, else :func:`locate_catalog`)."""
    source: Traversable = Path(path) if path is not None else locate_catalog()
    try:
        try:
            raw = yaml.safe_load(source.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ValueError(f"{source}: not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise ValueError(f"{source}: expected a mapping of dataset name -> entry")
        return {str(name): _parse_entry(str(source), name, value) for name, value in raw.items()}
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        if path is None and os.environ.get(CATALOG_ENV):  # the user's own catalogue
            raise CirbenchError(f"${CATALOG_ENV}: {exc}; fix the file or unset it") from None
        raise


def _parse_entry(label: str, name: object, raw: object) -> DatasetEntry:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"{label}: bad dataset name {name!r} (use lowercase letters, digits, -)")
    where = f"{label}: entry {name!r}"
    data = _mapping(raw, where, _ENTRY_KEYS, {"description", "source"})
    entry = DatasetEntry(
        name=name,
        description=_text(data, "description", where),
        source=_text(data, "source", where),
        folder=_optional_text(data, "folder", where),
        system_folder=_optional_text(data, "system_folder", where),
        files=tuple(_parse_file(item, where) for item in _list(data, "files", where)),
        counts=tuple(_parse_count(item, where) for item in _list(data, "counts", where)),
        license=_optional_text(data, "license", where),
        notes=_optional_text(data, "notes", where),
    )
    _check_layout(entry, where)
    return entry


def _check_layout(entry: DatasetEntry, where: str) -> None:
    if entry.bundled:
        if (
            entry.folder is not None
            or entry.system_folder is not None
            or entry.files
            or entry.counts
        ):
            raise ValueError(f"{where}: source {BUNDLED_SOURCE} takes no folder, files or counts")
        return
    if entry.folder is None:
        raise ValueError(f"{where}: missing key folder (required unless source is sklearn)")
    _relative(entry.folder, "folder", where)
    if entry.system_folder is not None and not PurePosixPath(entry.system_folder).is_absolute():
        raise ValueError(f"{where}: system_folder {entry.system_folder!r} must be an absolute path")
    paths = [spec.path for spec in entry.files]
    duplicates = sorted({p for p in paths if paths.count(p) > 1})
    if duplicates:
        raise ValueError(f"{where}: files listed twice: {', '.join(duplicates)}")


def _parse_file(raw: object, where: str) -> FileSpec:
    data = _mapping(raw, f"{where} files", _FILE_KEYS, {"path"})
    path = _relative(_text(data, "path", where), "file path", where)
    if "md5" not in data:
        return FileSpec(path)
    raw = data["md5"]
    md5s: list[str] = []
    for md5 in raw if isinstance(raw, list) and raw else [raw]:
        if not isinstance(md5, str) or not _MD5_RE.fullmatch(md5):
            raise ValueError(
                f"{where}: file {path!r}: md5 {md5!r} is not 32 lowercase hex digits "
                "(or a non-empty list of such)"
            )
        md5s.append(md5)
    return FileSpec(path, md5s[0], tuple(md5s[1:]))


def _parse_count(raw: object, where: str) -> CountSpec:
    data = _mapping(raw, f"{where} counts", _COUNT_KEYS, {"glob", "count"})
    glob = _relative(_text(data, "glob", where), "glob", where)
    count = data["count"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"{where}: count for {glob!r} must be a non-negative integer")
    return CountSpec(glob, count)


def _mapping(
    raw: object, where: str, allowed: frozenset[str], required: set[str]
) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
    unknown = sorted(str(key) for key in raw if key not in allowed)
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    missing = sorted(required - set(raw))
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(missing)}")
    return raw


def _text(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: {key} must be a non-empty string (quote it), got {value!r}")
    return value.strip()


def _optional_text(data: Mapping[str, Any], key: str, where: str) -> str | None:
    return _text(data, key, where) if key in data else None


def _list(data: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"{where}: {key} must be a list, got {type(value).__name__}")
    return value


def _relative(value: str, what: str, where: str) -> str:
    pure = PurePosixPath(value)
    if pure.is_absolute() or ".." in pure.parts or "\\" in value:
        raise ValueError(f"{where}: {what} {value!r} must be a relative POSIX path without '..'")
    return value


# --- checking a dataset on disk -------------------------------------------------------------


def dataset_folder(entry: DatasetEntry, root: Path) -> Path:
    """The absolute folder where ``entry`` must live under ``root``."""
    if entry.folder is None:
        raise ValueError(f"dataset {entry.name!r} is bundled with scikit-learn and has no folder")
    return _absolute(Path(root)) / entry.folder


def locate_folder(entry: DatasetEntry, root: Path) -> Path:
    """The folder to check: the one under ``root`` if it exists, else the entry's
    ``system_folder`` if that exists, else the one under ``root`` (reported missing)."""
    folder = dataset_folder(entry, root)
    if not folder.is_dir() and entry.system_folder is not None:
        system = Path(entry.system_folder)
        if system.is_dir():
            return system
    return folder


def check_dataset(entry: DatasetEntry, root: Path, checksums: bool = True) -> DatasetStatus:
    """Check folder, files (size, HTML, md5 unless ``checksums=False``) and file counts; the
    folder is the one under ``root``, or the entry's ``system_folder`` (:func:`locate_folder`)."""
    root = _absolute(Path(root))
    if entry.bundled:
        return _check_bundled(entry, root, checksums)
    folder = locate_folder(entry, root)
    if not folder.is_dir():
        problem = _Problem(True, f"folder {folder} does not exist")
        return _status(entry, root, folder, [problem], checksums)
    problems = [_file_problem(folder, spec, checksums) for spec in entry.files]
    problems += [_count_problem(folder, spec) for spec in entry.counts]
    found = [p for p in problems if p is not None]
    return _status(entry, root, folder, found, checksums)


def _status(
    entry: DatasetEntry,
    root: Path,
    folder: Path | None,
    problems: list[_Problem],
    checksums: bool,
) -> DatasetStatus:
    state: State = "found"
    if any(not p.absent for p in problems):
        state = "corrupt"
    elif problems:
        state = "missing"
    messages = tuple(p.message for p in problems)
    return DatasetStatus(entry, state, root, folder, messages, checksums)


def _check_bundled(entry: DatasetEntry, root: Path, checksums: bool) -> DatasetStatus:
    problems = []
    if not _module_available("sklearn"):
        problems.append(_Problem(True, "scikit-learn is not installed: pip install scikit-learn"))
    return _status(entry, root, None, problems, checksums)


def _module_available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _file_problem(folder: Path, spec: FileSpec, checksums: bool) -> _Problem | None:
    path = folder / spec.path
    if not path.exists():
        return _Problem(True, f"file {spec.path} is missing (expected at {path})")
    if not path.is_file():
        return _Problem(False, f"{path} is not a regular file")
    if path.stat().st_size == 0:
        return _Problem(False, f"file {spec.path} is empty (0 bytes)")
    if looks_like_html(path):
        return _Problem(
            False,
            f"file {spec.path} looks like an HTML page saved instead of the data "
            "(a failed download)",
        )
    if checksums and spec.md5 is not None:
        got = md5sum(path)
        if got not in spec.accepted_md5:
            expected = " or ".join(spec.accepted_md5)
            message = f"file {spec.path}: md5 mismatch: expected {expected}, got {got}"
            return _Problem(False, message)
    return None


def _count_problem(folder: Path, spec: CountSpec) -> _Problem | None:
    found = sum(1 for path in folder.glob(spec.glob) if path.is_file())
    if found == spec.count:
        return None
    message = f"{spec.glob}: expected {spec.count} files, found {found}"
    return _Problem(found == 0, message)


def md5sum(path: Path) -> str:
    """Hex md5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def looks_like_html(path: Path) -> bool:
    """True when the first 512 bytes begin, after whitespace, with ``<!DOCTYPE html`` or ``<html``.

    Catches the login or error page a browser saves when a download link has expired.
    """
    with Path(path).open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    head = head.removeprefix(_UTF8_BOM).lstrip().lower()
    return head.startswith(_HTML_STARTS)


# --- what tasks call, and what the CLI prints -----------------------------------------------


def require_dataset(
    name: str,
    root: Path,
    checksums: bool = True,
    catalog: Mapping[str, DatasetEntry] | None = None,
) -> Path:
    """The dataset's folder under ``root``, or a :class:`CirbenchError` saying how to fix it."""
    entries = load_catalog() if catalog is None else catalog
    if name not in entries:
        raise ValueError(f"dataset {name!r} is not in datasets.yaml; known: {', '.join(entries)}")
    entry = entries[name]
    status = check_dataset(entry, root, checksums)
    if not status.ok or status.folder is None:
        raise CirbenchError(failure_message(status))
    return status.folder


def catalog_folder(name: str, root: Path) -> Path:
    """Where datasets.yaml says dataset ``name`` lives: under ``root``, or its system folder
    (:func:`locate_folder`); it may not exist."""
    return locate_folder(load_catalog()[name], root)


def existing_folder(name: str, root: Path) -> Path:
    """The dataset's folder when it exists: its reader then checks the layout and names the
    exact problem; when it does not, :func:`require_dataset`'s message says where to put what."""
    folder = catalog_folder(name, root)
    return folder if folder.is_dir() else require_dataset(name, root)


def failure_message(status: DatasetStatus) -> str:
    """Everything a user needs to fix a missing or corrupt dataset, one fact per line."""
    entry = status.entry
    lines = [f"dataset {entry.name!r} is {status.state}:"]
    lines += [f"  - {problem}" for problem in status.problems]
    if entry.bundled:
        return "\n".join(lines)
    lines.append(f"expected folder: {status.folder}")
    if entry.system_folder is not None and status.folder != Path(entry.system_folder):
        lines.append(f"  (or, installed by a system package: {entry.system_folder})")
    lines.append("it must contain:")
    lines += [f"  - {item}" for item in _expected_contents(entry)]
    lines.append(f"where to get it: {entry.source}")
    if entry.notes:
        lines.append(f"note: {entry.notes}")
    lines.append(_fix_hint(status))
    return "\n".join(lines)


def _expected_contents(entry: DatasetEntry) -> list[str]:
    files = [
        f"{f.path} (md5 {' or '.join(f.accepted_md5)})" if f.md5 else f.path for f in entry.files
    ]
    return files + [f"{c.glob}: {c.count} files" for c in entry.counts]


def _fix_hint(status: DatasetStatus) -> str:
    action = (
        "download it again and replace the files named above"
        if status.state == "corrupt"
        else "download it and place it so that the expected folder holds these files"
    )
    return (
        f"fix: {action}; or, if the data is elsewhere, pass --data-root DIR or set "
        f"{DATA_ENV}=DIR (data root now: {status.root})"
    )


def explain(status: DatasetStatus) -> str:
    """``cirbench datasets verify NAME``: every problem and its fix, or an OK line."""
    return _ok_summary(status) if status.ok else failure_message(status)


def _ok_summary(status: DatasetStatus) -> str:
    entry = status.entry
    if entry.bundled:
        return f"OK: {entry.name} is bundled with scikit-learn"
    parts = [_files_summary(entry, status.checksums)] if entry.files else []
    if entry.counts:
        total = sum(c.count for c in entry.counts)
        parts.append(f"{total} files counted in {len(entry.counts)} folders")
    return f"OK: {'; '.join(parts)} in {status.folder}"


def _files_summary(entry: DatasetEntry, checksums: bool) -> str:
    with_md5 = sum(spec.md5 is not None for spec in entry.files)
    if not checksums:
        detail = "md5 not checked"
    elif with_md5 == len(entry.files):
        detail = "md5 match"
    elif with_md5 == 0:
        detail = "no md5 published"
    else:
        detail = f"{with_md5} checked by md5"
    return f"{len(entry.files)} files verified ({detail})"


def format_status_table(statuses: Iterable[DatasetStatus]) -> str:
    """``cirbench datasets list``: one row per dataset with its state and first problem."""
    rows = [_table_row(status) for status in statuses]
    return tabulate(rows, headers=["dataset", "state", "folder", "problems"], tablefmt="simple")


def _table_row(status: DatasetStatus) -> list[str]:
    folder = "(bundled with scikit-learn)" if status.folder is None else str(status.folder)
    detail = ""
    if status.problems:
        more = len(status.problems) - 1
        detail = status.problems[0] + (f" (+{more} more)" if more else "")
    return [status.name, status.state, folder, detail]
