"""Method components; importing this package registers every key in :data:`METHODS`."""

from cirbench.methods import ce, center, cir, circle, circle_cls, ls, oim, proto, triplet  # noqa: F401  (registration side effects)
from cirbench.methods.base import (
    METHODS,
    Loss,
    Method,
    MethodContext,
    MethodSpec,
    Perturbation,
    build_method,
)

__all__ = [
    "METHODS",
    "Loss",
    "Method",
    "MethodContext",
    "MethodSpec",
    "Perturbation",
    "build_method",
]
