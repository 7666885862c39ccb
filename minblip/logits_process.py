"""Logits processors and sampling warpers, as transformers 5.23.0 applies them during generate.

Each is a pure function of the running ids (B, T) and the next-token scores (B, V), returning new
scores (never modifying its inputs). `processors(...)` builds the list generate applies each step,
in transformers' order: repetition penalty, no-repeat n-gram, min length, min new tokens, then --
only when sampling -- temperature, top-k, top-p. Greedy and sampling apply them to raw logits,
beam search to log-softmax scores (generation.md §2.6).
"""

import numpy as np

from .errors import InputError
from .ops import log_softmax, softmax

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


def sequence_bias(ids, scores, biases):
    """Add biases[seq] to the last token of seq wherever the row ends with seq[:-1].

    biases: {tuple of ids: float}; one-token sequences always apply. Mirrors
    SequenceBiasLogitsProcessor (bad_words_ids are biases of -inf)."""
    T, V = ids.shape[1], scores.shape[-1]
    beyond = sorted({t for seq in biases for t in seq if t >= V})
    if beyond:
        raise InputError(
            f"sequence_bias / bad_words_ids name ids {beyond} beyond the vocabulary ({V})"
        )
    bias = np.zeros(scores.shape, np.float32)
    for seq, b in biases.items():
        if len(seq) == 1:
            bias[:, seq[0]] = b  # the length-1 table, assigned (not summed) as transformers does
    groups = {}  # longer sequences by prefix length, in order of appearance (transformers' sums)
    for seq, b in biases.items():
        if len(seq) > 1:
            groups.setdefault(len(seq) - 1, []).append((seq, b))
    for n, group in groups.items():
        if n > T:  # the prefix is longer than the context
            continue
        for seq, b in group:
            match = (ids[:, T - n :] == np.asarray(seq[:-1])).all(-1)  # b
            bias[:, seq[-1]] += np.where(match, np.float32(b), np.float32(0.0))
    return scores + bias


def bad_words_biases(bad_words_ids, eos_ids, vocab_size=None):
    """NoBadWordsLogitsProcessor's biases: -inf per banned sequence, a lone eos never banned."""
    if not isinstance(bad_words_ids, (list, tuple)) or not bad_words_ids:
        raise InputError(f"bad_words_ids must be a non-empty list of lists, got {bad_words_ids!r}")
    for seq in bad_words_ids:
        if not isinstance(seq, (list, tuple)) or not all(
            isinstance(t, (int, np.integer)) and t >= 0 for t in seq
        ):
            raise InputError(f"bad_words_ids must be lists of ids >= 0, got {bad_words_ids!r}")
    kept = [
        tuple(int(t) for t in s) for s in bad_words_ids if not any(list(s) == [e] for e in eos_ids)
    ]
    return {s: float("-inf") for s in kept}


def forced_token(scores, token_ids):
    """Every score -inf but the forced tokens', which are 0 (ForcedBOS / ForcedEOS processors)."""
    ids = [int(t) for t in token_ids]
    if any(not 0 <= t < scores.shape[-1] for t in ids):
        raise InputError(
            f"forced token id(s) {ids} outside the vocabulary (0..{scores.shape[-1] - 1})"
        )
    out = np.full_like(scores, NEG_INF)
    out[:, ids] = 0
    return out


def remove_invalid(scores):
    """InfNanRemoveLogitsProcessor: nan -> 0, +-inf -> the dtype's largest / smallest."""
    info = np.finfo(scores.dtype)
    out = np.where(np.isnan(scores), scores.dtype.type(0), scores)
    return np.where(out == np.inf, info.max, np.where(out == -np.inf, info.min, out))


def exponential_decay(ids, scores, start, factor, eos_ids):
    """ExponentialDecayLengthPenalty: past `start` (prompt included), eos scores grow by
    |s| * (factor ** steps - 1)."""
    steps = ids.shape[1] - start
    if steps <= 0:
        return scores
    out = scores.copy()
    eos = list(eos_ids)
    s = scores[:, eos]
    penalty = np.abs(s) * np.float32(pow(factor, steps) - 1)
    out[:, eos] = s + np.where(np.isfinite(s), penalty, np.float32(0.0))
    return out


def suppress(scores, token_ids):
    out = scores.copy()
    out[:, [t for t in token_ids if 0 <= t < scores.shape[-1]]] = NEG_INF
    return out


def _keep_top(remove, values, k):
    """Never remove the k highest values of a row (min_tokens_to_keep)."""
    k = min(k, values.shape[-1])
    top = np.argsort(-values, axis=-1, kind="stable")[:, :k]
    np.put_along_axis(remove, top, False, -1)
    return remove


def min_p(scores, p, min_keep=1):
    """MinPLogitsWarper: drop tokens less likely than p times the most likely one."""
    probs = softmax.reference(scores)
    remove = probs < np.float32(p) * probs.max(-1, keepdims=True)
    return np.where(_keep_top(remove, probs, min_keep), NEG_INF, scores)


def typical_p(scores, mass, min_keep=1):
    """TypicalLogitsWarper: keep the tokens whose surprise is closest to the entropy, up to mass."""
    normalized = log_softmax(scores)
    p = np.exp(normalized)
    with np.errstate(invalid="ignore"):  # -inf * 0 for filtered tokens: nan, which nansum skips
        ent = -np.nansum(normalized * p, -1, keepdims=True)
    dist = np.abs(-normalized - ent)
    order = np.argsort(dist, axis=-1, kind="stable")
    sorted_dist = np.take_along_axis(dist, order, -1)
    probs = softmax.reference(np.take_along_axis(scores, order, -1))
    cum = np.cumsum(probs.astype(np.float64), -1).astype(scores.dtype)  # torch: double accumulator
    last = np.minimum((cum < np.float32(mass)).sum(-1), scores.shape[-1] - 1)
    remove_sorted = sorted_dist > np.take_along_axis(sorted_dist, last[:, None], -1)
    remove_sorted[:, :min_keep] = False
    remove = np.zeros_like(remove_sorted)
    np.put_along_axis(remove, order, remove_sorted, -1)
    return np.where(remove, NEG_INF, scores)


def _cutoff(scores, threshold, min_keep):
    """Epsilon / eta sampling: drop probabilities below threshold, keeping the min_keep best."""
    remove = softmax.reference(scores) < threshold
    k = min(min_keep, scores.shape[-1])
    kth = -np.partition(-scores, k - 1, axis=-1)[:, k - 1 : k]  # the k-th largest score
    return np.where(remove & (scores < kth), NEG_INF, scores)


def epsilon_cutoff(scores, epsilon, min_keep=1):
    """EpsilonLogitsWarper."""
    return _cutoff(scores, np.float32(epsilon), min_keep)


def eta_cutoff(scores, epsilon, min_keep=1):
    """EtaLogitsWarper: the threshold is min(eps, sqrt(eps) exp(-entropy)), per row."""
    logp = log_softmax(scores)
    logp = np.maximum(logp, np.finfo(scores.dtype).min)  # torch clamps before p log p
    entropy = -(logp * np.exp(logp)).sum(-1, keepdims=True)
    eps = np.float32(epsilon)
    return _cutoff(scores, np.minimum(eps, np.sqrt(eps) * np.exp(-entropy)), min_keep)


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
    max_length=None,
    sequence_bias_=None,
    bad_words_ids=None,
    forced_bos_token_id=None,
    forced_eos_token_id=None,
    remove_invalid_values=False,
    exponential_decay_length_penalty=None,
    suppress_tokens=None,
    begin_suppress_tokens=None,
    min_p_=None,
    typical_p_=None,
    epsilon_cutoff_=None,
    eta_cutoff_=None,
    renormalize_logits=False,
):
    """The per-step processors, in transformers' order (GenerationMixin._get_logits_processor),
    as functions (ids, scores) -> scores."""
    _check(repetition_penalty_, temperature_, top_k_, top_p_, no_repeat_ngram_size)
    _check_more(min_p_, typical_p_, epsilon_cutoff_, eta_cutoff_, exponential_decay_length_penalty)
    steps = []
    if sequence_bias_ is not None:
        biases = _bias_dict(sequence_bias_)
        steps.append(lambda ids, s: sequence_bias(ids, s, biases))
    if repetition_penalty_ != 1.0:
        steps.append(lambda ids, s: repetition_penalty(ids, s, repetition_penalty_, ignore_before))
    if no_repeat_ngram_size:
        steps.append(lambda ids, s: no_repeat_ngram(ids, s, no_repeat_ngram_size))
    if bad_words_ids is not None:
        bad = bad_words_biases(bad_words_ids, eos_ids)
        steps.append(lambda ids, s: sequence_bias(ids, s, bad))
    if min_length and min_length > 0:
        steps.append(lambda ids, s: suppress_eos(s, eos_ids) if ids.shape[1] < min_length else s)
    if min_new_tokens:
        steps.append(
            lambda ids, s: (
                suppress_eos(s, eos_ids) if ids.shape[1] - prompt_len < min_new_tokens else s
            )
        )
    if forced_bos_token_id is not None:
        steps.append(
            lambda ids, s: forced_token(s, [forced_bos_token_id]) if ids.shape[1] == 1 else s
        )
    if forced_eos_token_id is not None:
        forced = list(np.atleast_1d(forced_eos_token_id))
        steps.append(
            lambda ids, s: forced_token(s, forced) if ids.shape[1] == max_length - 1 else s
        )
    if remove_invalid_values:
        steps.append(lambda ids, s: remove_invalid(s))
    if exponential_decay_length_penalty is not None:
        start, factor = exponential_decay_length_penalty
        steps.append(lambda ids, s: exponential_decay(ids, s, start + prompt_len, factor, eos_ids))
    if suppress_tokens is not None:
        steps.append(lambda ids, s: suppress(s, list(suppress_tokens)))
    if begin_suppress_tokens is not None:
        begin = prompt_len if (prompt_len > 1 or forced_bos_token_id is None) else prompt_len + 1
        steps.append(
            lambda ids, s: suppress(s, list(begin_suppress_tokens)) if ids.shape[1] == begin else s
        )
    if do_sample:
        keep = len(eos_ids) + 1 if num_beams > 1 else 1  # beam sampling keeps room for an eos
        if temperature_ != 1.0:
            steps.append(lambda ids, s: temperature(s, temperature_))
        if top_k_:
            steps.append(lambda ids, s: top_k(s, top_k_, keep))
        if top_p_ < 1.0:
            steps.append(lambda ids, s: top_p(s, top_p_, keep))
        if min_p_ is not None:
            steps.append(lambda ids, s: min_p(s, min_p_, keep))
        if typical_p_ is not None and typical_p_ < 1.0:
            steps.append(lambda ids, s: typical_p(s, typical_p_, keep))
        if epsilon_cutoff_ is not None and 0.0 < epsilon_cutoff_ < 1.0:
            steps.append(lambda ids, s: epsilon_cutoff(s, epsilon_cutoff_, keep))
        if eta_cutoff_ is not None and 0.0 < eta_cutoff_ < 1.0:
            steps.append(lambda ids, s: eta_cutoff(s, eta_cutoff_, keep))
    if renormalize_logits:  # always the last one
        steps.append(lambda ids, s: log_softmax(s))
    return steps


def _bias_dict(biases):
    """sequence_bias as {tuple of ids: float}, from a dict or a list of [ids, bias] pairs."""
    items = biases.items() if isinstance(biases, dict) else biases
    try:
        out = {tuple(int(t) for t in seq): float(b) for seq, b in items}
    except (TypeError, ValueError):
        raise InputError(f"sequence_bias must map id sequences to floats, got {biases!r}") from None
    if any(len(seq) == 0 or min(seq) < 0 for seq in out):
        raise InputError(f"sequence_bias sequences must be non-empty lists of ids >= 0: {biases!r}")
    return out


def _check_more(mp, tp, eps, eta, decay):
    if mp is not None and not 0 <= mp <= 1:
        raise InputError(f"min_p must be in [0, 1], got {mp}")
    if tp is not None and not 0 < tp < 1 and tp != 1.0:
        raise InputError(f"typical_p must be > 0 and < 1, got {tp}")
    for name, v in (("epsilon_cutoff", eps), ("eta_cutoff", eta)):
        if v is not None and not 0 <= v < 1:
            raise InputError(f"{name} must be in [0, 1), got {v}")
    if decay is not None and (not isinstance(decay, (tuple, list)) or len(decay) != 2):
        raise InputError(
            f"exponential_decay_length_penalty must be (start_index, decay_factor), got {decay!r}"
        )


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
