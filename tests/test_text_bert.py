"""The BLIP text tower's pure functions: causality, the KV cache, masks, batch independence, the
tied LM head and the loss. (Conformance with transformers is in test_caption.py.)"""

import numpy as np
import pytest
from golden_utils import case_dirs, flat_keys, load_case, model_dir
from hypothesis import given
from hypothesis import strategies as st

import minblip
from minblip import text_bert as tb

CASE = next(c for c in case_dirs("caption") if c.name == "forward_labels")
META, INPUTS, OUTPUTS = load_case(CASE)
MODEL64 = minblip.BlipForConditionalGeneration.from_pretrained(model_dir(CASE), dtype="float64")
CFG = MODEL64.config.text_config
P64 = MODEL64.params["text_decoder"]
IMG64 = MODEL64(**INPUTS).image_embeds  # (2, 17, 24)
V = CFG.vocab_size


def _logits(ids, **kw):
    return tb.lm_forward(ids, P64, CFG, encoder_hidden_states=IMG64[: len(ids)], **kw)[0]


@given(st.integers(2, 12), st.data())
def test_decoder_is_causal(T, data):
    """Changing the tokens after position t leaves every output at positions <= t unchanged."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    t = data.draw(st.integers(0, T - 2))
    a = rng.integers(0, V, (2, T))
    b = a.copy()
    b[:, t + 1 :] = rng.integers(0, V, (2, T - t - 1))
    np.testing.assert_allclose(_logits(a)[:, : t + 1], _logits(b)[:, : t + 1], atol=1e-12, rtol=0)


@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.integers(0, 2**31))
def test_cache_chunks_equal_one_pass(chunks, seed):
    """Feeding a sequence in chunks through the KV cache gives the logits of one uncached pass."""
    ids = np.random.default_rng(seed).integers(0, V, (2, sum(chunks)))
    enc = tb.cross_kv(IMG64, P64["bert"], CFG)
    past, parts, start = None, [], 0
    for n in chunks:
        logits, out = tb.lm_forward(ids[:, start : start + n], P64, CFG, cache=past, encoder_kv=enc)
        past, start = out["cache"], start + n
        parts.append(logits)
    np.testing.assert_allclose(np.concatenate(parts, 1), _logits(ids), atol=1e-12, rtol=0)
    assert past[0][0].shape == (
        2,
        CFG.num_attention_heads,
        sum(chunks),
        CFG.hidden_size // CFG.num_attention_heads,
    )


def test_cache_is_not_modified():
    ids = np.array([[30, 5, 6], [30, 7, 8]])
    _, out = tb.lm_forward(ids, P64, CFG, encoder_hidden_states=IMG64)
    before = [(k.copy(), v.copy()) for k, v in out["cache"]]
    tb.lm_forward(ids[:, :1], P64, CFG, encoder_hidden_states=IMG64, cache=out["cache"])
    for (k, v), (k0, v0) in zip(out["cache"], before):
        assert np.array_equal(k, k0) and np.array_equal(v, v0)


def test_batch_rows_are_independent():
    """forward(stack([a, b])) == stack([forward(a), forward(b)]) (catches mask bugs).

    In float64: in float32 a batch of 2 and a batch of 1 take different GEMM paths (BLAS blocking,
    matrix-vector products for single rows) whose rounding differs by ~4e-6 on these logits, which
    would hide a small leak; in float64 any leak between rows stands far above 1e-10."""
    ids, mask = INPUTS["input_ids"], INPUTS["attention_mask"]
    both = MODEL64(pixel_values=INPUTS["pixel_values"], input_ids=ids, attention_mask=mask).logits
    for b in range(2):
        alone = MODEL64(
            pixel_values=INPUTS["pixel_values"][b : b + 1],
            input_ids=ids[b : b + 1],
            attention_mask=mask[b : b + 1],
        ).logits
        np.testing.assert_allclose(alone[0], both[b], atol=1e-10, rtol=0)


def test_encoder_mode_ignores_padding_tokens():
    """Bidirectional (encoder) mode: kept positions do not see what the padded positions hold."""
    ids = np.array([[1, 5, 9, 3, 0, 0]])
    mask = (ids != 0).astype(int)
    other = ids.copy()
    other[0, 4:] = [40, 41]
    kw = dict(attention_mask=mask, encoder_hidden_states=IMG64[:1])
    a = tb.text_model(ids, P64["bert"], CFG, **kw)["last_hidden_state"]
    b = tb.text_model(other, P64["bert"], CFG, **kw)["last_hidden_state"]
    np.testing.assert_allclose(a[:, :4], b[:, :4], atol=1e-12, rtol=0)
    c = tb.text_model(ids[:, :4], P64["bert"], CFG, encoder_hidden_states=IMG64[:1])[
        "last_hidden_state"
    ]
    np.testing.assert_allclose(a[:, :4], c, atol=1e-12, rtol=0)


def test_masks_are_additive_finfo_min():
    m = tb.self_mask(np.array([[1, 1, 0]]), T=2, past_len=1, is_decoder=True, dtype=np.float32)
    assert m.shape == (1, 1, 2, 3) and np.isfinite(m).all()
    lo = np.finfo(np.float32).min
    np.testing.assert_array_equal(m[0, 0], [[0, 0, lo], [0, 0, lo]])
    m = tb.self_mask(None, T=3, past_len=0, is_decoder=True, dtype=np.float64)
    np.testing.assert_array_equal(m[0, 0] == 0, np.tril(np.ones((3, 3), bool)))
    assert tb.self_mask(None, 3, 0, False, np.float32) is None


def test_lm_head_first_present_wins():
    W, W2, b, b2 = (np.full((3, 2), 1.0), np.full((3, 2), 2.0), np.zeros(3), np.ones(3))
    assert tb.decoder_weights({"bias": b}, W)[0] is W  # 5.23's saved file: tied copies absent
    assert tb.decoder_weights({"bias": b}, W)[1] is b
    both = {"bias": b, "decoder": {"weight": W2, "bias": b2}}  # untied file: the decoder's own
    assert tb.decoder_weights(both, W)[0] is W2 and tb.decoder_weights(both, W)[1] is b2
    assert tb.decoder_weights({"decoder": {"bias": b2}}, W)[1] is b2


def test_loss_matches_naive_formula():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 5, 7))
    labels = rng.integers(0, 7, (2, 5))
    labels[1, 3:] = -100
    eps = 0.1
    total, n = 0.0, 0
    for b in range(2):
        for t in range(4):
            y = labels[b, t + 1]
            if y == -100:
                continue
            logp = logits[b, t] - np.log(np.exp(logits[b, t]).sum())
            total += (1 - eps) * -logp[y] + eps * -logp.mean()
            n += 1
    assert tb.lm_loss(logits, labels, eps) == pytest.approx(total / n, abs=1e-12)
    assert tb.lm_loss(logits, labels, reduction="none").shape == (2,)
    assert np.isnan(
        tb.lm_loss(logits, np.full((2, 5), -100))
    )  # nothing to average: torch gives nan
    with pytest.raises(minblip.InputError, match="labels"):
        tb.lm_loss(logits, np.full((2, 5), 7))


def test_shapes_list_every_checkpoint_key():
    shapes, optional = tb.lm_shapes(CFG)
    saved = {k for k in flat_keys(P64)}
    assert saved <= set(shapes) and set(shapes) - saved <= set(optional)


def test_position_overflow_is_an_input_error():
    ids = np.zeros((1, CFG.max_position_embeddings + 1), np.int64)
    with pytest.raises(minblip.InputError, match="max_position_embeddings"):
        _logits(ids)
