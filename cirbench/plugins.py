"""Methods and tasks from other installed packages, found through an entry-point group.

A package registers its own components by declaring, in its ``pyproject.toml``::

    [project.entry-points."cirbench.plugins"]
    mylab = "mylab.cirbench_components"

where ``mylab/cirbench_components.py`` imports cirbench and decorates its classes with
``@METHODS.register`` / ``@TASKS.register`` exactly as the built-in ones are (see
docs/ARCHITECTURE.md, "Add a method"). :func:`load_plugins` imports every module of the group
once; the CLI and the Python API call it before resolving any name, so a plug-in's method or task
is used by its name like a built-in one (``cirbench run digits --method mylab-loss``). This is
the mechanism pytest (``pytest11``) and many timm-based projects use.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

import cirbench.methods
import cirbench.tasks  # noqa: F401
from cirbench.errors import CirbenchError

GROUP = "cirbench.plugins"

_loaded: set[str] = set()


def load_plugins() -> list[str]:
    """Import every ``cirbench.plugins`` entry point not yet imported; return their names.

    A plug-in that fails to import (or registers a name twice) is a user error naming the
    plug-in, its module and the cause, not a traceback from deep inside cirbench.
    """
    names = []
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        if ep.value in _loaded:
            continue
        try:
            importlib.import_module(ep.value)
        except Exception as exc:  # any error of third-party code: report it as theirs
            raise CirbenchError(
                f"plug-in {ep.name!r} ({ep.value}, entry point group {GROUP!r}) failed to "
                f"load: {type(exc).__name__}: {exc}. Fix or uninstall that package."
            ) from None
        _loaded.add(ep.value)
        names.append(ep.name)
    return names
