"""Numba twins of the hot primitives in ops.py: same names and arguments, results within a bound.

A twin returns NotImplemented for inputs it does not take, and ops.py then runs the NumPy
reference. Each twin is tested against its reference, with a written error bound, in
tests/test_kernels.py (also under NUMBA_DISABLE_JIT=1), and stays only while
tools/bench_kernels.py shows it winning on real shapes.
Kernels that were tried and lost, and the numbers behind every decision, are in docs/kernels.md.

Every twin is single-threaded on purpose: a second thread pool next to OpenBLAS's costs more than
it saves on 2 cores (docs/kernels.md). Matrix products stay with BLAS, the decode step's
matrix-vector products included: a Numba twin for those lost end to end (docs/kernels.md).
"""

import functools
import math

import llvmlite.ir
import numba
import numba.extending
import numpy as np

from . import ops

# ----------------------------------------------------------------------------- gelu

# float32: erf(z) = z * g(z^2) with g(s) = erf(sqrt s) / sqrt s, a smooth function of s, replaced
# on [0, ZMAX^2] by its degree-18 Chebyshev interpolant (tail coefficient 7e-10, far below
# float32's 6e-8), evaluated in float32; |z| >= ZMAX: erf(4) = 1 - 1.5e-8 rounds to 1.0f.
# The result is within 2 float32 ulps of ops.gelu (which rounds libm's float64 erf; torch's
# vectorised erf is not libm's either): see tests/test_kernels.py for the bound.
ZMAX = 4.0


def _erf_over_sqrt(s):
    r = np.sqrt(s)
    return np.array([math.erf(v) / v if v > 0 else 2 / math.sqrt(math.pi) for v in r])


_CHEB = tuple(
    np.float32(c)
    for c in np.polynomial.chebyshev.chebinterpolate(
        lambda u: _erf_over_sqrt((u + 1) * (ZMAX * ZMAX / 2)), 18
    )
)  # u in [-1, 1] <-> s = z^2 in [0, ZMAX^2]; a tuple, so Numba folds c0..c18 into the code


@numba.njit(inline="always", fastmath={"contract"})
def _g(u):
    """sum_k c_k T_k(u) by Clenshaw's recurrence, written out: a loop over the coefficients is
    not unrolled by LLVM and then the element loop does not vectorise (docs/kernels.md)."""
    C, u2 = _CHEB, u + u
    b1, b2 = C[18], np.float32(0.0)
    b1, b2 = u2 * b1 - b2 + C[17], b1
    b1, b2 = u2 * b1 - b2 + C[16], b1
    b1, b2 = u2 * b1 - b2 + C[15], b1
    b1, b2 = u2 * b1 - b2 + C[14], b1
    b1, b2 = u2 * b1 - b2 + C[13], b1
    b1, b2 = u2 * b1 - b2 + C[12], b1
    b1, b2 = u2 * b1 - b2 + C[11], b1
    b1, b2 = u2 * b1 - b2 + C[10], b1
    b1, b2 = u2 * b1 - b2 + C[9], b1
    b1, b2 = u2 * b1 - b2 + C[8], b1
    b1, b2 = u2 * b1 - b2 + C[7], b1
    b1, b2 = u2 * b1 - b2 + C[6], b1
    b1, b2 = u2 * b1 - b2 + C[5], b1
    b1, b2 = u2 * b1 - b2 + C[4], b1
    b1, b2 = u2 * b1 - b2 + C[3], b1
    b1, b2 = u2 * b1 - b2 + C[2], b1
    b1, b2 = u2 * b1 - b2 + C[1], b1
    return u * b1 - b2 + C[0]


@numba.njit(cache=True, fastmath={"contract"})
def _gelu_f32(x, out):
    # "contract" only: fused multiply-adds (fewer roundings), no reordering and no nnan / ninf
    sqrt2, zmax2 = np.float32(math.sqrt(2.0)), np.float32(ZMAX * ZMAX)
    to_u = np.float32(2.0 / (ZMAX * ZMAX))
    one, half = np.float32(1.0), np.float32(0.5)
    for i in range(x.size):
        v = x[i]
        z = v / sqrt2  # in float32, as ops.gelu
        e = z * _g(min(z * z, zmax2) * to_u - one)  # s = z^2 in [0, 16] -> u in [-1, 1]
        e = min(max(e, -one), one)  # |z| >= 4: +-1 (and never past it)
        out[i] = half * v * (one + e)


@numba.njit(cache=True)
def _gelu_f64(x, out, sqrt2):
    for i in range(x.size):  # float64 (the precision-check path): libm's erf, as ops.gelu
        v = x[i]
        out[i] = 0.5 * v * (1.0 + math.erf(v / sqrt2))


def gelu(x):
    """Numba twin of ops.gelu (exact erf GELU). float64: bit-identical (libm's erf, the precision
    check path); float32: within 2 ulps (a vectorised polynomial erf, faster than the
    bit-identical Chebyshev-in-float64 kernel it replaced: docs/kernels.md). Tested in
    tests/test_kernels.py."""
    if x.dtype not in (np.float32, np.float64) or x.size == 0:
        return NotImplemented
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    if x.dtype == np.float32:
        _gelu_f32(x.reshape(-1), out.reshape(-1))
    else:
        _gelu_f64(x.reshape(-1), out.reshape(-1), math.sqrt(2.0))
    return out


# ----------------------------------------------------------------------------- softmax

# exp(t) for t <= 0 in float32 without libm (so the loop vectorises): t = n ln2 + r with
# n = round(t / ln2), |r| <= ln2 / 2; exp(r) from its degree-7 Taylor polynomial (truncation
# 5e-9, below float32's 6e-8); 2^n built from its bits. Measured within 8e-8 relative of exp,
# where NumPy's own float32 exp is within 2e-7. Below T_MIN exp is subnormal: 0, as in torch's
# softmax of a finfo.min-masked score.
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693145751953125)  # ln 2 with its low 12 bits zero: n * _LN2_HI is exact
_LN2_LO = np.float32(1.428606765330187e-06)  # ln 2 - _LN2_HI
_EXP = tuple(np.float32(1.0 / math.factorial(k)) for k in range(8))
_T_MIN = np.float32(-87.33654)  # log(2^-126), the smallest normal float32


@numba.njit(inline="always", fastmath={"contract"})
def _exp_taylor(r):
    C = _EXP
    p = C[7]
    p = p * r + C[6]
    p = p * r + C[5]
    p = p * r + C[4]
    p = p * r + C[3]
    p = p * r + C[2]
    p = p * r + C[1]
    return p * r + C[0]


@numba.njit(cache=True, fastmath={"reassoc"})  # not inlined: the caller's flags would replace these
def _sum(a):
    s = np.float64(0.0)  # the row sum to ~1e-16 whatever the order (SIMD lanes here, plain Python
    for i in range(a.size):  # under NUMBA_DISABLE_JIT), where a float32 running sum drifts
        s += a[i]
    return np.float32(s)


@numba.njit(cache=True, fastmath={"contract"}, error_model="numpy")
def _softmax_rows(x, m, out):
    R, N = x.shape
    e, bits = np.empty(N, np.float32), np.empty(N, np.int32)
    two_n = bits.view(np.float32)  # 2^n, written as its exponent bits
    for r in range(R):
        xr = x[r]
        for i in range(N):
            t = xr[i] - m[r]
            tc = t if t > _T_MIN else _T_MIN
            n = np.floor(tc * _LOG2E + np.float32(0.5))
            e[i] = _exp_taylor((tc - n * _LN2_HI) - n * _LN2_LO)
            bits[i] = (np.int32(n) + 127) << 23 if t > _T_MIN else 0  # 0 bits: 0.0f
        for i in range(N):
            e[i] *= two_n[i]
        s = _sum(e)
        # out may be x itself (in place): e is a separate row, so no loop reads what it wrote
        o = out[r]
        for i in range(N):
            o[i] = e[i] / s


def softmax(x, axis=-1, out=None):
    """Numba twin of ops.softmax for float32 over the last axis (attention rows). Within a few
    ulps of the reference (exp polynomial, SIMD partial sums); tested in tests/test_kernels.py.

    Why: NumPy's softmax is five passes over the rows (max, subtract, exp, sum, divide); here
    the max is NumPy's (its SIMD reduction beats a Numba loop) and the rest is one pass per
    row in L1. Timings: docs/kernels.md."""
    if x.dtype != np.float32 or x.ndim == 0 or x.size == 0 or axis not in (-1, x.ndim - 1):
        return NotImplemented
    if not x.flags.c_contiguous:
        return NotImplemented
    if out is not None and (
        out.shape != x.shape or out.dtype != x.dtype or not out.flags.c_contiguous
    ):
        return NotImplemented
    m = x.max(axis=-1)
    if not np.isfinite(m).all():  # a row holding inf or nan, or all -inf: the reference's rules
        return NotImplemented
    out = np.empty_like(x) if out is None else out
    N = x.shape[-1]
    _softmax_rows(x.reshape(-1, N), m.reshape(-1), out.reshape(-1, N))  # (..., N) -> (rows, N)
    return out


# ----------------------------------------------------------------------------- layer_norm


@numba.njit(cache=True, fastmath={"reassoc"})  # sums only: lanes may add in any order
def _row_stats(xr, eps):
    N = xr.size
    s = np.float64(0.0)  # float64 sums: the mean and variance to ~1e-16 whatever the order
    for i in range(N):
        s += xr[i]
    mean = np.float32(s / N)
    q = np.float64(0.0)
    for i in range(N):
        d = xr[i] - mean  # in float32, as the reference's x - mean
        q += d * d
    return mean, np.float32(np.sqrt(np.float32(q / N) + eps))


@numba.njit(cache=True)
def _layer_norm_rows(x, w, b, eps, out):
    for r in range(x.shape[0]):
        xr, o = x[r], out[r]
        mean, denom = _row_stats(xr, eps)
        for i in range(xr.size):  # no fastmath: the reference's float32 roundings, one by one
            o[i] = (xr[i] - mean) / denom * w[i] + b[i]


def layer_norm(x, p, eps):
    """Numba twin of ops.layer_norm for float32 (..., D); tested in tests/test_kernels.py.

    Why: the reference is six NumPy passes (mean, subtract, square, mean, divide, affine), each
    over the whole array and each allocating; here each row is read twice and written once, in
    L1. Means and variances are summed in float64, so they are the reference's to ~1 ulp."""
    w, b = p["weight"], p["bias"]
    if x.dtype != np.float32 or x.ndim == 0 or x.size == 0:
        return NotImplemented
    D = x.shape[-1]
    if w.dtype != x.dtype or b.dtype != x.dtype or w.shape != (D,) or b.shape != (D,):
        return NotImplemented
    x2 = np.ascontiguousarray(x).reshape(-1, D)  # (..., D) -> (rows, D)
    out = np.empty_like(x2)
    _layer_norm_rows(x2, w, b, np.float32(eps), out)
    return out.reshape(x.shape)


# ----------------------------------------------------------------------------- attention


# Below this many bytes of (B, H, T, Tk) scores (the decode step's, the Q-Former's, a caption's
# self-attention) the block stays in cache anyway and a Python loop over heads costs more than
# it saves: the batched reference runs (docs/kernels.md).
ATTENTION_LOOP_BYTES = 1 << 20


def attention(q, k, v, scale, mask=None, return_probs=True, *, divide=False):
    """Twin of ops.attention for large score blocks (the ViTs'): attention_per_head."""
    B, H = np.broadcast_shapes(q.shape[:2], k.shape[:2], v.shape[:2])
    itemsize = np.result_type(q, k, v).itemsize
    if B * H * q.shape[2] * k.shape[2] * itemsize < ATTENTION_LOOP_BYTES:
        return NotImplemented
    return attention_per_head(q, k, v, scale, mask, return_probs, divide=divide)


def attention_per_head(q, k, v, scale, mask=None, return_probs=True, *, divide=False):
    """ops.attention in NumPy, one (batch, head) at a time; the same numbers (tested
    bit-identical in tests/test_kernels.py).

    Why: a head's (T, Tk) scores stay in cache through scale, mask, softmax and the product with
    v, where the batched reference sends the whole (B, H, T, Tk) block to memory between steps,
    and with return_probs False one (T, Tk) buffer serves every head (docs/kernels.md). A scale
    that is a power of two (Dh = 64: 1/8) is applied to the (T, Dh) queries instead of the
    (T, Tk) scores: exact, so the very same scores.
    """
    B, H = np.broadcast_shapes(q.shape[:2], k.shape[:2], v.shape[:2])  # one image, many texts
    q, k, v = (np.broadcast_to(a, (B, H, *a.shape[2:])) for a in (q, k, v))
    T, Tk, Dh = q.shape[2], k.shape[2], v.shape[3]
    dtype = np.result_type(q, k, v)
    probs = np.empty((B, H, T, Tk) if return_probs else (1, 1, T, Tk), dtype)
    context = np.empty((B, T, H, Dh), dtype)  # b t h dh: merge_heads is then a free reshape
    if mask is not None:
        mask = np.broadcast_to(mask, (B, H, T, Tk))
    exact = math.frexp(scale)[0] == 0.5
    if exact:
        q = q / np.asarray(scale, dtype) if divide else q * np.asarray(scale, dtype)
    for b in range(B):
        for h in range(H):
            s = probs[b, h] if return_probs else probs[0, 0]  # (T, Tk), filled in place
            np.matmul(q[b, h], k[b, h].T, out=s)  # t dh, dh tk -> t tk
            if not exact and divide:
                s /= scale
            elif not exact:
                s *= scale
            if mask is not None:
                s += mask[b, h]
            ops.softmax(s, out=s)
            np.matmul(s, v[b, h], out=context[b, :, h])  # t tk, tk dh -> t dh
    return context.transpose(0, 2, 1, 3), probs if return_probs else None  # b t h dh -> b h t dh


# ----------------------------------------------------------------------------- matmul_stored

# Rows a decode step (or a small batch) multiplies: up to here the twin streams the stored
# weight once; above, the reference's widened blocks and BLAS's GEMM win (docs/kernels.md).
STORED_MAX_ROWS = 8
_ROWS = 32  # rows per block
# rows longer than this (x's float32 row spills L1 beside them): four rows of W share each load
# of x. Measured on matrices larger than the L3: at Din 10240 the four-row block read 1.6x (int8)
# and 1.5x (bf16) faster; at 5120 the one-row block did (1.7x, 1.4x; docs/kernels.md)
_LONG_ROW = 6144


@numba.extending.intrinsic
def _as_float32(typingctx, v):
    """One stored weight as float32 inside a Numba loop: int8 converted (as np.float32(v)), bf16
    bits shifted to the top half and reinterpreted (exact). Why an intrinsic: Numba has no scalar
    bit cast, and widening bf16 through a row buffer (store, then load) read half as fast (the
    buffer form lost most at long rows: 10 GB/s at Din 10240, docs/kernels.md)."""
    if v not in (numba.types.int8, numba.types.uint16):
        return None

    def codegen(context, builder, signature, args):
        f32 = llvmlite.ir.FloatType()
        if signature.args[0] == numba.types.int8:
            return builder.sitofp(args[0], f32)
        bits = builder.zext(args[0], llvmlite.ir.IntType(32))
        return builder.bitcast(builder.shl(bits, bits.type(16)), f32)

    return numba.types.float32(v), codegen


if numba.config.DISABLE_JIT:  # the loops below run as Python (CI's JIT-off kernel tests)
    _BF16_VALUES = (np.arange(2**16, dtype=np.uint32) << 16).view(np.float32)  # bits -> value

    def _as_float32(v):
        return np.float32(v) if isinstance(v, np.int8) else _BF16_VALUES[v]


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _matvec_stored(x, W, scale, out):
    for c in range((W.shape[0] + _ROWS - 1) // _ROWS):
        if W.shape[1] > _LONG_ROW:
            _stored_block4(x, W, scale, out, c)
        else:
            _stored_block(x, W, scale, out, c)


# Both blocks write their row range from c, as range(c * _ROWS, min(Dout, (c + 1) * _ROWS)): in
# this form the loop reads int8 weights from DRAM twice as fast as the same loop over (lo, hi)
# arguments or one flat loop over all rows (measured, docs/kernels.md; the cause is in the code
# LLVM makes, not found). Keep the form when editing.
@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _stored_block(x, W, scale, out, c):
    """out[:, rows of block c] = (x @ widen(W[rows]).T) * scale[rows], one row of W at a time."""
    M, Din = x.shape
    for o in range(c * _ROWS, min(W.shape[0], (c + 1) * _ROWS)):
        row = W[o]
        for m in range(M):
            xm = x[m]
            s = np.float32(0.0)
            for i in range(Din):
                s += xm[i] * _as_float32(row[i])
            out[m, o] = s * scale[o]


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _stored_block4(x, W, scale, out, c):
    """_stored_block four rows of W at a time: each x[m, i] loaded once serves four products."""
    M, Din = x.shape
    hi = min(W.shape[0], (c + 1) * _ROWS)
    for o in range(c * _ROWS, hi, 4):
        # a block that ends in fewer than 4 rows repeats its last row: those sums are dropped
        r0, r1, r2, r3 = W[o], W[min(o + 1, hi - 1)], W[min(o + 2, hi - 1)], W[min(o + 3, hi - 1)]
        for m in range(M):
            xm = x[m]
            s0 = s1 = s2 = s3 = np.float32(0.0)
            for i in range(Din):
                xi = xm[i]
                s0 += xi * _as_float32(r0[i])
                s1 += xi * _as_float32(r1[i])
                s2 += xi * _as_float32(r2[i])
                s3 += xi * _as_float32(r3[i])
            sums = (s0, s1, s2, s3)
            for k in range(min(4, hi - o)):
                out[m, o + k] = sums[k] * scale[o + k]


@functools.lru_cache(maxsize=None)
def _unit_scale(n):
    """bf16's per-row scale in the shared int8 / bf16 loop: n ones, made once per width."""
    return np.ones(n, np.float32)


def matmul_stored(x, W, scale=None):
    """Numba twin of ops.matmul_stored for the decode step (at most STORED_MAX_ROWS rows of x):
    one pass over the stored bf16 / int8 bytes, float32 accumulation, one thread.

    Why: the reference widens each block into memory and then hands it to BLAS, one small
    call per block, each paying BLAS's thread hand-off; a matrix-vector product is bound by
    the stored bytes, read here once. One thread, as every twin: a 2-thread (prange) version
    lost to it on this shared 2-core machine (docs/kernels.md).
    Sums are reordered (SIMD lanes), so the result is within a dot-product bound of the
    reference, not equal (tests/test_kernels.py). float16 is left to the reference."""
    if x.dtype != np.float32 or W.dtype not in (np.uint16, np.int8) or x.shape[-1] != W.shape[1]:
        return NotImplemented
    x2 = np.ascontiguousarray(x.reshape(-1, W.shape[1]))  # (..., Din) -> (M, Din)
    if x2.shape[0] > STORED_MAX_ROWS or x2.shape[0] == 0 or not W.flags.c_contiguous:
        return NotImplemented
    out = np.empty((x2.shape[0], W.shape[0]), np.float32)
    if W.dtype == np.uint16:
        if scale is not None:
            return NotImplemented
        _matvec_stored(x2, W, _unit_scale(W.shape[0]), out)  # bf16: no scale (x 1.0 is exact)
    else:
        if scale is None or scale.dtype != np.float32:
            return NotImplemented
        _matvec_stored(x2, W, scale, out)
    return out.reshape(*x.shape[:-1], W.shape[0])
