"""Errors a user can cause, and the one exception type the CLI turns into a clean message.

Anything that is not a :class:`CirbenchError` is a programming error and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, choices: Iterable[str], n: int = 1, cutoff: float = 0.6) -> str:
    """`` Did you mean 'x'?`` (or ``'x' or 'y'``) for the closest of ``choices``, else ``""``:
    the one suggestion helper behind every "unknown name" message."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=cutoff)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


class CirbenchError(Exception):
    """A problem the user can fix: the message names the problem and the fix.

    ``exit_code`` is what the CLI returns: 2 for bad input (unknown names, bad ``--set``,
    missing or corrupt data), 1 for a run that failed on its own (a diverging loss).
    """

    exit_code = 2


class TrainingDivergedError(CirbenchError):
    """A loss became NaN or infinite; the run stops and writes no record."""

    exit_code = 1
