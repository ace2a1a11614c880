"""The one way a task names the exact data it used: ``"<name>:sha256:<16 hex digits>"``.

Records store it (``config.dataset``) and it is part of the config hash, so two runs on different
bytes never share a record name. Each task chooses what to feed in (pixels and labels, file names
and sizes, ...); the digest is over the parts' bytes, concatenated in order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np


def data_fingerprint(name: str, parts: Iterable[bytes | np.ndarray]) -> str:
    """sha256 over ``parts`` (arrays as their C-order bytes), first 16 hex digits.

    Examples:
        >>> data_fingerprint("toy", [b"ab", np.arange(2, dtype=np.uint8)])
        'toy:sha256:a5f71386bd78906e'
    """
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else np.ascontiguousarray(part).tobytes())
    return f"{name}:sha256:{digest.hexdigest()[:16]}"
