"""A small generic name -> object registry used for tasks and methods.

Registration is a decorator; a name registered twice raises; an unknown name raises a
:class:`~cirbench.errors.CirbenchError` that suggests the closest registered names.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from cirbench.errors import CirbenchError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects of one kind (``kind`` is used in error messages). ``key`` names the
    class attribute that holds an object's registry name (``key`` for methods, ``name`` for
    tasks), so a name is written once, on the class."""

    def __init__(self, kind: str, key: str = "key") -> None:
        self.kind = kind
        self.key = key
        self._items: dict[str, T] = {}

    def register(self, obj: T) -> T:
        """Decorator: ``@METHODS.register`` on a class registers it under its own ``key``."""
        name = getattr(obj, self.key, None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{obj!r} has no {self.key!r} to register it under as a {self.kind}")
        return self.register_as(name)(obj)

    def register_as(self, name: str) -> Callable[[T], T]:
        """Decorator for an object without a key attribute: ``@REGISTRY.register_as("x")``."""

        def decorate(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return decorate

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise CirbenchError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        hint = did_you_mean(name, self._items, n=3, cutoff=0.5)
        return (
            f"unknown {self.kind} {name!r}.{hint} "
            f"Known {self.kind}s: {', '.join(sorted(self._items))}."
        )

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style glob, sorted."""
        return sorted(n for n in self._items if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)
