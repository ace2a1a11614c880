"""Errors a user can cause, and the one exception type the CLI turns into a clean message.

Anything that is not a :class:`CirbenchError` is a programming error and keeps its traceback.
"""


class CirbenchError(Exception):
    """A problem the user can fix: the message names the problem and the fix.

    ``exit_code`` is what the CLI returns: 2 for bad input (unknown names, bad ``--set``,
    missing or corrupt data), 1 for a run that failed on its own (a diverging loss).
    """

    exit_code = 2


class TrainingDivergedError(CirbenchError):
    """A loss became NaN or infinite; the run stops and writes no record."""

    exit_code = 1
