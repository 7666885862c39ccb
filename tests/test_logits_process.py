"""Logits processors and warpers equal transformers' on the same scores (golden/logits_process)."""

import json

import numpy as np
import pytest
from conftest import GOLDEN

from minblip import logits_process as lp

CASES = np.load(GOLDEN / "logits_process" / "cases.npz")
META = json.loads((GOLDEN / "logits_process" / "meta.json").read_text())
EOS, P = META["eos"], META["prompt_len"]

OURS = {
    "repetition_penalty_1.3": lambda i, s: lp.repetition_penalty(i, s, 1.3),
    "repetition_penalty_0.7": lambda i, s: lp.repetition_penalty(i, s, 0.7),
    "repetition_penalty_ignore_padding": lambda i, s: lp.repetition_penalty(i, s, 1.5, [0, 3, 5]),
    "no_repeat_ngram_2": lambda i, s: lp.no_repeat_ngram(i, s, 2),
    "no_repeat_ngram_3": lambda i, s: lp.no_repeat_ngram(i, s, 3),
    "no_repeat_ngram_20": lambda i, s: lp.no_repeat_ngram(i, s, 20),
    "min_length_active": lambda i, s: lp.apply(
        lp.processors(eos_ids=EOS, prompt_len=P, min_length=20), i, s
    ),
    "min_length_inactive": lambda i, s: lp.apply(
        lp.processors(eos_ids=EOS, prompt_len=P, min_length=12), i, s
    ),
    "min_new_tokens_active": lambda i, s: lp.apply(
        lp.processors(eos_ids=EOS, prompt_len=P, min_new_tokens=9), i, s
    ),
    "min_new_tokens_inactive": lambda i, s: lp.apply(
        lp.processors(eos_ids=EOS, prompt_len=P, min_new_tokens=8), i, s
    ),
    "temperature_0.7": lambda i, s: lp.temperature(s, 0.7),
    "top_k_5": lambda i, s: lp.top_k(s, 5),
    "top_k_1": lambda i, s: lp.top_k(s, 1),
    "top_k_1_keep_2": lambda i, s: lp.top_k(s, 1, min_keep=2),
    "top_p_0.9": lambda i, s: lp.top_p(s, 0.9),
    "top_p_0.3": lambda i, s: lp.top_p(s, 0.3),
    "top_p_0.0_keep_2": lambda i, s: lp.top_p(s, 0.0, min_keep=2),
    "min_p_0.2": lambda i, s: lp.min_p(s, 0.2),
    "min_p_0.9_keep_3": lambda i, s: lp.min_p(s, 0.9, min_keep=3),
    "typical_p_0.6": lambda i, s: lp.typical_p(s, 0.6),
    "typical_p_0.2_keep_2": lambda i, s: lp.typical_p(s, 0.2, min_keep=2),
    "epsilon_0.02": lambda i, s: lp.epsilon_cutoff(s, 0.02),
    "epsilon_0.5_keep_2": lambda i, s: lp.epsilon_cutoff(s, 0.5, min_keep=2),
    "eta_0.02": lambda i, s: lp.eta_cutoff(s, 0.02),
    "eta_0.3_keep_3": lambda i, s: lp.eta_cutoff(s, 0.3, min_keep=3),
    "sequence_bias": lambda i, s: lp.apply(
        lp.processors(
            eos_ids=EOS,
            prompt_len=P,
            sequence_bias_={(3,): 2.5, (5, 8): -1.5, (11,): -4.0, (26, 5, 9): 1.25},
        ),
        i,
        s,
    ),
    "sequence_bias_partial_prefix": lambda i, s: lp.apply(
        lp.processors(
            eos_ids=EOS,
            prompt_len=P,
            sequence_bias_={tuple(seq): b for seq, b in META["sequence_bias_partial_prefix"]},
        ),
        i,
        s,
    ),
    "bad_words": lambda i, s: lp.apply(
        lp.processors(eos_ids=EOS, prompt_len=P, bad_words_ids=[[7], [12], [30, 21], [1, 2, 3]]),
        i,
        s,
    ),
    "forced_eos_now": lambda i, s: lp.apply(
        lp.processors(eos_ids=EOS, prompt_len=P, max_length=13, forced_eos_token_id=EOS), i, s
    ),
    "forced_eos_later": lambda i, s: lp.apply(
        lp.processors(eos_ids=EOS, prompt_len=P, max_length=20, forced_eos_token_id=EOS), i, s
    ),
    "exponential_decay": lambda i, s: lp.apply(
        lp.processors(eos_ids=EOS, prompt_len=P, exponential_decay_length_penalty=(3, 1.7)), i, s
    ),
    "suppress_tokens": lambda i, s: lp.apply(
        lp.processors(eos_ids=EOS, prompt_len=P, suppress_tokens=[0, 5, 49]), i, s
    ),
    "begin_suppress_now": lambda i, s: lp.apply(
        lp.processors(eos_ids=EOS, prompt_len=12, begin_suppress_tokens=[1, 2]), i, s
    ),
    "begin_suppress_later": lambda i, s: lp.apply(
        lp.processors(eos_ids=EOS, prompt_len=4, begin_suppress_tokens=[1, 2]), i, s
    ),
    "renormalize": lambda i, s: lp.apply(
        lp.processors(eos_ids=EOS, prompt_len=P, renormalize_logits=True), i, s
    ),
    "chain_sampling": lambda i, s: lp.apply(
        lp.processors(
            eos_ids=EOS,
            prompt_len=P,
            repetition_penalty_=1.2,
            no_repeat_ngram_size=2,
            do_sample=True,
            temperature_=0.8,
            top_k_=10,
            top_p_=0.8,
        ),
        i,
        s,
    ),
}


def test_every_golden_config_is_covered():
    assert set(OURS) == set(META["configs"])


@pytest.mark.parametrize("name", META["configs"])
def test_processor_equals_transformers(name):
    ids, scores = CASES["ids"], CASES["scores"]
    before = scores.copy()
    got = OURS[name](ids, scores)
    want = CASES[name]
    np.testing.assert_array_equal(
        np.isneginf(got), np.isneginf(want), err_msg=f"{name}: filtered set"
    )
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-6, atol=0, err_msg=name)
    np.testing.assert_array_equal(scores, before)  # inputs untouched


def test_sampling_follows_the_distribution_and_the_seed():
    scores = np.log(np.array([[0.1, 0.0, 0.6, 0.3]], np.float64) + 1e-300).repeat(20000, 0)
    draws = lp.sample(scores, np.random.default_rng(0))
    freq = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(freq, [0.1, 0.0, 0.6, 0.3], atol=0.015)
    again = lp.sample(scores, np.random.default_rng(0))
    np.testing.assert_array_equal(draws, again)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature_": 0.0}, "temperature"),
        ({"top_p_": 1.5}, "top_p"),
        ({"top_k_": -1}, "top_k"),
        ({"repetition_penalty_": 0.0}, "repetition"),
        ({"min_p_": 1.5}, "min_p"),
        ({"typical_p_": 0.0}, "typical_p"),
        ({"epsilon_cutoff_": 1.0}, "epsilon_cutoff"),
        ({"bad_words_ids": []}, "bad_words_ids"),
        ({"bad_words_ids": [[1, -2]]}, "bad_words_ids"),
        ({"sequence_bias_": {(): 1.0}}, "sequence_bias"),
        ({"exponential_decay_length_penalty": 3}, "exponential_decay"),
    ],
)
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lp.processors(eos_ids=EOS, prompt_len=P, do_sample=True, **kwargs)


def test_biases_beyond_the_vocabulary_are_refused():
    steps = lp.processors(eos_ids=EOS, prompt_len=P, sequence_bias_={(3, 99): 1.0})
    with pytest.raises(ValueError, match=r"ids \[99\] beyond the vocabulary \(50\)"):
        lp.apply(steps, CASES["ids"], CASES["scores"])
