"""Numba twins of the hot primitives in ops.py: same names, same order, same results.

A twin returns NotImplemented for inputs it does not take, and ops.py then runs the NumPy
reference. Each twin is tested equal to its reference in tests/test_kernels.py (also under
NUMBA_DISABLE_JIT=1) and stays only while tools/bench_kernels.py shows it winning on real shapes.
Kernels that were tried and lost are listed in docs/kernels.md.
"""

import math

import numba
import numpy as np


@numba.njit(cache=True, parallel=True)
def _gelu_loop(x, out, inv_sqrt2_scale, half, one):
    for i in numba.prange(x.size):
        v = x[i]
        # erf in double, rounded back to x's type: what ops.gelu's libm call does, bit for bit
        e = math.erf(np.float64(v / inv_sqrt2_scale))
        out[i] = half * v * (one + _cast(e, v))


@numba.njit(cache=True, inline="always")
def _cast(e, like):
    return type(like)(e)


def gelu(x):
    """Numba twin of ops.gelu (exact erf GELU); equality tested in tests/test_kernels.py."""
    if x.dtype not in (np.float32, np.float64) or x.size == 0:
        return NotImplemented
    t = x.dtype.type
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    _gelu_loop(x.reshape(-1), out.reshape(-1), t(math.sqrt(2.0)), t(0.5), t(1.0))
    return out
