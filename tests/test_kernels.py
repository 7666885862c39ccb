"""Every Numba twin in kernels.py equals its NumPy reference in ops.py.

CI runs this file a second time with NUMBA_DISABLE_JIT=1 so the kernel bodies run as Python.
"""

import math

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from minblip import kernels, ops


def maybe_strided(data, x):
    """x itself, or a non-contiguous view of the same values (the twins copy such inputs)."""
    if x.ndim > 1 and data.draw(st.booleans()):
        return np.asfortranarray(x)
    if x.ndim >= 1 and x.shape[-1] > 1 and data.draw(st.booleans()):
        wide = np.repeat(x, 2, axis=-1)
        return wide[..., ::2]  # strided view, same values
    return x


# ----------------------------------------------------------------------------- gelu


def assert_gelu_close(got, x):
    """float64: bit-identical. float32: within 3 (spacing(|ref|) + 2^-24 |x|) of ops.gelu.

    Why that bound: the twin's erf is within 1.5 float32 ulps of 1 (2^-24 each) of libm's, and
    GELU multiplies it by x / 2; the final product adds a rounding of its own. Measured on 11.4M
    inputs (uniform, normal, tiny, the |z| = 4 edge): at most 1.98 of the unit, max abs 9.5e-7 at
    |x| ~ 4, and 6.6e-7 from the exact float64 GELU (the reference itself is 4.5e-7 from it)."""
    ref = ops.gelu.reference(x)
    assert got.dtype == ref.dtype and got.shape == ref.shape
    if x.dtype == np.float64:
        np.testing.assert_array_equal(got, ref)
        return
    finite = np.isfinite(ref)
    np.testing.assert_array_equal(got[~finite], ref[~finite])  # inf, -inf, nan where ref has them
    ax, ar = np.abs(x[finite]).astype(np.float64), np.abs(ref[finite])
    bound = 3 * (np.spacing(ar).astype(np.float64) + 2.0**-24 * ax)
    np.testing.assert_array_less(
        np.abs(got[finite].astype(np.float64) - ref[finite]), bound + 1e-45
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data())
def test_gelu_twin_matches_reference(dtype, data):
    x = data.draw(
        arrays(
            dtype,
            array_shapes(min_dims=1, max_dims=3, max_side=7),
            elements=st.floats(-20, 20, width=32),
        )
    )
    x = maybe_strided(data, x)
    assert_gelu_close(kernels.gelu(x), x)


def test_gelu_twin_on_a_dense_sweep():
    """float32 on 400k points across [-6, 6], the range edge at |x| = 4 sqrt 2 and tiny inputs
    (hypothesis draws too few to show a 1-in-1e5 miss)."""
    edge = 4 * math.sqrt(2)
    x = np.concatenate(
        [
            np.linspace(-6, 6, 200_001),
            np.linspace(edge - 1e-3, edge + 1e-3, 10_001),
            np.geomspace(1e-30, 1e-2, 20_000),
            -np.geomspace(1e-30, 1e-2, 20_000),
            np.random.default_rng(0).standard_normal(150_000) * 2,
            [0.0, -0.0, 1e-45, -1e-45],
        ]
    ).astype(np.float32)
    assert_gelu_close(kernels.gelu(x), x)


def test_gelu_twin_special_values():
    x = np.array([np.inf, -np.inf, np.nan, 3.4e38, -3.4e38, 0.0, -0.0, 40.0, -40.0], np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        np.testing.assert_array_equal(kernels.gelu(x), ops.gelu.reference(x))


def test_gelu_twin_declines_what_it_does_not_take():
    assert kernels.gelu(np.zeros(3, np.float16)) is NotImplemented
    assert kernels.gelu(np.zeros(0, np.float32)) is NotImplemented


def test_backend_switch_selects_reference_or_twin(monkeypatch):
    x = np.linspace(-3, 3, 11, dtype=np.float32)
    calls = []
    monkeypatch.setitem(ops._KERNELS, "gelu", lambda a: calls.append(1) or kernels.gelu(a))
    for name, expect_calls in [("numpy", 0), ("numba", 1)]:
        calls.clear()
        ops.set_backend(name)
        assert_gelu_close(ops.gelu(x), x)
        assert len(calls) == expect_calls
    with pytest.raises(ValueError, match="backend"):
        ops.set_backend("cuda")


# ----------------------------------------------------------------------------- softmax


def assert_softmax_close(got, x):
    """Within 16 float32 ulps of ops.softmax, or of 0 where exp underflows (< 2^-126).

    Why that bound: NumPy's float32 exp is within ~3 ulps of exp and the twin's polynomial within
    ~1.3; the row sums are taken in different orders (pairwise vs SIMD lanes). Measured: at most
    9 ulps over rows of 577 scores with spreads from 0.1 to 100, with and without masks. Scores
    more than 87.3 below the row's max give 0 where NumPy gives a subnormal (torch flushes too)."""
    ref = ops.softmax.reference(x)
    assert got.dtype == ref.dtype and got.shape == ref.shape
    d = np.abs(got.astype(np.float64) - ref)
    np.testing.assert_array_less(d, 16 * np.spacing(ref).astype(np.float64) + 2.0**-126)


@given(data=st.data())
def test_softmax_twin_matches_reference(data):
    shape = data.draw(array_shapes(min_dims=1, max_dims=3, max_side=40))
    spread = data.draw(st.sampled_from([0.1, 1.0, 10.0, 100.0]))
    x = data.draw(arrays(np.float32, shape, elements=st.floats(-1, 1, width=32))) * np.float32(
        spread
    )
    masked = data.draw(arrays(np.bool_, shape))
    masked[..., 0] = False  # every real mask leaves a key
    fill = data.draw(st.sampled_from([np.finfo(np.float32).min, -np.inf]))
    x = np.where(masked, fill, x).astype(np.float32)
    got = kernels.softmax(x)
    assert_softmax_close(got, x)
    assert np.all(got[masked] == 0)


def test_softmax_twin_at_attention_shapes_and_in_place():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 3, 577, 577)) * 8).astype(np.float32)
    x[0, 0, :, 300:] = np.finfo(np.float32).min
    want = kernels.softmax(x)
    assert_softmax_close(want, x)
    y = x.copy()
    assert kernels.softmax(y, out=y) is y  # in place, as ops.attention calls it
    np.testing.assert_array_equal(y, want)


def test_softmax_twin_leaves_nonfinite_rows_and_other_inputs_to_the_reference():
    x = np.zeros((4, 5), np.float32)
    x[0, 1], x[1, 2], x[2] = np.nan, np.inf, -np.inf  # the reference's nan rows are the answer
    assert kernels.softmax(x) is NotImplemented
    with np.errstate(invalid="ignore"):
        ops.set_backend("numba")
        np.testing.assert_array_equal(ops.softmax(x), ops.softmax.reference(x))
    for y, kw in [
        (np.zeros((2, 3), np.float64), {}),  # float64: the precision path stays NumPy's
        (np.zeros((2, 3), np.float32), {"axis": 0}),
        (np.zeros((3, 2), np.float32).T, {}),  # not C-contiguous
        (np.zeros((0, 3), np.float32), {}),
        (np.zeros((2, 3), np.float32), {"out": np.zeros((2, 3), np.float64)}),
    ]:
        assert kernels.softmax(y, **kw) is NotImplemented


# ----------------------------------------------------------------------------- layer_norm


def layer_norm_unit(x, p, eps):
    """(exact float64 LayerNorm, the float32 rounding unit u of each output): the error a float32
    LayerNorm cannot avoid, 2^-24 times (|x| + mean |x|) / std |w| (the rounding of x - mean,
    scaled by the normalisation; a float32 mean is off by ulps of the terms summed, not of the
    mean, which can be ~0) + |b| + |out| (the affine step's roundings)."""
    x64 = x.astype(np.float64)
    mu = x64.mean(-1, keepdims=True)
    den = np.sqrt(((x64 - mu) ** 2).mean(-1, keepdims=True) + eps)
    exact = (x64 - mu) / den * p["weight"] + p["bias"]
    scale = np.abs(x64) + np.abs(x64).mean(-1, keepdims=True)  # a mean's rounding follows |x|
    unit = 2.0**-24 * (scale / den * np.abs(p["weight"]) + np.abs(p["bias"]) + np.abs(exact))
    return exact, unit


@given(data=st.data())
def test_layer_norm_twin_matches_reference(data):
    """Within 16 u of the reference and 4 u of the exact value, u as in layer_norm_unit.

    Why: measured on rows of 768 (spreads 1e-3 to 100, offsets 0 to 300, eps 1e-12 and 1e-5): the
    twin (float64 sums) at most 1.8 u from exact, the reference (float32 pairwise sums) at most
    1.8 u, and the two at most 2.8 u apart, with and without JIT. (A first unit scaled by |mean|
    instead of mean |x| failed on a row whose mean is ~0: the reference's float32 mean is off by
    ulps of the terms it sums.)"""
    D = data.draw(st.integers(1, 40))
    lead = data.draw(st.sampled_from([(), (1,), (3,), (2, 5)]))
    spread = data.draw(st.sampled_from([1e-3, 1.0, 100.0]))
    offset = data.draw(st.sampled_from([0.0, 5.0, -300.0]))
    x = data.draw(arrays(np.float32, lead + (D,), elements=st.floats(-1, 1, width=32)))
    x = maybe_strided(data, (x * np.float32(spread) + np.float32(offset)).astype(np.float32))
    p = {
        k: data.draw(arrays(np.float32, (D,), elements=st.floats(-2, 2, width=32)))
        for k in ("weight", "bias")
    }
    eps = data.draw(st.sampled_from([1e-12, 1e-6, 1e-5]))
    got, ref = kernels.layer_norm(x, p, eps), ops.layer_norm.reference(x, p, eps)
    assert got.shape == ref.shape and got.dtype == ref.dtype
    exact, unit = layer_norm_unit(x, p, eps)
    np.testing.assert_array_less(np.abs(got - ref), 16 * unit + 1e-38)
    np.testing.assert_array_less(np.abs(got - exact), 4 * unit + 1e-38)


def test_layer_norm_twin_at_model_shapes():
    rng = np.random.default_rng(0)
    p = {
        "weight": rng.standard_normal(768).astype(np.float32),
        "bias": rng.standard_normal(768).astype(np.float32),
    }
    for shape in [(1, 577, 768), (3, 1, 768)]:
        x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
        exact, unit = layer_norm_unit(x, p, 1e-12)
        np.testing.assert_array_less(np.abs(kernels.layer_norm(x, p, 1e-12) - exact), 4 * unit)


def test_layer_norm_twin_declines_what_it_does_not_take():
    p32 = {"weight": np.ones(3, np.float32), "bias": np.zeros(3, np.float32)}
    for x, p in [
        (
            np.ones((2, 3), np.float64),
            {k: v.astype(np.float64) for k, v in p32.items()},
        ),  # float64: NumPy's
        (np.ones((2, 3), np.float32), {k: v.astype(np.float64) for k, v in p32.items()}),
        (np.ones((2, 4), np.float32), p32),  # wrong width: the reference raises
        (np.ones((0, 3), np.float32), p32),
    ]:
        assert kernels.layer_norm(x, p, 1e-5) is NotImplemented


# ----------------------------------------------------------------------------- attention


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@given(data=st.data())
def test_attention_twin_is_bit_identical_to_reference(backend, data):
    """One head at a time gives the very bits of the batched reference: the same matrix products
    on the same 2-D slices, the same softmax rows, and a power-of-two scale is exact on q."""
    B, H, T, Tk = (data.draw(st.integers(1, n)) for n in (2, 3, 7, 7))
    Dh = data.draw(st.sampled_from([1, 3, 4, 16, 64]))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    if data.draw(st.booleans()):  # vision.py's strided views of one fused qkv
        q, k, v = rng.standard_normal((B, T, 3, H, Dh)).astype(dtype).transpose(2, 0, 3, 1, 4)
    else:  # keys/values of batch 1 may serve every query row (one image, many texts)
        Bk = data.draw(st.sampled_from([1, B]))
        q = rng.standard_normal((B, H, T, Dh)).astype(dtype)
        k, v = (rng.standard_normal((Bk, H, Tk, Dh)).astype(dtype) for _ in "kv")
    divide = data.draw(st.booleans())  # BERT: / sqrt(Dh); ViT and Q-Former: * Dh^-0.5
    scale = math.sqrt(Dh) if divide else Dh**-0.5
    mask = None
    if data.draw(st.booleans()):
        rows = data.draw(st.sampled_from([1, T]))
        masked = rng.random((B, 1, rows, k.shape[2])) < 0.3
        mask = np.where(masked, np.finfo(dtype).min, 0).astype(dtype)
    return_probs = data.draw(st.booleans())
    before = ops.get_backend()
    ops.set_backend(backend)  # the softmax both call: NumPy's, or the Numba twin
    try:
        want = ops.attention.reference(q, k, v, scale, mask, return_probs, divide=divide)
        got = kernels.attention_per_head(q, k, v, scale, mask, return_probs, divide=divide)
    finally:
        ops.set_backend(before)
    np.testing.assert_array_equal(got[0], want[0])
    assert got[0].dtype == want[0].dtype
    if return_probs:
        np.testing.assert_array_equal(got[1], want[1])
    else:
        assert got[1] is None and want[1] is None


def test_attention_twin_loops_over_heads_only_for_large_score_blocks():
    """The vision shape (16 MB of scores) goes head by head, bit-identical; a decode step's
    block is left to the batched reference."""
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((1, 577, 3, 12, 64)).astype(np.float32).transpose(2, 0, 3, 1, 4)
    want = ops.attention.reference(q, k, v, 0.125, return_probs=False)
    np.testing.assert_array_equal(kernels.attention(q, k, v, 0.125, return_probs=False)[0], want[0])
    assert kernels.attention(q[:, :, :1], k, v, 0.125) is NotImplemented  # (1, 12, 1, 577)
    assert ops._kernel("attention") is kernels.attention  # dispatched to under "numba"


# ----------------------------------------------------------------------------- matmul_stored


def assert_matmul_stored_close(got, x, W, scale):
    """Within the float32 dot-product bound of the reference: |error| <= Din * 2^-24 *
    (|x| @ |widen(W)|.T) (* scale): each output is a sum of Din products, summed in another
    order (SIMD lanes) than BLAS's, each order within gamma_Din of the exact sum."""
    ref = ops.matmul_stored.reference(x, W, scale)
    assert got.dtype == ref.dtype and got.shape == ref.shape
    w = ops.widen(W)
    bound = W.shape[1] * 2.0**-24 * (np.abs(x).astype(np.float64) @ np.abs(w).T.astype(np.float64))
    if scale is not None:
        bound = bound * scale
    assert (np.abs(got.astype(np.float64) - ref) <= bound + 1e-30).all()


@given(data=st.data())
def test_matmul_stored_twin_matches_reference(data):
    from minblip.quantize import quantize_rows

    M = data.draw(st.sampled_from([1, 2, kernels.STORED_MAX_ROWS]))
    Dout = data.draw(st.integers(1, 100))  # several 32-row blocks, the last one short
    # rows above kernels._LONG_ROW take the four-rows-at-a-time block (and its < 4-row tail)
    Din = data.draw(st.one_of(st.integers(1, 1100), st.integers(6145, 6300)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    W = rng.standard_normal((Dout, Din)).astype(np.float32) * 3
    x = rng.standard_normal((1, M, Din)).astype(np.float32)
    if data.draw(st.booleans()):
        stored, scale = (W.view(np.uint32) >> 16).astype(np.uint16), None  # bf16 bits
    else:
        stored, scale = quantize_rows(W)
    assert_matmul_stored_close(kernels.matmul_stored(x, stored, scale), x, stored, scale)


def test_matmul_stored_twin_at_blip2_shapes():
    from minblip.quantize import quantize_rows

    rng = np.random.default_rng(1)
    # BLIP-2's real row widths (OPT fc1/q/k/v 2560, OPT fc2 10240, ViT-g fc2 6144) with 200 rows
    # (six 32-row blocks and a short one): the loops' path and rounding depend on Din and on
    # Dout mod 32, not on how many blocks there are (the full 10240-row matrix only cost time)
    shapes = [(200, 2560), (200, 10240), (200, 6144)]
    if numba.config.DISABLE_JIT:  # the loops run as Python: real row widths, fewer rows
        shapes = [(16, 2560), (8, 6144)]
    for Dout, Din in shapes:
        W = rng.standard_normal((Dout, Din), dtype=np.float32) * 0.02
        x = rng.standard_normal((1, 1, Din), dtype=np.float32)
        bits = (W.view(np.uint32) >> 16).astype(np.uint16)
        assert_matmul_stored_close(kernels.matmul_stored(x, bits, None), x, bits, None)
        q, s = quantize_rows(W)
        assert_matmul_stored_close(kernels.matmul_stored(x, q, s), x, q, s)


def test_matmul_stored_reference_is_the_widened_product():
    """The reference is exact to the widened weight: x @ widen(W).T (times the scale)."""
    rng = np.random.default_rng(2)
    W = rng.standard_normal((700, 300)).astype(np.float32)
    x = rng.standard_normal((2, 5, 300)).astype(np.float32)
    h = W.astype(np.float16)
    np.testing.assert_array_equal(ops.matmul_stored.reference(x, h), x @ h.astype(np.float32).T)
    bits = (W.view(np.uint32) >> 16).astype(np.uint16)
    w = (bits.astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(ops.matmul_stored.reference(x, bits), x @ w.T)


def test_matmul_stored_twin_declines_what_it_does_not_take():
    x = np.ones((1, 4), np.float32)
    assert kernels.matmul_stored(x, np.ones((3, 4), np.float16)) is NotImplemented
    assert kernels.matmul_stored(x.astype(np.float64), np.ones((3, 4), np.uint16)) is NotImplemented
    big = np.ones((kernels.STORED_MAX_ROWS + 1, 4), np.float32)
    assert kernels.matmul_stored(big, np.ones((3, 4), np.uint16)) is NotImplemented
    assert kernels.matmul_stored(x, np.ones((3, 4), np.int8)) is NotImplemented  # no scale
