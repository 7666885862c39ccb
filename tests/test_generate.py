"""generate.py on toy step functions: greedy against a naive loop, length rules, beam search's
cache reordering, input immutability; and transformers' pad filling and mask inference read from
golden/opt. (Conformance of greedy and beam search on real models: test_caption.py and the
golden generate cases.)"""

import json

import numpy as np
import pytest
from golden_utils import GOLDEN, load_case, model_dir
from hypothesis import given
from hypothesis import strategies as st

import minblip
from minblip.errors import InputError
from minblip.generate import generate, settings, take_rows


def markov(table):
    """A step whose next-token logits depend only on the last token: table (V, V)."""

    def step(input_ids, position_ids, attention_mask, past, context):
        return table[input_ids[:, -1]], None

    return step


def naive_greedy(table, ids, eos, pad, max_len, min_len=0):
    """Row by row, token by token: the textbook loop, stopping when every row has said eos."""
    rows, done = [list(r) for r in ids], [False] * len(ids)
    while len(rows[0]) < max_len and not all(done):
        for b, row in enumerate(rows):
            s = table[row[-1]].astype(np.float32).copy()
            if len(row) < min_len:
                s[eos] = -np.inf
            row.append(pad if done[b] else int(np.argmax(s)))
            done[b] = done[b] or row[-1] == eos
    return np.array(rows)


@given(
    st.integers(0, 2**31),
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(1, 9),
    st.integers(0, 4),
)
def test_greedy_matches_a_naive_loop(seed, B, P, new, min_new):
    rng = np.random.default_rng(seed)
    V, eos, pad = 6, 2, 0
    table = rng.standard_normal((V, V)).astype(np.float32)
    ids = rng.integers(3, V, (B, P))
    got = generate(
        markov(table),
        ids,
        eos_token_id=eos,
        pad_token_id=pad,
        max_new_tokens=new,
        min_new_tokens=min_new,
    )
    want = naive_greedy(table, ids, eos, pad, P + new, P + min_new)
    np.testing.assert_array_equal(got, want)
    assert got.shape[1] <= P + new
    finished = (got[:, P:] == eos).any(1)
    assert got.shape[1] == P + new or finished.all()


def test_default_length_is_20_new_tokens_capped_by_positions():
    assert settings(4, None)["max_length"] == 24
    assert settings(4, 12)["max_length"] == 12
    assert settings(4, 12, max_new_tokens=30)["max_length"] == 34  # explicit wins over the cap
    assert settings(4, 12, max_length=7)["max_length"] == 7
    assert settings(4, None, min_new_tokens=3)["min_length"] == 7
    with pytest.raises(InputError, match="max_length is 4"):
        settings(4, None, max_length=4)


def test_caller_arrays_are_not_modified():
    table = np.eye(5, dtype=np.float32)
    ids, mask = np.array([[1, 3]]), np.array([[1, 1]])
    ids0, mask0 = ids.copy(), mask.copy()
    for beams in (1, 2):
        out = generate(
            markov(table),
            ids,
            attention_mask=mask,
            eos_token_id=4,
            pad_token_id=0,
            max_new_tokens=3,
            num_beams=beams,
        )
        assert out.dtype == np.int64
    np.testing.assert_array_equal(ids, ids0)
    np.testing.assert_array_equal(mask, mask0)


def _opt_case(name):
    """A golden/opt generate case: (model, inputs, expected ids, eos, pad)."""
    case = GOLDEN / "opt" / name
    meta, inputs, expected = load_case(case)
    model = minblip.OPTForCausalLM.from_pretrained(model_dir(case))
    cfg = json.loads((model_dir(case) / "config.json").read_text())
    return model, inputs, meta, expected["out"], cfg["eos_token_id"], cfg["pad_token_id"]


@pytest.mark.parametrize(
    "name", ["generate_beams_short_rows_filled_with_pad", "generate_greedy_finished_rows_pad"]
)
def test_finished_rows_are_filled_as_transformers_fills_them(name):
    """Rows (returned beams) that met eos before the longest are filled after it the way
    transformers filled them (golden/opt, pad 1; BLIP and T5 beams, pad 0, get eos: the
    golden/caption and golden/t5 beam cases). The fixture must hold such a row."""
    model, inputs, meta, want, eos, pad = _opt_case(name)
    Tp = inputs["input_ids"].shape[1]
    gen = want[:, Tp:]
    ended = [r for r in range(len(gen)) if eos in gen[r, :-1].tolist()]
    assert ended, f"{name}: no row ends before the longest; the case exercises nothing"
    got = model.generate(**inputs, **meta["kwargs"])
    np.testing.assert_array_equal(got, want)
    for r in ended:  # what follows the first eos is the fill, equal in both
        after = gen[r, gen[r].tolist().index(eos) + 1 :]
        assert len(set(after.tolist())) == 1, (r, after)


@pytest.mark.parametrize("name", ["generate_pad_in_prompt_no_mask", "generate_pad_is_eos_no_mask"])
def test_mask_inferred_from_pad_as_transformers_infers_it(name):
    """No attention_mask and pad in the prompt: transformers infers mask = ids != pad unless pad
    is an eos (golden/opt). The fixture's prompt must hold the pad."""
    model, inputs, meta, want, eos, pad = _opt_case(name)
    assert "attention_mask" not in inputs and (inputs["input_ids"] == pad).any()
    np.testing.assert_array_equal(model.generate(**inputs, **meta["kwargs"]), want)


def test_beam_search_reorders_the_cache():
    """A step whose logits depend on the whole history it carries in its cache: if beam search
    handed a row another beam's cache, some returned hypothesis would not be a history the model
    was actually run on."""
    V, eos = 9, 1
    rng = np.random.default_rng(3)
    weights = rng.standard_normal((V, V)).astype(np.float32)
    seen = set()

    def step(input_ids, position_ids, attention_mask, past, context):
        hist = input_ids if past is None else np.concatenate([past, input_ids], 1)
        for row in hist:
            seen.add(tuple(row))
        mix = (hist * np.arange(1, hist.shape[1] + 1)).sum(1) % V  # order-sensitive summary
        return weights[mix] + 0.3 * weights[hist[:, -1]], hist

    ids = np.array([[3, 4], [5, 6]])
    out = generate(
        step,
        ids,
        eos_token_id=eos,
        pad_token_id=0,
        num_beams=3,
        num_return_sequences=3,
        max_new_tokens=7,
    )
    assert out.shape[0] == 6
    for row in out:
        row = list(row)
        end = row.index(eos, 2) if eos in row[2:] else len(row) - 1  # the last token is never fed
        assert tuple(row[:end]) in seen, row


def test_take_rows_walks_nests():
    tree = {"a": [np.arange(3), (np.arange(6).reshape(3, 2),)], "b": None}
    out = take_rows(tree, np.array([2, 0]))
    np.testing.assert_array_equal(out["a"][0], [2, 0])
    np.testing.assert_array_equal(out["a"][1][0], [[4, 5], [0, 1]])
    assert out["b"] is None


@given(st.data())
def test_topk_equals_a_stable_full_sort(data):
    """generate.topk partitions instead of sorting; it must pick exactly what the stable sort
    picks, ties (which a low-precision score row is full of) and -inf included."""
    from hypothesis.extra.numpy import arrays

    from minblip.generate import topk

    B, n = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 60))
    values = st.sampled_from([0.0, -1.0, -1.5, 2.0, -np.inf, np.finfo(np.float32).min]) | st.floats(
        -5, 5, width=32
    )
    x = data.draw(arrays(np.float32, (B, n), elements=values))
    if data.draw(st.booleans()):
        x[data.draw(st.integers(0, B - 1)), data.draw(st.integers(0, n - 1))] = np.nan
    k = data.draw(st.integers(1, n + 2))
    np.testing.assert_array_equal(topk(x, k), np.argsort(-x, axis=-1, kind="stable")[:, :k])
