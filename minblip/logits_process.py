"""Logits processors and sampling warpers, as transformers 5.23.0 applies them during generate.

Each is a pure function of the running ids (B, T) and the next-token scores (B, V), returning new
scores (never modifying its inputs). `processors(...)` builds the list generate applies each step,
in transformers' order: repetition penalty, no-repeat n-gram, min length, min new tokens, then --
only when sampling -- temperature, top-k, top-p. Greedy and sampling apply them to raw logits,
beam search to log-softmax scores (generation.md §2.6).
"""

import numpy as np

from .errors import InputError

NEG_INF = -np.inf


def repetition_penalty(ids, scores, penalty, ignore_before=None):
    """Every id already present scores s*penalty if s < 0 else s/penalty (once per distinct id).

    ignore_before (B,): leading positions to skip per row (5.x skips left padding).
    """
    B, V = scores.shape
    seen = np.zeros((B, V + 1), bool)
    ids = np.minimum(ids, V)  # ids beyond the head's vocabulary cannot be generated: no penalty
    if ignore_before is not None:
        ids = np.where(np.arange(ids.shape[1]) < np.asarray(ignore_before)[:, None], V, ids)
    seen[np.arange(B)[:, None], ids] = True
    penalised = np.where(scores < 0, scores * penalty, scores / penalty)
    return np.where(seen[:, :V], penalised, scores)


def no_repeat_ngram(ids, scores, n):
    """Ban every token that would complete an n-gram already present in the row."""
    B, T = ids.shape
    if T < n:
        return scores
    prefix = ids[:, T + 1 - n :]  # the last n-1 tokens
    windows = np.lib.stride_tricks.sliding_window_view(ids, n, axis=1)  # b (T-n+1) n
    hit = (windows[..., :-1] == prefix[:, None, :]).all(-1)
    banned = np.zeros(scores.shape, bool)
    rows, cols = np.nonzero(hit)
    banned[rows, windows[rows, cols, -1]] = True
    return np.where(banned, NEG_INF, scores)


def suppress_eos(scores, eos_ids):
    out = scores.copy()
    out[:, list(eos_ids)] = NEG_INF
    return out


def temperature(scores, t):
    return scores / t


def top_k(scores, k, min_keep=1):
    """Keep the k highest scores (ties at the threshold kept), -inf elsewhere."""
    k = min(max(k, min_keep), scores.shape[-1])
    kth = np.partition(scores, -k, axis=-1)[:, -k, None]
    return np.where(scores < kth, NEG_INF, scores)


def top_p(scores, p, min_keep=1):
    """Keep the smallest set of highest-probability tokens whose mass exceeds p (nucleus)."""
    order = np.argsort(scores, axis=-1, kind="stable")  # ascending, as transformers sorts
    s = np.take_along_axis(scores, order, -1)
    e = np.exp(s - s[:, -1:])
    probs = e / e.sum(-1, keepdims=True)
    # torch's CPU cumsum accumulates float32 in double; so do we
    cum = np.cumsum(probs.astype(np.float64), -1).astype(scores.dtype)
    remove_sorted = cum <= (1 - p)
    remove_sorted[:, -min_keep:] = False
    remove = np.zeros_like(remove_sorted)
    np.put_along_axis(remove, order, remove_sorted, -1)
    return np.where(remove, NEG_INF, scores)


def processors(
    *,
    eos_ids,
    prompt_len,
    repetition_penalty_=1.0,
    no_repeat_ngram_size=0,
    min_length=0,
    min_new_tokens=None,
    do_sample=False,
    temperature_=1.0,
    top_k_=50,
    top_p_=1.0,
    num_beams=1,
    ignore_before=None,
):
    """The per-step processors, in transformers' order, as functions (ids, scores) -> scores."""
    _check(repetition_penalty_, temperature_, top_k_, top_p_, no_repeat_ngram_size)
    steps = []
    if repetition_penalty_ != 1.0:
        steps.append(lambda ids, s: repetition_penalty(ids, s, repetition_penalty_, ignore_before))
    if no_repeat_ngram_size:
        steps.append(lambda ids, s: no_repeat_ngram(ids, s, no_repeat_ngram_size))
    if min_length and min_length > 0:
        steps.append(lambda ids, s: suppress_eos(s, eos_ids) if ids.shape[1] < min_length else s)
    if min_new_tokens:
        steps.append(
            lambda ids, s: (
                suppress_eos(s, eos_ids) if ids.shape[1] - prompt_len < min_new_tokens else s
            )
        )
    if do_sample:
        keep = len(eos_ids) + 1 if num_beams > 1 else 1  # beam sampling keeps room for an eos
        if temperature_ != 1.0:
            steps.append(lambda ids, s: temperature(s, temperature_))
        if top_k_:
            steps.append(lambda ids, s: top_k(s, top_k_, keep))
        if top_p_ < 1.0:
            steps.append(lambda ids, s: top_p(s, top_p_, keep))
    return steps


def _check(penalty, t, k, p, n):
    if not penalty > 0:
        raise InputError(f"repetition_penalty must be > 0, got {penalty}")
    if not t > 0:
        raise InputError(f"temperature must be > 0 (use do_sample=False for greedy), got {t}")
    if k is not None and (not isinstance(k, int) or k < 0):
        raise InputError(f"top_k must be a non-negative int, got {k}")
    if not 0 <= p <= 1:
        raise InputError(f"top_p must be in [0, 1], got {p}")
    if not isinstance(n, int) or n < 0:
        raise InputError(f"no_repeat_ngram_size must be a non-negative int, got {n}")


def apply(steps, ids, scores):
    for step in steps:
        scores = step(ids, scores)
    return scores


def sample(scores, rng):
    """One token per row from softmax(scores) with numpy's Generator (inverse CDF).

    transformers draws with torch.multinomial; the distribution is the same, the draws are not.
    """
    e = np.exp(scores - scores.max(-1, keepdims=True))
    probs = e / e.sum(-1, keepdims=True)
    cdf = np.cumsum(probs.astype(np.float64), -1)
    u = rng.random((scores.shape[0], 1)) * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(-1), scores.shape[-1] - 1)
