"""Golden: transformers 5.23.0's logits processors and warpers on fixed random scores.

Writes golden/logits_process/cases.npz + meta.json: for each configuration, the scores after
transformers' processor (or chain of processors, in generate's order).
"""

import json

import numpy as np
import torch
import transformers
from transformers.generation import logits_process as lp


def _partial_bias(ids, V):
    """Biases whose prefixes end each row of ids: row 0 matches fully, rows 1 and 2 in one of
    the two prefix tokens only (so they must get no bias). [[token ids], bias] pairs."""
    (a0, b0), (a1, b1), (a2, b2) = (map(int, row[-2:]) for row in ids[:3])
    return [[[a0, b0, 5], 2.0], [[a1, (b1 + 1) % V, 6], -2.0], [[(a2 + 1) % V, b2, 7], 1.5]]


def _configs(prompt_len, eos, partial=()):
    rp, nr = lp.RepetitionPenaltyLogitsProcessor, lp.NoRepeatNGramLogitsProcessor
    return {
        "repetition_penalty_1.3": [rp(1.3)],
        "repetition_penalty_0.7": [rp(0.7)],
        "repetition_penalty_ignore_padding": [
            rp(1.5, prompt_ignore_length=torch.tensor([0, 3, 5]))
        ],
        "no_repeat_ngram_2": [nr(2)],
        "no_repeat_ngram_3": [nr(3)],
        "no_repeat_ngram_20": [nr(20)],
        "min_length_active": [lp.MinLengthLogitsProcessor(20, eos)],
        "min_length_inactive": [lp.MinLengthLogitsProcessor(12, eos)],
        "min_new_tokens_active": [lp.MinNewTokensLengthLogitsProcessor(prompt_len, 9, eos)],
        "min_new_tokens_inactive": [lp.MinNewTokensLengthLogitsProcessor(prompt_len, 8, eos)],
        "temperature_0.7": [lp.TemperatureLogitsWarper(0.7)],
        "top_k_5": [lp.TopKLogitsWarper(5)],
        "top_k_1": [lp.TopKLogitsWarper(1)],
        "top_k_1_keep_2": [lp.TopKLogitsWarper(1, min_tokens_to_keep=2)],
        "top_p_0.9": [lp.TopPLogitsWarper(0.9)],
        "top_p_0.3": [lp.TopPLogitsWarper(0.3)],
        "top_p_0.0_keep_2": [lp.TopPLogitsWarper(0.0, min_tokens_to_keep=2)],
        "min_p_0.2": [lp.MinPLogitsWarper(0.2)],
        "min_p_0.9_keep_3": [lp.MinPLogitsWarper(0.9, min_tokens_to_keep=3)],
        "typical_p_0.6": [lp.TypicalLogitsWarper(0.6)],
        "typical_p_0.2_keep_2": [lp.TypicalLogitsWarper(0.2, min_tokens_to_keep=2)],
        "epsilon_0.02": [lp.EpsilonLogitsWarper(0.02)],
        "epsilon_0.5_keep_2": [lp.EpsilonLogitsWarper(0.5, min_tokens_to_keep=2)],
        "eta_0.02": [lp.EtaLogitsWarper(0.02)],
        "eta_0.3_keep_3": [lp.EtaLogitsWarper(0.3, min_tokens_to_keep=3)],
        "sequence_bias": [
            lp.SequenceBiasLogitsProcessor({(3,): 2.5, (5, 8): -1.5, (11,): -4.0, (26, 5, 9): 1.25})
        ],
        "sequence_bias_partial_prefix": [
            lp.SequenceBiasLogitsProcessor({tuple(seq): b for seq, b in partial})
        ],
        "bad_words": [lp.NoBadWordsLogitsProcessor([[7], [12], [30, 21], [1, 2, 3]], eos)],
        "forced_eos_now": [lp.ForcedEOSTokenLogitsProcessor(13, eos)],
        "forced_eos_later": [lp.ForcedEOSTokenLogitsProcessor(20, eos)],
        "exponential_decay": [lp.ExponentialDecayLengthPenalty((3, 1.7), eos, prompt_len)],
        "suppress_tokens": [lp.SuppressTokensLogitsProcessor([0, 5, 49])],
        "begin_suppress_now": [lp.SuppressTokensAtBeginLogitsProcessor([1, 2], 12)],
        "begin_suppress_later": [lp.SuppressTokensAtBeginLogitsProcessor([1, 2], 4)],
        "renormalize": [lp.LogitNormalization()],
        "chain_sampling": [
            rp(1.2),
            nr(2),
            lp.TemperatureLogitsWarper(0.8),
            lp.TopKLogitsWarper(10),
            lp.TopPLogitsWarper(0.8),
        ],
    }


def build(root):
    out = root / "logits_process"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1234)
    B, T, V, prompt_len, eos = 3, 12, 50, 4, [7, 9]
    ids = rng.integers(0, V, (B, T))
    ids[:, 6:9] = ids[:, 2:5]  # a repeated trigram, so n-gram bans have something to ban
    ids[1, 0] = V + 3  # an id beyond the head's vocabulary (can't be generated; must be skipped)
    scores = (rng.standard_normal((B, V)) * 3).astype(np.float32)
    scores[0, 10] = scores[0, 11]  # a tie, for top-k's "ties at the threshold are kept"
    arrays = {"ids": ids, "scores": scores}
    partial = _partial_bias(ids, V)
    for name, chain in _configs(prompt_len, eos, partial).items():
        s = torch.from_numpy(scores.copy())
        for proc in chain:
            s = proc(torch.from_numpy(np.minimum(ids, V + 3)), s)
        arrays[name] = s.numpy()
    np.savez(out / "cases.npz", **arrays)
    meta = {
        "prompt_len": prompt_len,
        "eos": eos,
        "configs": list(_configs(prompt_len, eos, partial)),
        "sequence_bias_partial_prefix": partial,
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
