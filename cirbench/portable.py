"""CPU kernels whose bits do not depend on the CPU, installed by exact mode (:mod:`cirbench.exact`).

With ``ATEN_CPU_CAPABILITY=default`` most ATen kernels are plain compiled C++ and give the same
bits everywhere, but a few elementwise functions still call MKL's vector math library (VML, high
accuracy mode), whose code for them is built on the approximate ``rcpps``/``rsqrtps``
instructions; those differ between Intel and AMD (and emulators), and ``MKL_CBWR`` does not
make them agree. Found by hashing 38 ops on this machine (AMD EPYC) and under
``qemu-x86_64 -cpu Haswell-v4`` (an Intel CPU, GenuineIntel) with exact mode's settings: only
``sqrt`` (float and double, also through ``pow(x, 0.5)`` and ``cdist``), ``log10``, ``acos``,
``asin`` and ``atan`` differed; exp, log, tanh, erf, sigmoid, softmax, reductions, BLAS (with
``MKL_CBWR=COMPATIBLE``), batch norm and cross-entropy did not.

With this module installed (and NNPACK off), the 33 other ops hashed gave the same bits natively
and under the emulated ``Haswell-v4``, ``SandyBridge-v2`` (AVX, no FMA) and ``Nehalem-v2`` (no
AVX), with one exception: ``pow(x, 0.5)``, which ATen computes without dispatching to ``sqrt``.

``sqrt`` is everywhere in training (Adam's denominator, Euclidean distances), so exact mode
replaces its CPU kernel with NumPy's, which is the IEEE square root instruction (correctly
rounded on every x86-64 CPU). The other four are not used by any cirbench method; exact mode
makes them refuse to run rather than give CPU-dependent bits silently.

Installed through ``torch.library`` on the ``CPU`` dispatch key, beneath autograd, so gradients,
in-place and ``out=`` forms and calls from inside ATen (``cdist``, optimizers) all take it.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

#: The ops exact mode refuses, with the MKL VML function behind each.
REFUSED = {"log10": "vsLog10", "acos": "vsAcos", "asin": "vsAsin", "atan": "vsAtan"}

_LIBRARY: list[Any] = []  # the registration lives as long as this list holds it


def sqrt_values(x: Tensor) -> Tensor:
    """Correctly rounded square root of ``x`` (a new tensor, torch's result dtype)."""
    x = x.detach().resolve_conj().resolve_neg()
    if not (x.is_floating_point() or x.is_complex()):
        x = x.to(torch.get_default_dtype())  # integers and bools: as torch.sqrt promotes them
    if x.dtype in (torch.float16, torch.bfloat16):  # NumPy has no bfloat16: float32, rounded back
        return torch.from_numpy(np.sqrt(x.float().contiguous().numpy())).to(x.dtype)
    return torch.from_numpy(np.sqrt(x.contiguous().numpy()))


def _sqrt_out(x: Tensor, *, out: Tensor) -> Tensor:
    result = sqrt_values(x)
    out.resize_(result.shape)
    out.copy_(result)
    return out


def _sqrt_inplace(x: Tensor) -> Tensor:
    x.copy_(sqrt_values(x))
    return x


def _refuse(name: str) -> Any:
    def kernel(*args: Any, **kwargs: Any) -> Tensor:
        raise RuntimeError(
            f"exact mode: torch.{name} on CPU runs MKL's {REFUSED[name]}, whose bits differ "
            "between CPUs, so a --exact run cannot use it; run without --exact"
        )

    return kernel


def install() -> None:
    """Replace the CPU kernels above for the rest of this process (idempotent)."""
    if _LIBRARY:
        return
    lib = torch.library.Library("aten", "IMPL")  # type: ignore[no-untyped-call]
    with warnings.catch_warnings():  # "Overriding a previously registered kernel": intended
        warnings.simplefilter("ignore", UserWarning)
        lib.impl("sqrt", sqrt_values, "CPU")  # type: ignore[no-untyped-call]
        lib.impl("sqrt.out", _sqrt_out, "CPU")  # type: ignore[no-untyped-call]
        lib.impl("sqrt_", _sqrt_inplace, "CPU")  # type: ignore[no-untyped-call]
        for name in REFUSED:
            for overload in (name, f"{name}.out", f"{name}_"):
                lib.impl(overload, _refuse(name), "CPU")  # type: ignore[no-untyped-call]
    _LIBRARY.append(lib)


def installed() -> bool:
    return bool(_LIBRARY)
