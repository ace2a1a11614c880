"""``python -m cirbench ...`` is the ``cirbench`` command (used by sweep jobs)."""

from cirbench.cli import run_cli

run_cli()
