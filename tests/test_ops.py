"""Property tests of the NumPy primitives (hypothesis), each against an independent naive form."""

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from minblip import ops

finite = st.floats(-1e4, 1e4, allow_nan=False, width=32)
shapes2d = st.tuples(st.integers(1, 6), st.integers(1, 9))


@given(arrays(np.float32, shapes2d, elements=finite))
def test_softmax_rows_sum_to_one_and_are_shift_invariant(x):
    p = ops.softmax(x)
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(-1), 1, atol=1e-5)
    assert np.allclose(ops.softmax(x + 7.0), p, atol=1e-5)


@given(arrays(np.float32, shapes2d, elements=st.floats(-30, 30, width=32)), st.data())
def test_softmax_with_additive_finfo_min_mask_zeroes_masked(x, data):
    allowed = data.draw(arrays(np.bool_, x.shape))
    allowed[:, 0] = True  # at least one key per row, as every real mask has
    mask = np.where(allowed, 0, np.finfo(np.float32).min).astype(np.float32)
    p = ops.softmax(x + mask)
    assert np.all(p[~allowed] == 0) and np.allclose(p.sum(-1), 1, atol=1e-5)
    ref = np.exp(x.astype(np.float64) - x.max(-1, keepdims=True)) * allowed
    np.testing.assert_allclose(p, ref / ref.sum(-1, keepdims=True), atol=1e-6)


@given(arrays(np.float64, shapes2d, elements=st.floats(-100, 100)), st.floats(1e-12, 1e-3))
def test_layer_norm_equals_naive_float64_formula(x, eps):
    D = x.shape[-1]
    p = {"weight": np.linspace(0.5, 1.5, D), "bias": np.linspace(-1, 1, D)}
    y = ops.layer_norm(x, p, eps)
    for row, out in zip(x, y):
        mu = sum(row) / D
        var = sum((v - mu) ** 2 for v in row) / D  # biased variance, as torch
        naive = [
            (v - mu) / math.sqrt(var + eps) * w + b for v, w, b in zip(row, p["weight"], p["bias"])
        ]
        # the two means may differ by a few ulps of |x|, which the normalisation divides by the
        # std: a constant row of 52.1 with eps 1e-10 turns 1e-14 into 2e-9
        amplified = 8 * np.finfo(np.float64).eps * np.abs(row).max() / math.sqrt(var + eps) * 1.5
        np.testing.assert_allclose(out, naive, rtol=1e-9, atol=1e-9 + amplified)


@given(arrays(np.float64, st.integers(1, 50), elements=st.floats(-10, 10)))
def test_gelu_is_the_exact_erf_form(x):
    naive = [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x]
    np.testing.assert_allclose(ops.gelu.reference(x), naive, rtol=1e-15, atol=1e-300)


@given(
    st.integers(1, 2),
    st.integers(1, 3),
    st.integers(1, 5),
    st.integers(1, 6),
    st.integers(1, 4),
    st.data(),
)
def test_attention_is_invariant_to_a_joint_key_value_permutation(B, H, T, Tk, Dh, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    q, k, v = (rng.standard_normal((B, H, n, Dh)) for n in (T, Tk, Tk))
    perm = rng.permutation(Tk)
    a, _ = ops.attention(q, k, v, scale=Dh**-0.5)
    b, _ = ops.attention(q, k[:, :, perm], v[:, :, perm], scale=Dh**-0.5)
    np.testing.assert_allclose(a, b, atol=1e-12)
    single, probs = ops.attention(q, k[:, :, :1], v[:, :, :1], scale=1.0)  # one key -> its value
    np.testing.assert_allclose(single, np.broadcast_to(v[:, :, :1], single.shape), atol=1e-12)


@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5), st.integers(1, 3))
def test_split_and_merge_heads_round_trip(B, T, H, Dh):
    x = np.arange(B * T * H * Dh, dtype=np.float64).reshape(B, T, H * Dh)
    heads = ops.split_heads(x, H)
    assert heads.shape == (B, H, T, Dh)
    np.testing.assert_array_equal(heads[:, 1 % H, :, :], x[:, :, (1 % H) * Dh : (1 % H + 1) * Dh])
    np.testing.assert_array_equal(ops.merge_heads(heads), x)


@given(
    st.integers(1, 2),
    st.integers(1, 4),
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(0, 3),
    st.integers(0, 3),
    st.data(),
)
def test_patch_embed_equals_a_naive_strided_convolution(B, P, gh, gw, rh, rw, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    D, C = 5, 3
    x = rng.standard_normal((B, C, gh * P + rh % P, gw * P + rw % P))  # remainders are dropped
    p = {"weight": rng.standard_normal((D, C, P, P)), "bias": rng.standard_normal(D)}
    out = ops.patch_embed(x, p, P)
    naive = np.zeros((B, gh * gw, D))
    for b in range(B):
        for r in range(gh):
            for c in range(gw):
                window = x[b, :, r * P : (r + 1) * P, c * P : (c + 1) * P]
                naive[b, r * gw + c] = (p["weight"] * window).sum(axis=(1, 2, 3)) + p["bias"]
    np.testing.assert_allclose(out, naive, atol=1e-10)


def _naive_bicubic_1d(src_len, out_len):
    """torch's bicubic weights as a dense (out, in) matrix, in float64 (A = -0.75)."""
    A, M = -0.75, np.zeros((out_len, src_len))

    def k(d):
        d = abs(d)
        if d <= 1:
            return ((A + 2) * d - (A + 3)) * d * d + 1
        return ((A * d - 5 * A) * d + 8 * A) * d - 4 * A if d < 2 else 0.0

    for o in range(out_len):
        s = (o + 0.5) * src_len / out_len - 0.5
        f = math.floor(s)
        for j in range(f - 1, f + 3):
            M[o, min(max(j, 0), src_len - 1)] += k(s - j)
    return M


@given(st.integers(1, 7), st.integers(1, 7), st.integers(1, 9), st.integers(1, 9))
def test_bicubic_resize_equals_dense_separable_form(h, w, oh, ow):
    x = np.random.default_rng(h * 100 + w).standard_normal((2, h, w))
    ref = np.einsum("oh,chw,pw->cop", _naive_bicubic_1d(h, oh), x, _naive_bicubic_1d(w, ow))
    np.testing.assert_allclose(ops.bicubic_resize(x, oh, ow), ref, atol=1e-12)
