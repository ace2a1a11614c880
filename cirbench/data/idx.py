"""Reader for the IDX files of MNIST and Fashion-MNIST, written against the format itself.

Format (LeCun, Cortes, Burges, http://yann.lecun.com/exdb/mnist/, "FILE FORMATS FOR THE MNIST
DATABASE"; Fashion-MNIST uses the same files, Xiao et al. 2017, arXiv:1708.07747): a big-endian
header, then the values in row-major order.

- bytes 0-1 are zero, byte 2 is the value type (0x08 = unsigned byte, the only one these
  datasets use), byte 3 the number of dimensions: so the magic number is 2049 (0x00000801) for a
  label file and 2051 (0x00000803) for an image file;
- then one 32-bit big-endian size per dimension (labels: N; images: N, rows, columns);
- then N (x rows x columns) unsigned bytes.

Files may be gzipped (the official release ships ``*.gz``); a file is decompressed when it
starts with the gzip magic bytes, whatever its name. Anything wrong (truncated or corrupt gzip,
wrong magic, a size that does not match the payload, image and label files of different lengths,
a label outside the class range) raises a :class:`~cirbench.errors.CirbenchError` that names the
file and the fix. Checksums are the catalogue's job (:func:`cirbench.data.catalog.require_dataset`),
which the task calls before this reader.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cirbench.errors import CirbenchError

LABELS_MAGIC = 0x00000801
IMAGES_MAGIC = 0x00000803
_GZIP_MAGIC = b"\x1f\x8b"
_UBYTE = 0x08


def _fix(path: Path) -> str:
    return (
        f"replace {path.name} with the file of the official release and check it with "
        "`cirbench datasets verify NAME`"
    )


def read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it is a gzip stream."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CirbenchError(f"cannot read IDX file {path}: {exc.strerror}") from None
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        reason = str(exc) or type(exc).__name__
        raise CirbenchError(
            f"{path} is not a readable gzip file (truncated or corrupted: {reason}); {_fix(path)}"
        ) from None


def parse_idx(data: bytes, magic: int, path: Path) -> NDArray[np.uint8]:
    """The uint8 array of an IDX payload whose header must carry ``magic``."""
    dims = magic & 0xFF
    header = 4 + 4 * dims
    if len(data) < header:
        raise CirbenchError(
            f"{path}: {len(data)} bytes, shorter than the {header}-byte IDX header "
            f"(truncated); {_fix(path)}"
        )
    (got,) = struct.unpack(">I", data[:4])
    if got != magic:
        raise CirbenchError(
            f"{path}: magic number {got:#010x}, expected {magic:#010x} "
            f"({_kind(magic)} file of unsigned bytes); {_fix(path)}"
        )
    shape = struct.unpack(f">{dims}I", data[4:header])
    expected = int(np.prod(shape, dtype=np.int64))
    payload = len(data) - header
    if payload != expected:
        what = "truncated" if payload < expected else "trailing bytes"
        raise CirbenchError(
            f"{path}: header says {' x '.join(map(str, shape))} = {expected} values, the file "
            f"holds {payload} ({what}); {_fix(path)}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _kind(magic: int) -> str:
    return "a label" if magic == LABELS_MAGIC else "an image"


def read_images(path: Path) -> NDArray[np.uint8]:
    """An image file as (N, rows, columns) uint8."""
    return parse_idx(read_bytes(path), IMAGES_MAGIC, Path(path))


def read_labels(path: Path, classes: int) -> NDArray[np.int64]:
    """A label file as (N,) int64, every value in ``0 .. classes - 1``."""
    labels = parse_idx(read_bytes(path), LABELS_MAGIC, Path(path))
    if len(labels) and int(labels.max()) >= classes:
        raise CirbenchError(
            f"{path}: labels must be in 0..{classes - 1}, found {int(labels.max())}; "
            f"{_fix(Path(path))}"
        )
    return labels.astype(np.int64)


def read_pair(
    images_path: Path, labels_path: Path, classes: int
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Images and their labels, checked to be the same number."""
    images = read_images(images_path)
    labels = read_labels(labels_path, classes)
    if len(images) != len(labels):
        raise CirbenchError(
            f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels; "
            "the two files must come from the same split of the same release"
        )
    return images, labels
