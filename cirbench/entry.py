"""The ``cirbench`` console script. It imports nothing heavy before it has set the environment
that exact mode needs (see :mod:`cirbench.exact`): torch reads it once, when it is imported."""

from __future__ import annotations

import sys

from cirbench.exact import prepare_environment


def run_cli() -> None:
    argv = sys.argv[1:]
    prepare_environment(argv)
    from cirbench.cli import main

    sys.exit(main(argv))
