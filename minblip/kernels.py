"""Numba twins of the hot primitives in ops.py: same names, same order, same results.

A twin returns NotImplemented for inputs it does not take, and ops.py then runs the NumPy
reference. Each twin is tested against its reference in tests/test_kernels.py (also under
NUMBA_DISABLE_JIT=1) and stays only while tools/bench_kernels.py shows it winning on real shapes.
Kernels that were tried and lost, and the numbers behind every decision, are in docs/kernels.md.

Both twins are single-threaded on purpose. On the 2-core machine they were measured on, a second
thread pool (Numba's, next to OpenBLAS's) or a thread hand-off for a tiny product cost far more
than it saved whenever the cores were busy; see docs/kernels.md.
"""

import math

import numba
import numpy as np

# ----------------------------------------------------------------------------- linear

SMALL_ROWS = 8  # the twin takes x with at most this many rows: decoding (1 token per beam)


@numba.njit(cache=True, fastmath={"reassoc"})
def _linear_rows(x, W, b, out, zero):
    M, K = x.shape
    for o in range(W.shape[0]):  # each weight row is read once, for all rows of x
        w = W[o]
        for m in range(M):
            xm = x[m]
            # "reassoc" lets LLVM keep several partial sums in SIMD lanes: a different summation
            # order from BLAS's (which has its own), nothing else (no nnan / ninf / contraction)
            s = zero
            for i in range(K):
                s += w[i] * xm[i]
            out[m, o] = s + b[o]


def linear(x, p):
    """Numba twin of ops.linear for a few rows (decode steps); tested in tests/test_kernels.py.

    Why: x @ W.T with 1..8 rows is a matrix-vector product bound by reading W. OpenBLAS splits
    it over its 2 threads, and the hand-off alone cost 8-16 ms a call on a busy 2-core machine
    (0.2 ms when idle); this loop reads W once on the calling thread. Results differ from the
    reference by summation order only (a few float32 ulps)."""
    W = p["weight"]
    if x.dtype not in (np.float32, np.float64) or x.ndim == 0 or W.dtype != x.dtype:
        return NotImplemented
    if W.ndim != 2 or x.shape[-1] != W.shape[1] or not W.flags.c_contiguous:
        return NotImplemented
    K, O = W.shape[1], W.shape[0]
    rows = x.size // K if K else 0
    if rows == 0 or rows > SMALL_ROWS or O == 0:
        return NotImplemented
    b = p["bias"] if "bias" in p else np.zeros(O, x.dtype)
    if b.dtype != x.dtype or b.shape != (O,):
        return NotImplemented
    x2 = np.ascontiguousarray(x).reshape(rows, K)  # (..., K) -> (rows, K)
    out = np.empty((rows, O), x.dtype)
    _linear_rows(x2, W, b, out, x.dtype.type(0))
    return out.reshape(*x.shape[:-1], O)


# ----------------------------------------------------------------------------- gelu

# float32: erf(z) = z * g(z^2) with g(s) = erf(sqrt s) / sqrt s, a smooth function of s, replaced
# on [0, ZMAX^2] by its degree-28 Chebyshev interpolant (coefficients ~1e-16 at the tail, so the
# float64 result is erf to ~1e-16 and rounds to the same float32 as libm's erf). |z| >= ZMAX:
# erf(4) = 1 - 1.5e-8 already rounds to 1.0f. No libm call in the loop, so LLVM vectorises it.
ZMAX = 4.0
_BLOCK = 512  # elements per Clenshaw pass: the three work arrays stay in L1


def _erf_over_sqrt(s):
    r = np.sqrt(s)
    return np.array([math.erf(v) / v if v > 0 else 2 / math.sqrt(math.pi) for v in r])


_CHEB = np.polynomial.chebyshev.chebinterpolate(
    lambda u: _erf_over_sqrt((u + 1) * (ZMAX * ZMAX / 2)), 28
)  # u in [-1, 1] <-> s = z^2 in [0, ZMAX^2]


@numba.njit(cache=True)
def _gelu_f32(x, out, C, zmax, sqrt2):
    n = x.size
    u, b1, b2 = np.empty(_BLOCK), np.empty(_BLOCK), np.empty(_BLOCK)
    half = zmax * zmax / 2
    for start in range(0, n, _BLOCK):
        m = min(_BLOCK, n - start)
        # pass 1: z = x / sqrt2 in float32 (as ops.gelu), then u = z^2 mapped to [-1, 1]
        for i in range(m):
            z = np.float64(x[start + i] / sqrt2)
            u[i] = min(z * z, zmax * zmax) / half - 1.0
            b1[i] = 0.0
            b2[i] = 0.0
        # pass 2: Clenshaw's recurrence b_k = 2u b_(k+1) - b_(k+2) + c_k, one k for the block
        for k in range(C.size - 1, 0, -1):
            c = C[k]
            for i in range(m):
                t = 2.0 * u[i] * b1[i] - b2[i] + c
                b2[i] = b1[i]
                b1[i] = t
        # pass 3: erf = z g(z^2) (+-1 past zmax), rounded to float32; GELU in float32
        for i in range(m):
            v = x[start + i]
            z = np.float64(v / sqrt2)
            e = z * (u[i] * b1[i] - b2[i] + C[0])
            e = e if abs(z) < zmax else (1.0 if z > 0 else -1.0)
            out[start + i] = np.float32(0.5) * v * (np.float32(1.0) + np.float32(e))


@numba.njit(cache=True)
def _gelu_f64(x, out, sqrt2):
    for i in range(x.size):  # float64 (the precision-check path): libm's erf, as ops.gelu
        v = x[i]
        out[i] = 0.5 * v * (1.0 + math.erf(v / sqrt2))


def gelu(x):
    """Numba twin of ops.gelu (exact erf GELU); equality tested in tests/test_kernels.py."""
    if x.dtype not in (np.float32, np.float64) or x.size == 0:
        return NotImplemented
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    if x.dtype == np.float32:
        _gelu_f32(x.reshape(-1), out.reshape(-1), _CHEB, ZMAX, np.float32(math.sqrt(2.0)))
    else:
        _gelu_f64(x.reshape(-1), out.reshape(-1), math.sqrt(2.0))
    return out
