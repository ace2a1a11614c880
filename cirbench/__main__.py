"""``python -m cirbench ...`` is the ``cirbench`` command (used by sweep jobs and relaunches)."""

from cirbench.entry import run_cli

run_cli()
