"""Each Numba twin against its NumPy reference on real BLIP shapes, as a table.

    python tools/bench_kernels.py [--repeat 15] [--candidates]

Shapes are blip-image-captioning-base's (vision: N = 577 tokens at 384 px, Dv 768, F 3072, 12
heads; decoder: Dt 768, F 3072, 1 row per beam) and BLIP-large's vision FFN (F 4096). The
reference and the twin run alternately, `--repeat` times each; the table shows the best time of
each and the median, in ms, and ref/twin (> 1: the twin wins). The load average is printed: the
machine has 2 cores shared with other jobs, so compare rows of one run, not runs.

The matrix-matrix section times ops.matmul_stored (bf16 / int8 weights widened a block at a time)
at BLIP-2's prefill and vision shapes (M = 32 and 257 rows) against its candidates.
--only-matrix-matrix runs that section alone; --only-decode-dram the decode loops (int8, bf16) read
from DRAM against their candidates.

--candidates also times the kernels that were tried and dropped (their code is here, not in
minblip): see docs/kernels.md for the decisions.
"""

import argparse
import math
import pathlib
import sys
import time

import numba
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from minblip import kernels, ops  # noqa: E402


def timeit(fns, repeat):
    """Run the functions alternately; best and median seconds of each."""
    for f in fns:
        f()  # warm-up: JIT, first-touch of the output buffers
    times = [[] for _ in fns]
    for _ in range(repeat):
        for f, ts in zip(fns, times):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
    return [(min(ts), sorted(ts)[len(ts) // 2]) for ts in times]


def row(op, shape, ref, twin, note=""):
    (rb, rm), (tb, tm) = ref, twin
    print(
        f"{op:26}{shape:22}{rb * 1e3:9.3f}{rm * 1e3:9.3f}{tb * 1e3:9.3f}{tm * 1e3:9.3f}"
        f"{rb / tb:8.2f}  {note}"
    )


def header(title):
    print(f"\n{title}")
    print(
        f"{'op':26}{'shape':22}{'ref best':>9}{'ref med':>9}{'twin bst':>9}{'twin med':>9}"
        f"{'ref/twin':>8}"
    )


# ----------------------------------------------------------------------------- dropped candidates


@numba.njit(cache=True, parallel=True)
def _gelu_prange_erf(x, out, sqrt2):  # the previous twin: libm erf per element, 2 threads
    for i in numba.prange(x.size):
        v = x[i]
        out[i] = (
            np.float32(0.5) * v * (np.float32(1.0) + np.float32(math.erf(np.float64(v / sqrt2))))
        )


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _int8_flat(x, W, scale, out):  # the decode twin's int8 loop until 2026-12-01: one flat loop
    for o in range(W.shape[0]):
        row = W[o]
        for m in range(x.shape[0]):
            xm = x[m]
            s = np.float32(0.0)
            for i in range(x.shape[1]):
                s += xm[i] * np.float32(row[i])
            out[m, o] = s * scale[o]


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _bf16_row_buffer(x, W, scale, out):  # the bf16 decode loop until 2026-12-01
    M, Din = x.shape
    for c in range((W.shape[0] + 31) // 32):
        bits = np.empty(Din, np.uint32)  # one row widened, reused by the block's rows
        w = bits.view(np.float32)  # bf16 -> float32: the bits shifted to the top half
        for o in range(c * 32, min(W.shape[0], (c + 1) * 32)):
            row = W[o]
            for i in range(Din):
                bits[i] = np.uint32(row[i]) << np.uint32(16)
            for m in range(M):
                xm = x[m]
                s = np.float32(0.0)
                for i in range(Din):
                    s += xm[i] * w[i]
                out[m, o] = s * scale[o]


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _int8_lohi(x, W, scale, out):  # the kept block loop, its rows given as (lo, hi) arguments
    for c in range((W.shape[0] + 31) // 32):
        _int8_rows(x, W, scale, out, c * 32, min(W.shape[0], (c + 1) * 32))


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _int8_rows(x, W, scale, out, lo, hi):
    M, Din = x.shape
    for o in range(lo, hi):
        row = W[o]
        for m in range(M):
            xm = x[m]
            s = np.float32(0.0)
            for i in range(Din):
                s += xm[i] * np.float32(row[i])
            out[m, o] = s * scale[o]


@numba.njit(cache=True, parallel=True)
def _int8_prange(x, W, scale, out):  # the kept twin's blocks shared by Numba's 2 threads
    for c in numba.prange((W.shape[0] + 31) // 32):
        if W.shape[1] > kernels._LONG_ROW:
            kernels._stored_block4(x, W, scale, out, c)
        else:
            kernels._stored_block(x, W, scale, out, c)


def stored_from_dram(rng, R):
    """The decode twin reads each weight once per token from DRAM (a layer's weights are long
    gone from the 32 MB L3 when the next token comes back to them), so each candidate is timed
    here on a cycle of ~600 MB of matrices: GB/s of stored bytes read, best of R."""
    for dtype, cands in (
        (
            np.int8,
            {
                "kept twin": kernels._matvec_stored,
                "flat loop": _int8_flat,
                "rows as lo, hi": _int8_lohi,
                "2 threads": _int8_prange,
            },
        ),
        (np.uint16, {"kept twin": kernels._matvec_stored, "row buffer": _bf16_row_buffer}),
    ):
        name = "int8" if dtype == np.int8 else "bf16"
        print(f"\n{name} decode twin from DRAM, GB/s read (best of {R}): the kept loop, candidates")
        print(f"{'Dout x Din, rows of x':28}" + "".join(f"{k:>16}" for k in cands))
        for Dout, Din in [(10240, 2560), (2560, 10240), (2560, 2560), (5120, 2048), (2048, 5120)]:
            n = max(4, 600_000_000 // (Dout * Din * np.dtype(dtype).itemsize))
            if dtype == np.int8:
                cycle = [rng.integers(-127, 128, (Dout, Din), dtype=dtype) for _ in range(n)]
            else:  # bf16 bits of normal values (random uint16 would hold NaNs and infinities)
                cycle = [
                    (rng.standard_normal((Dout, Din), dtype=np.float32).view(np.uint32) >> 16)
                    .astype(np.uint16) for _ in range(n)
                ]  # fmt: skip
            scale = rng.random(Dout, dtype=np.float32)
            gb = sum(W.nbytes for W in cycle) / 1e9
            for M in (1, 3):
                x = rng.standard_normal((M, Din), dtype=np.float32)
                out = np.empty((M, Dout), np.float32)
                fns = [lambda f=f: [f(x, W, scale, out) for W in cycle] for f in cands.values()]
                rates = [gb / best for best, _ in timeit(fns, R)]
                print(f"{f'{Dout} x {Din}, {M}':28}" + "".join(f"{r:16.1f}" for r in rates))


_CHEB28 = np.polynomial.chebyshev.chebinterpolate(
    lambda u: np.array(
        [
            math.erf(math.sqrt(v)) / math.sqrt(v) if v > 0 else 2 / math.sqrt(math.pi)
            for v in (u + 1) * 8.0
        ]
    ),
    28,
)


@numba.njit(cache=True)
def _gelu_cheb64(x, out, C, sqrt2):  # the twin before this one: bit-identical, Clenshaw in float64
    n, B = x.size, 512
    u, b1, b2 = np.empty(B), np.empty(B), np.empty(B)
    for start in range(0, n, B):
        m = min(B, n - start)
        for i in range(m):
            z = np.float64(x[start + i] / sqrt2)
            u[i] = min(z * z, 16.0) / 8.0 - 1.0
            b1[i] = 0.0
            b2[i] = 0.0
        for k in range(C.size - 1, 0, -1):
            c = C[k]
            for i in range(m):
                t = 2.0 * u[i] * b1[i] - b2[i] + c
                b2[i] = b1[i]
                b1[i] = t
        for i in range(m):
            v = x[start + i]
            z = np.float64(v / sqrt2)
            e = z * (u[i] * b1[i] - b2[i] + C[0])
            e = e if abs(z) < 4.0 else (1.0 if z > 0 else -1.0)
            out[start + i] = np.float32(0.5) * v * (np.float32(1.0) + np.float32(e))


def gelu_cheb64(x):
    out = np.empty_like(x)
    _gelu_cheb64(x.reshape(-1), out.reshape(-1), _CHEB28, np.float32(math.sqrt(2.0)))
    return out


@numba.njit(cache=True, fastmath={"reassoc"})
def _linear_rows(x, W, b, out, zero):  # the decode-step twin of 2026-11-22, dropped 2026-11-30
    M, K = x.shape
    for o in range(W.shape[0]):  # each weight row is read once, for all rows of x
        w = W[o]
        for m in range(M):
            xm = x[m]
            s = zero
            for i in range(K):  # "reassoc": partial sums in SIMD lanes
                s += w[i] * xm[i]
            out[m, o] = s + b[o]


def linear_rows(x, p):
    """x @ W.T + b for a few rows on the calling thread (W read once for all rows)."""
    W, b = p["weight"], p["bias"]
    K = W.shape[1]
    x2 = np.ascontiguousarray(x).reshape(-1, K)  # (..., K) -> (rows, K)
    out = np.empty((x2.shape[0], W.shape[0]), x.dtype)
    _linear_rows(x2, W, b, out, x.dtype.type(0))
    return out.reshape(*x.shape[:-1], W.shape[0])


def gelu_prange_erf(x):
    out = np.empty_like(x)
    _gelu_prange_erf(x.reshape(-1), out.reshape(-1), np.float32(math.sqrt(2.0)))
    return out


@numba.njit(cache=True)
def _softmax_rows(x, out):
    for r in range(x.shape[0]):
        row, o = x[r], out[r]
        m = row[0]
        for i in range(row.size):  # pass 1: max
            m = max(m, row[i])
        s = 0.0
        for i in range(row.size):  # pass 2: exp and sum
            o[i] = math.exp(row[i] - m)
            s += o[i]
        inv = 1.0 / s
        for i in range(row.size):  # pass 3: normalise
            o[i] = o[i] * inv


def softmax_numba(x):
    out = np.empty_like(x)
    _softmax_rows(x.reshape(-1, x.shape[-1]), out.reshape(-1, x.shape[-1]))
    return out


def softmax_allocating(x):  # ops.softmax before it worked in place
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@numba.njit(cache=True)
def _layer_norm_rows(x, w, b, eps, out):
    D = x.shape[1]
    for r in range(x.shape[0]):
        row = x[r]
        mean = 0.0
        for i in range(D):  # pass 1: mean
            mean += row[i]
        mean /= D
        var = 0.0
        for i in range(D):  # pass 2: biased variance
            d = row[i] - mean
            var += d * d
        inv = 1.0 / math.sqrt(var / D + eps)
        for i in range(D):  # pass 3: normalise, scale, shift
            out[r, i] = (row[i] - mean) * inv * w[i] + b[i]


def layer_norm_numba(x, p, eps):
    out = np.empty_like(x)
    D = x.shape[-1]
    _layer_norm_rows(x.reshape(-1, D), p["weight"], p["bias"], eps, out.reshape(-1, D))
    return out


def attention_scale_allocating(q, k, scale):
    return (q @ k.transpose(0, 1, 3, 2)) * scale


def attention_scale_in_place(q, k, scale):
    s = q @ k.transpose(0, 1, 3, 2)
    s *= scale
    return s


# ----------------------------------------------------------------------------- main


def matmul_blocked(x, W, scale, block_bytes):
    """ops.matmul_stored's reference with another block size (None: the whole matrix at once)."""
    Dout, Din = W.shape
    step = Dout if block_bytes is None else max(1, block_bytes // (4 * Din))
    y = np.empty((*x.shape[:-1], Dout), np.float32)
    block = np.empty((min(step, Dout), Din), np.float32)
    for r in range(0, Dout, step):
        w = ops.widen(W[r : r + step], out=block[: min(step, Dout - r)])
        y[..., r : r + step] = x @ w.T
    if scale is not None:
        y *= scale
    return y


def rows_twin(x, W, scale):
    """kernels.matmul_stored's Numba loop at any row count (the twin stops at STORED_MAX_ROWS)."""
    x2 = x.reshape(-1, W.shape[1])
    out = np.empty((x2.shape[0], W.shape[0]), np.float32)
    if W.dtype == np.uint16:
        kernels._matvec_stored(x2, W, np.ones(W.shape[0], np.float32), out)
    else:
        kernels._matvec_stored(x2, W, scale, out)
    return out.reshape(*x.shape[:-1], W.shape[0])


# the Linears of BLIP-2's prefill (OPT-2.7b, Flan-T5-XL's encoder) and vision tower (ViT-g)
BLIP2_SHAPES = [
    ((10240, 2560), "OPT-2.7b fc1"),
    ((2560, 10240), "OPT-2.7b fc2"),
    ((5120, 2048), "Flan-T5-XL wi_0 / wi_1"),
    ((2048, 5120), "Flan-T5-XL wo"),
    ((6144, 1408), "ViT-g fc1"),
    ((1408, 6144), "ViT-g fc2"),
]


def matrix_matrix(rng, R):
    """Prefill (M = 32 query rows + a short prompt) and vision (M = 257 patches + [CLS]) with
    weights kept as stored: the reference (16 MiB blocks widened, one BLAS call each) against
    each candidate: 1 MiB / 4 MiB blocks (cache-sized), the whole matrix widened at once (a
    transient float32 copy of the weight: 26-105 MB more peak memory), and the Numba rows
    loop the decode twin runs (one pass over the stored bytes, one thread). The float32 BLAS
    product on the unquantized weight is the floor; the ratio column is reference / candidate
    (> 1: the candidate wins) and the note gives each candidate's max difference from the
    reference."""
    from minblip.quantize import quantize_rows

    header(f"matrix-matrix, weights kept as stored (best of {R}): reference vs candidate")
    for (Dout, Din), where in BLIP2_SHAPES:
        W = rng.standard_normal((Dout, Din)).astype(np.float32)
        bits = (W.view(np.uint32) >> 16).astype(np.uint16)  # bf16 by truncation: timing only
        q, s = quantize_rows(W)
        for M in (32, 257):
            x = rng.standard_normal((1, M, Din)).astype(np.float32)
            for name, w, sc in (("bf16", bits, None), ("int8", q, s)):
                ref_out = ops.matmul_stored.reference(x, w, sc)
                cands = {
                    "1 MiB blocks": lambda: matmul_blocked(x, w, sc, 1 << 20),
                    "4 MiB blocks": lambda: matmul_blocked(x, w, sc, 1 << 22),
                    "whole widened": lambda: matmul_blocked(x, w, sc, None),
                    "Numba rows loop": lambda: rows_twin(x, w, sc),
                }
                times = timeit(
                    [lambda: ops.matmul_stored.reference(x, w, sc), lambda: x @ W.T]
                    + list(cands.values()),
                    R,
                )
                ref, blas = times[0], times[1]
                for (cand, f), t in zip(cands.items(), times[2:]):
                    err = np.abs(f() - ref_out).max()
                    row(
                        f"{name} {cand}",
                        f"{M}x{Din} . {Dout}x{Din}",
                        ref,
                        t,
                        f"{where}; f32 BLAS {blas[0] * 1e3:.1f} ms; max diff {err:.1e}",
                    )


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--candidates", action="store_true", help="also time the dropped candidates")
    ap.add_argument(
        "--only-matrix-matrix", action="store_true", help="only the BLIP-2 matrix-matrix section"
    )
    ap.add_argument(
        "--only-decode-dram", action="store_true", help="only the int8 / bf16 decode loops"
    )
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    f32 = np.float32
    R = args.repeat
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    print(
        f"numpy {np.__version__}, numba {numba.__version__}; best of {R}, alternating; "
        f"load average {load} (2 cores)"
    )
    if args.only_matrix_matrix:
        return matrix_matrix(rng, R)
    if args.only_decode_dram:
        return stored_from_dram(rng, max(3, R // 3))

    header("kept twins: ops.<name>.reference vs kernels.<name>")
    for shape, where in [
        ((1, 577, 3072), "vision fc1, base"),
        ((1, 577, 4096), "vision fc1, large"),
        ((1, 1, 3072), "decode, 1 beam"),
        ((3, 1, 3072), "decode, 3 beams"),
    ]:
        x = (rng.standard_normal(shape) * 2).astype(f32)
        err = np.abs(kernels.gelu(x) - ops.gelu.reference(x)).max()
        r, t = timeit([lambda: ops.gelu.reference(x), lambda: kernels.gelu(x)], R)
        row("gelu", str(shape), r, t, f"{where}; max diff {err:.1e}")
    for shape, where in [
        ((577, 577), "one vision head, as attention calls it"),
        ((1, 12, 577, 577), "a vision layer's 12 heads at once"),
        ((3, 12, 1, 577), "decode cross-attention, 3 beams"),
    ]:
        x = (rng.standard_normal(shape) * 3).astype(f32)
        err = np.abs(kernels.softmax(x) - ops.softmax.reference(x)).max()
        r, t = timeit([lambda: ops.softmax.reference(x), lambda: kernels.softmax(x)], R)
        row("softmax", str(shape), r, t, f"{where}; max diff {err:.1e}")
    for shape, where in [
        ((1, 577, 768), "vision"),
        ((1, 1, 768), "decode, 1 beam"),
        ((3, 1, 768), "decode, 3 beams"),
    ]:
        x = (rng.standard_normal(shape) * 3 + 1).astype(f32)
        p = {
            "weight": rng.standard_normal(768).astype(f32),
            "bias": rng.standard_normal(768).astype(f32),
        }
        err = np.abs(kernels.layer_norm(x, p, 1e-12) - ops.layer_norm.reference(x, p, 1e-12)).max()
        r, t = timeit(
            [
                lambda: ops.layer_norm.reference(x, p, 1e-12),
                lambda: kernels.layer_norm(x, p, 1e-12),
            ],
            R,
        )
        row("layer_norm", str(shape), r, t, f"{where}; max diff {err:.1e}")
    qkv = rng.standard_normal((1, 577, 3, 12, 64)).astype(f32)
    qs, ks, vs = qkv.transpose(2, 0, 3, 1, 4)  # vision.py's strided views
    for backend in ("numpy", "numba"):  # the softmax both call: NumPy's, then the Numba twin
        ops.set_backend(backend)
        ref, twin = ops.attention.reference, kernels.attention
        assert np.array_equal(ref(qs, ks, vs, 0.125)[0], twin(qs, ks, vs, 0.125)[0])
        for probs in (True, False):
            r, t = timeit(
                [
                    lambda: ref(qs, ks, vs, 0.125, None, probs),
                    lambda: twin(qs, ks, vs, 0.125, None, probs),
                ],
                R,
            )
            row("attention", str(qs.shape), r, t, f"{backend} softmax, return_probs={probs}")
    ops.set_backend("numba")
    loop = kernels.attention_per_head  # what kernels.attention runs above ATTENTION_LOOP_BYTES
    for B, T, Tk, where in [(3, 1, 577, "decode cross-attention, 3 beams"), (1, 8, 577, "ITM")]:
        q1, k1, v1 = (rng.standard_normal((B, 12, n, 64)).astype(f32) for n in (T, Tk, Tk))
        r, t = timeit([lambda: ref(q1, k1, v1, 0.125), lambda: loop(q1, k1, v1, 0.125)], R)
        row("attention: per head", str(q1.shape), r, t, f"{where}: below the threshold")

    header("weights kept as stored: ops.matmul_stored.reference vs kernels.matmul_stored")
    from minblip.quantize import quantize_rows

    for (Dout, Din), where in [
        ((10240, 2560), "OPT-2.7b fc1"),
        ((2560, 10240), "OPT-2.7b fc2"),
        ((5120, 2048), "Flan-T5-XL wi_0"),
        ((6144, 1408), "ViT-g fc1"),
    ]:
        W = rng.standard_normal((Dout, Din)).astype(f32)
        bits = (W.view(np.uint32) >> 16).astype(np.uint16)  # bf16 by truncation: timing only
        q, s = quantize_rows(W)
        for M in (1, 3):
            x = rng.standard_normal((1, M, Din)).astype(f32)
            f = [lambda: x @ W.T]
            for name, w, sc, nbytes in (("bf16", bits, None, 2), ("int8", q, s, 1)):
                r, t, b = timeit(
                    [
                        lambda: ops.matmul_stored.reference(x, w, sc),
                        lambda: kernels.matmul_stored(x, w, sc),
                        *f,
                    ],
                    R,
                )
                gbs = Dout * Din * nbytes / t[0] / 1e9
                row(
                    f"matmul_stored {name}",
                    f"{M}x{Din} . {Dout}x{Din}",
                    r,
                    t,
                    f"{where}; {gbs:.0f} GB/s; float32 BLAS {b[0] * 1e3:.2f} ms",
                )
        x = rng.standard_normal((1, 257, Din)).astype(f32)
        r, t = timeit([lambda: x @ W.T, lambda: ops.matmul_stored.reference(x, bits)], R)
        row("bf16 257 rows: f32 vs ref", f"257x{Din} . {Dout}x{Din}", r, t, f"{where}: prefill")

    matrix_matrix(rng, max(3, R // 5))

    if not args.candidates:
        return
    stored_from_dram(rng, max(3, R // 3))
    header("dropped candidates: kept twin (or reference) vs candidate")
    for rows, (Dout, K), where in [
        (1, (768, 768), "query/dense"),
        (1, (3072, 768), "intermediate"),
        (1, (768, 3072), "output"),
        (3, (3072, 768), "intermediate"),
        (8, (3072, 768), "intermediate"),
    ]:
        p = {
            "weight": (rng.standard_normal((Dout, K)) * 0.03).astype(f32),
            "bias": rng.standard_normal(Dout).astype(f32),
        }
        x = rng.standard_normal((rows, 1, K)).astype(f32)
        err = np.abs(linear_rows(x, p) - ops.linear(x, p)).max()
        r, t = timeit([lambda: ops.linear(x, p), lambda: linear_rows(x, p)], R)
        row(
            "linear: rows twin",
            f"({rows},1,{K})->{Dout}",
            r,
            t,
            f"decode {where}; max diff {err:.1e}",
        )
    x = (rng.standard_normal((1, 577, 3072)) * 2).astype(f32)
    r, t = timeit([lambda: kernels.gelu(x), lambda: gelu_cheb64(x)], R)
    row("gelu: kept vs cheb64", str(x.shape), r, t, "the bit-identical float64 Chebyshev twin")
    r, t = timeit([lambda: kernels.gelu(x), lambda: gelu_prange_erf(x)], R)
    row("gelu: kept vs prange erf", str(x.shape), r, t, "the previous twin (2 threads)")
    x1 = (rng.standard_normal((1, 1, 3072)) * 2).astype(f32)
    r, t = timeit([lambda: kernels.gelu(x1), lambda: gelu_prange_erf(x1)], R * 4)
    row("gelu: kept vs prange erf", str(x1.shape), r, t, "decode shape")
    s = rng.standard_normal((1, 12, 577, 577)).astype(f32)
    r, t = timeit([lambda: kernels.softmax(s), lambda: softmax_numba(s)], R)
    row("softmax: libm-exp rows", str(s.shape), r, t, "math.exp per element (no SVML)")
    r, t = timeit([lambda: softmax_allocating(s), lambda: ops.softmax.reference(s)], R)
    row("softmax: in-place NumPy", str(s.shape), r, t, "ref = allocating NumPy (before); kept")
    q = rng.standard_normal((1, 12, 577, 64)).astype(f32)
    r, t = timeit(
        [
            lambda: attention_scale_allocating(q, q, 0.125),
            lambda: attention_scale_in_place(q, q, 0.125),
        ],
        R,
    )
    row("q k^T * scale: in place", str(q.shape), r, t, "ref = allocating (before); kept")
    qc, kc, vc = (np.ascontiguousarray(a) for a in (qs, ks, vs))
    r, t = timeit(
        [lambda: ops.attention(qs, ks, vs, 0.125), lambda: ops.attention(qc, kc, vc, 0.125)], R
    )
    row("attention: contiguous qkv", str(qs.shape), r, t, "ref = strided views (as now)")
    for shape in [(1, 577, 768), (1, 1, 768)]:
        x = rng.standard_normal(shape).astype(f32)
        p = {
            "weight": rng.standard_normal(768).astype(f32),
            "bias": rng.standard_normal(768).astype(f32),
        }
        r, t = timeit(
            [lambda: kernels.layer_norm(x, p, 1e-5), lambda: layer_norm_numba(x, p, 1e-5)], R * 4
        )
        row(
            "layer_norm: float64 loops",
            str(shape),
            r,
            t,
            "Python-float accumulators (the first try)",
        )


if __name__ == "__main__":
    main()
