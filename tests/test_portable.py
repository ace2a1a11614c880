"""Exact mode's CPU-independent kernels (cirbench.portable). They replace ATen's CPU kernels for
the whole process, so every check runs in a fresh interpreter, never in pytest's."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent(
    """
    import math
    import numpy as np
    import torch
    from cirbench import exact, portable

    g = torch.Generator().manual_seed(0)
    x = torch.rand(50_000, generator=g) * 100 + 1e-6
    before = torch.sqrt(x)  # ATen's kernel (MKL VML on builds with MKL)
    exact.apply()
    assert portable.installed() and exact.describe(True)["portable_kernels"] is True
    assert exact.describe(True)["nnpack"] is False

    def same(a, b):
        return a.dtype == b.dtype and a.shape == b.shape and bool((a == b).all())

    expected = torch.from_numpy(np.sqrt(x.numpy()))
    assert same(torch.sqrt(x), expected)
    # correctly rounded: float32(sqrt(float64(v))) (exact: 53 bits hold the float32 rounding)
    sample = x[:2000].tolist()
    assert torch.sqrt(x[:2000]).tolist() == [
        float(np.float32(math.sqrt(v))) for v in sample
    ]
    d = x.double()
    assert same(d.sqrt(), torch.from_numpy(np.sqrt(d.numpy())))
    assert same(x[::3].sqrt(), expected[::3])  # strided input
    y = x.clone(); y.sqrt_(); assert same(y, expected)  # in place
    out = torch.empty(0); torch.sqrt(x, out=out); assert same(out, expected)  # out=
    assert same(torch.arange(5).sqrt(), torch.tensor([0.0, 1.0, 2.0**0.5, 3.0**0.5, 2.0]))
    h = x[:100].half().sqrt(); assert h.dtype == torch.float16
    w = x[:100].clone().requires_grad_()
    w.sqrt().sum().backward()  # gradient 1 / (2 sqrt(x)) from autograd's formula
    assert torch.allclose(w.grad, 0.5 / expected[:100])
    a = torch.rand(40, 8, generator=g)
    ref = ((a[:, None] - a[None]) ** 2).sum(-1).clamp_min(1e-30)
    assert torch.allclose(torch.cdist(a, a), torch.from_numpy(np.sqrt(ref.numpy())), atol=1e-3)
    for name in portable.REFUSED:
        try:
            getattr(torch, name)(x.clamp(max=0.5))
        except RuntimeError as err:
            assert "exact mode" in str(err) and portable.REFUSED[name] in str(err), err
        else:
            raise AssertionError(f"torch.{name} ran in exact mode")
    print("changed", int((before != expected).sum()))
    """
)


def test_exact_kernels_in_a_fresh_process() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("changed ")


def test_install_is_idempotent_and_only_on_request() -> None:
    code = (
        "from cirbench import portable; assert not portable.installed(); "
        "portable.install(); portable.install(); assert len(portable._LIBRARY) == 1"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("module", ["cirbench.cli", "cirbench.engine"])
def test_importing_cirbench_does_not_install_them(module: str) -> None:
    code = f"import {module}; from cirbench import portable; assert not portable.installed()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
