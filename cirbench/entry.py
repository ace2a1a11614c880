"""The ``cirbench`` console script. It imports nothing heavy before it has set the environment
that exact mode needs (see :mod:`cirbench.exact`): torch reads it once, when it is imported."""

from __future__ import annotations

import os
import sys

from cirbench.exact import prepare_environment


def run_cli() -> None:
    argv = sys.argv[1:]
    prepare_environment(argv)
    from cirbench.cli import main  # only now: torch loads with the environment set

    try:
        code = main(argv)
        sys.stdout.flush()
    except BrokenPipeError:  # `cirbench table ... | head`: the reader left; no traceback
        # Python would try to flush stdout again at exit and fail the same way
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141  # what a shell reports for a process ended by SIGPIPE (128 + 13)
    sys.exit(code)


def slurm_job(argv: list[str]) -> int:
    """What a SLURM array task of a sweep runs: one ``cirbench run`` in-process (the job's
    environment comes from the sweep, so nothing needs setting before torch loads)."""
    from cirbench.cli import main  # lazily, as in run_cli: cli imports the sweep module

    code = main(argv)
    if code != 0:
        raise RuntimeError(f"cirbench {' '.join(argv)} exited with status {code}")
    return code
