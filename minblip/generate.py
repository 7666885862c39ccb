"""Decoding: greedy and beam search, as transformers 5.23.0's generate runs them.

Model-agnostic: the model is a step function

    step(input_ids, position_ids, attention_mask, past, context) -> (logits (R, V), past)

called first with the whole prompt (past=None), then with one new token per row. `past` is the
model's KV cache: any nest of dicts/lists/tuples of arrays with the batch first; beam search
reorders its rows. `context` is per-item state that never changes (BLIP: the image keys/values of
every cross-attention layer): expanded once per beam and never reordered (beams of one item share
it). attention_mask is None when the prompt has no padding (transformers drops an all-ones mask).

The caller's arrays are never modified (transformers' BLIP generate writes into input_ids).
Semantics follow transformers 5.23's generation/utils.py (GenerationMixin.generate, _sample with
do_sample=False, _beam_search) and its logits processors (minblip.logits_process); the golden
cases in golden/caption pin them.
"""

import time

import numpy as np

from . import logits_process as lp
from .errors import InputError
from .ops import log_softmax, softmax
from .outputs import ModelOutput

BUFFER_START = 256  # beam buffer width (new tokens) for models without a position table
NEG = np.float32(-1e9)  # transformers' "impossible" beam score (a float32 literal, not -inf)

# processors passed through to logits_process.processors: generate's name -> processors' name
EXTRA = {
    "sequence_bias": "sequence_bias_",
    "bad_words_ids": "bad_words_ids",
    "forced_bos_token_id": "forced_bos_token_id",
    "forced_eos_token_id": "forced_eos_token_id",
    "remove_invalid_values": "remove_invalid_values",
    "exponential_decay_length_penalty": "exponential_decay_length_penalty",
    "suppress_tokens": "suppress_tokens",
    "begin_suppress_tokens": "begin_suppress_tokens",
    "min_p": "min_p_",
    "typical_p": "typical_p_",
    "epsilon_cutoff": "epsilon_cutoff_",
    "eta_cutoff": "eta_cutoff_",
    "renormalize_logits": "renormalize_logits",
}
_KNOWN = {
    "max_length",
    "max_new_tokens",
    "min_length",
    "min_new_tokens",
    "num_beams",
    "num_return_sequences",
    "length_penalty",
    "early_stopping",
    "repetition_penalty",
    "no_repeat_ngram_size",
    "do_sample",
    "use_cache",
    "temperature",
    "top_k",
    "top_p",
    "output_scores",
    "output_logits",
    "return_dict_in_generate",
    "output_attentions",
    "output_hidden_states",
    "max_time",
    *EXTRA,
}


def ignored_prefix(mask, cfg):
    """The repetition penalty's leading positions to skip, one per decoded row (B * beams or
    B * num_return_sequences), as 5.23 computes them after expanding the inputs: the left
    padding of the prompt mask. With inputs_embeds alone the ids hold only new tokens, yet 5.23
    still skips that many of them (the first generated tokens go unpenalised), so minblip too."""
    if mask is None:
        return None
    copies = cfg["num_beams"] if cfg["num_beams"] > 1 else cfg["num_return_sequences"]
    return np.repeat(np.argmax(mask != 0, axis=1), copies)


def generate(
    step,
    input_ids,
    *,
    eos_token_id,
    pad_token_id,
    attention_mask=None,
    context=None,
    max_position_embeddings=None,
    seed=None,
    generator=None,
    inputs_embeds=None,
    **kwargs,
):
    """Greedy, sampling, beam-search or beam-sampling continuation of input_ids (B, Tp).

    Returns int64 ids (B * n_return, L), or with return_dict_in_generate=True a ModelOutput with
    transformers' fields: sequences, scores (per step, the processed scores (R, V) when
    output_scores), logits (per step, raw, when output_logits), and for beams sequences_scores
    (when output_scores) and beam_indices.

    kwargs: max_length / max_new_tokens (default 20 new, capped at max_position_embeddings),
    min_length / min_new_tokens, num_beams, num_return_sequences, length_penalty,
    early_stopping (True / False / "never"), repetition_penalty, no_repeat_ngram_size,
    do_sample with temperature / top_k (default 50) / top_p / min_p / typical_p /
    epsilon_cutoff / eta_cutoff, sequence_bias, bad_words_ids, suppress_tokens,
    begin_suppress_tokens, forced_bos_token_id, forced_eos_token_id, remove_invalid_values,
    exponential_decay_length_penalty, renormalize_logits (logits_process.processors); max_time
    (seconds of decoding, then every row stops, as MaxTimeCriteria); output_attentions /
    output_hidden_states (with return_dict_in_generate: per step, the decoder's self-attention
    probabilities and hidden states for that step's tokens, every row).
    Sampling draws from numpy: `generator` (a np.random.Generator) or `seed` (an int) -- a
    minblip addition; transformers draws from torch's global RNG, so the distributions match
    and the draws do not.
    eos_token_id: an id, a list of ids or None; pad_token_id None falls back to the first eos.
    inputs_embeds (B, T, D): a decoder-only model's first step is fed these instead of input_ids
    (step receives them as its first argument); input_ids is then empty (B, 0) -- only new ids
    are returned, and a max_length / min_length counts the embedded positions too, as 5.23 --
    or the ids of the same T positions. attention_mask then covers the T embedded positions.
    """
    unknown = set(kwargs) - _KNOWN
    if unknown:
        raise InputError(f"generate: unknown or unsupported argument(s) {sorted(unknown)}")
    ids = np.array(input_ids, dtype=np.int64)  # a copy: the caller's array stays as it was
    embeds_only = inputs_embeds is not None and ids.shape[1] != inputs_embeds.shape[1]
    if embeds_only:  # 5.23 counts max_length / min_length over the embedded positions too
        T = inputs_embeds.shape[1]
        if kwargs.get("max_new_tokens") is None and kwargs.get("max_length") is not None:
            kwargs["max_length"] -= T
        if kwargs.get("min_new_tokens") is None and kwargs.get("min_length") is not None:
            kwargs["min_length"] = max(kwargs["min_length"] - T, 0)
    cfg = settings(ids.shape[1], max_position_embeddings, **kwargs)
    eos = [] if eos_token_id is None else list(np.atleast_1d(eos_token_id).astype(np.int64))
    pad = eos[0] if pad_token_id is None and eos else pad_token_id
    if attention_mask is None and pad is not None and pad not in eos and (ids == pad).any():
        attention_mask = ids != pad  # no mask given: transformers infers one from the pad id
    if attention_mask is not None and np.all(np.asarray(attention_mask) == 1):
        attention_mask = None  # transformers drops an all-ones mask (after deriving positions)
    mask = None if attention_mask is None else np.array(attention_mask, dtype=np.int64)
    procs = lp.processors(
        eos_ids=eos,
        prompt_len=ids.shape[1],
        repetition_penalty_=cfg["repetition_penalty"],
        no_repeat_ngram_size=cfg["no_repeat_ngram_size"],
        min_length=cfg["min_length"],
        min_new_tokens=cfg["min_new_tokens"],
        do_sample=cfg["do_sample"],
        temperature_=cfg["temperature"],
        top_k_=cfg["top_k"],
        top_p_=cfg["top_p"],
        num_beams=cfg["num_beams"],
        ignore_before=ignored_prefix(mask, cfg),
        max_length=cfg["max_length"],
        **{ours: kwargs[name] for name, ours in EXTRA.items() if kwargs.get(name) is not None},
    )
    rng = None
    if cfg["do_sample"]:
        rng = generator if generator is not None else _rng(seed)
    rec = {
        "scores": [] if cfg["output_scores"] else None,
        "logits": [] if cfg["output_logits"] else None,
        "attentions": [] if cfg["output_attentions"] else None,
        "hidden_states": [] if cfg["output_hidden_states"] else None,
    }
    extra = {}
    # max_time: like transformers' MaxTimeCriteria, every row stops once this much wall time has
    # passed since decoding began (checked after each step; max_time=0 gives one new token)
    timer = None if cfg["max_time"] is None else (time.perf_counter(), cfg["max_time"])
    if cfg["num_beams"] == 1:
        n = cfg["num_return_sequences"]  # > 1 only when sampling: each copy drawn on its own
        if n > 1:
            rows = np.repeat(np.arange(ids.shape[0]), n)
            ids, mask, context, inputs_embeds = (
                ids[rows],
                None if mask is None else mask[rows],
                take_rows(context, rows),
                take_rows(inputs_embeds, rows),
            )
        max_length = cfg["max_length"]
        seqs = greedy(
            step, ids, mask, context, procs, eos, pad, max_length, rng, rec, timer, inputs_embeds
        )
    else:
        seqs, seq_scores, beam_indices = beam_search(
            step, ids, mask, context, procs, eos, pad, cfg, rng, rec, timer, inputs_embeds
        )
        extra = {
            "sequences_scores": seq_scores if cfg["output_scores"] else None,
            "beam_indices": beam_indices,
        }
    if not cfg["return_dict_in_generate"]:
        return seqs
    as_tuple = lambda xs: None if xs is None else tuple(xs)  # noqa: E731
    return ModelOutput(
        sequences=seqs,
        **({"sequences_scores": extra.pop("sequences_scores")} if extra else {}),
        scores=as_tuple(rec["scores"]),
        logits=as_tuple(rec["logits"]),
        **extra,
        attentions=as_tuple(rec["attentions"]),
        hidden_states=as_tuple(rec["hidden_states"]),
    )


def settings(
    Tp,
    max_position_embeddings,
    max_length=None,
    max_new_tokens=None,
    min_length=None,
    min_new_tokens=None,
    num_beams=1,
    num_return_sequences=1,
    length_penalty=1.0,
    early_stopping=False,
    repetition_penalty=1.0,
    no_repeat_ngram_size=0,
    do_sample=False,
    use_cache=True,
    temperature=1.0,
    top_k=50,
    top_p=1.0,
    output_scores=False,
    output_logits=False,
    return_dict_in_generate=False,
    output_attentions=False,
    output_hidden_states=False,
    max_time=None,
    **processor_options,
):
    """Resolve lengths as 5.23 does and reject what transformers rejects. Tp: prompt length.
    processor_options (sequence_bias, bad_words_ids, min_p, ...) go to logits_process.

    Every option is checked here, before anything is allocated, and the error names it with the
    value given: counts are ints >= 1, penalties finite numbers, probabilities in range."""
    if early_stopping not in (True, False, "never"):
        raise InputError(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
    _count("num_beams", num_beams, 1)
    _count("num_return_sequences", num_return_sequences, 1)
    _count("no_repeat_ngram_size", no_repeat_ngram_size, 0)
    for name, value, low in (
        ("max_length", max_length, 1),
        ("max_new_tokens", max_new_tokens, 1),
        ("min_length", min_length, 0),
        ("min_new_tokens", min_new_tokens, 0),
    ):
        if value is not None:
            _count(name, value, low)
    if top_k is not None:
        _count("top_k", top_k, 0)
    _number("length_penalty", length_penalty)
    _number("repetition_penalty", repetition_penalty, low=0, open_low=True)
    _number("temperature", temperature, low=0, open_low=True)
    _number("top_p", top_p, low=0, high=1)
    if max_time is not None:
        _number("max_time", max_time, low=0)
    for name, low, high, open_low, open_high in (
        ("min_p", 0, 1, False, False),
        ("typical_p", 0, 1, True, False),
        ("epsilon_cutoff", 0, 1, False, True),
        ("eta_cutoff", 0, 1, False, True),
    ):
        if processor_options.get(name) is not None:
            _number(name, processor_options[name], low, high, open_low, open_high)
    for name in ("forced_bos_token_id", "forced_eos_token_id", "suppress_tokens"):
        _ids(name, processor_options.get(name))
    _ids("begin_suppress_tokens", processor_options.get("begin_suppress_tokens"))
    decay = processor_options.get("exponential_decay_length_penalty")
    if decay is not None:
        if not isinstance(decay, (tuple, list)) or len(decay) != 2:
            raise InputError(
                "exponential_decay_length_penalty must be (start_index, decay_factor), "
                f"got {decay!r}"
            )
        _count("exponential_decay_length_penalty start_index", decay[0], 0)
        _number("exponential_decay_length_penalty decay_factor", decay[1])
    for name, value in (
        ("do_sample", do_sample),
        ("use_cache", use_cache),
        ("output_scores", output_scores),
        ("output_logits", output_logits),
        ("return_dict_in_generate", return_dict_in_generate),
        ("output_attentions", output_attentions),
        ("output_hidden_states", output_hidden_states),
    ):
        if value is not None and not isinstance(value, (bool, np.bool_)):
            raise InputError(f"{name} must be True or False, got {value!r}")
    if num_return_sequences > num_beams and not (do_sample and num_beams == 1):
        what = "greedy search" if num_beams == 1 else f"num_beams={num_beams}"
        raise InputError(
            f"num_return_sequences={num_return_sequences} is larger than {what} can return"
        )
    if max_new_tokens is not None:
        max_length = Tp + max_new_tokens
    elif max_length is None:  # 5.x: 20 *new* tokens by default, capped by the position table
        max_length = 20 + Tp
        if max_position_embeddings is not None:
            max_length = min(max_length, max_position_embeddings)
    if Tp >= max_length:
        raise InputError(
            f"the prompt has {Tp} tokens but max_length is {max_length}: nothing is left to "
            "generate; raise max_length or set max_new_tokens"
        )
    if min_new_tokens is not None:
        min_length = Tp + min_new_tokens
    # Beam buffers hold what can be generated, not what was asked for: a row's positions never
    # pass the position table, so no sequence outgrows Tp + max_position_embeddings (the step
    # refuses the first position past the table, as torch would). Without a table they start
    # small and grow as tokens come (beam_search), so max_new_tokens=10**9 allocates nothing.
    reachable = Tp + (max_position_embeddings or BUFFER_START)
    return {
        "max_length": max_length,
        "buffer_length": min(max_length, reachable),
        "min_length": min_length or 0,
        "min_new_tokens": min_new_tokens,
        "num_beams": num_beams,
        "num_return_sequences": num_return_sequences,
        "length_penalty": length_penalty,
        "early_stopping": early_stopping,
        "repetition_penalty": repetition_penalty,
        "no_repeat_ngram_size": no_repeat_ngram_size,
        "do_sample": bool(do_sample),
        "temperature": float(temperature),
        "top_k": top_k,
        "top_p": float(top_p),
        "output_scores": output_scores,
        "output_logits": output_logits,
        "return_dict_in_generate": return_dict_in_generate,
        "output_attentions": bool(output_attentions),
        "output_hidden_states": bool(output_hidden_states),
        "max_time": None if max_time is None else float(max_time),
    }


def _count(name, value, low):
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name} must be an int >= {low}, got {value!r}")
    if value < low:
        raise InputError(f"{name} must be >= {low}, got {value!r}")


def _rng(seed):
    if seed is not None and not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise InputError(f"seed must be an int or None, got {seed!r}")
    try:
        return np.random.default_rng(seed)
    except ValueError as e:  # a negative seed
        raise InputError(f"seed={seed!r}: {e}") from None


def _ids(name, value):
    """None, a token id, or a list of token ids (ints >= 0)."""
    if value is None:
        return
    for v in value if isinstance(value, (list, tuple, np.ndarray)) else [value]:
        _count(f"{name} entry" if v is not value else name, v, 0)


def _number(name, value, low=None, high=None, open_low=False, open_high=False):
    """A finite real number, optionally in [low, high] (an end excluded when open_*)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )
    if not ok or not np.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    below = low is not None and (value <= low if open_low else value < low)
    above = high is not None and (value >= high if open_high else value > high)
    if below or above:
        lo = "(" if open_low else "["
        hi = ")" if open_high else "]"
        span = (
            f"in {lo}{low}, {high}{hi}"
            if high is not None
            else f"{'>' if open_low else '>='} {low}"
        )
        raise InputError(f"{name} must be {span}, got {value!r}")


def first_positions(mask, Tp, R):
    """Position ids of the prompt (R, Tp): cumsum(mask) - 1 with padding at 0, else 0..Tp-1."""
    if mask is None:
        return np.broadcast_to(np.arange(Tp), (R, Tp))
    return np.where(mask == 0, 0, np.cumsum(mask, axis=1) - 1)


def timed_out(timer):
    return timer is not None and time.perf_counter() - timer[0] > timer[1]


def greedy(
    step,
    ids,
    mask,
    context,
    procs,
    eos,
    pad,
    max_length,
    rng=None,
    rec=None,
    timer=None,
    embeds=None,
):
    """argmax decoding, or sampling when rng is given; finished rows emit pad.

    ids (B, Tp) -> (B, L <= max_length). rec: {"scores": list or None, "logits": list or None}
    collects each step's processed scores / raw logits (B, V). embeds (B, T, D) or None: what
    the first step is fed instead of ids.
    """
    B = ids.shape[0]
    unfinished = np.ones(B, bool)
    feed = ids if embeds is None else embeds
    pos, past = first_positions(mask, feed.shape[1], B), None
    while True:
        logits, out = step(feed, pos, mask, past, context)
        past = out["cache"] if isinstance(out, dict) else out
        logits = logits.astype(np.float32)  # transformers scores in float32
        scores = lp.apply(procs, ids, logits)
        _record(rec, scores, logits, out)
        if rng is None:
            tok = np.argmax(scores, axis=-1)  # ties -> lowest id, as torch.argmax
        else:
            tok = lp.sample(scores, rng)
        if eos:
            tok = np.where(unfinished, tok, pad)
        ids = np.concatenate([ids, tok[:, None]], axis=1)
        unfinished &= ~(np.isin(tok, eos) | (ids.shape[1] >= max_length) | timed_out(timer))
        if not unfinished.any():
            return ids
        feed, pos = tok[:, None], pos[:, -1:] + 1
        mask = None if mask is None else np.concatenate([mask, np.ones((B, 1), np.int64)], axis=1)


def beam_search(
    step, ids, mask, context, procs, eos, pad, cfg, rng=None, rec=None, timer=None, embeds=None
):
    """5.23's vectorised beam search (generation.md §2.8), or beam sampling when rng is given.

    ids (B, Tp) -> (ids (B * n_return, L), sequences_scores (B * n_return,), beam_indices
    (B * n_return, L - Tp): the row each generated token's beam came from, -1 past the end).

    Two stores per item, each a dict of (B, K, ...) arrays: `run` (live beams: ids, scores,
    parent rows) and `done` (the K best finished hypotheses, length-normalised, + a flag).
    """
    K, max_length, lpen, early = (
        cfg[k] for k in ("num_beams", "max_length", "length_penalty", "early_stopping")
    )
    B, Tp = ids.shape
    R = B * K
    ids = np.repeat(ids, K, axis=0)  # item-major: rows b*K .. b*K+K-1 are item b's beams
    mask = None if mask is None else np.repeat(mask, K, axis=0)
    context = take_rows(context, np.repeat(np.arange(B), K))
    C = max(2, 1 + len(eos)) * K  # candidates kept per step: enough that K never all end
    fill = (pad or eos[0]) if eos else -1  # pad 0 is falsy: BLIP's short beams get eos, not 0
    width = cfg.get("buffer_length", max_length)  # what can be generated; grown by _widen
    seqs = np.full((B, K, width), fill, np.int64)
    seqs[:, :, :Tp] = ids.reshape(B, K, Tp)
    parent = np.full((B, K, width - Tp), -1, np.int64)  # global row each new token came from
    scores = np.zeros((B, K), np.float32)
    scores[:, 1:] = NEG  # only beam 0 is live at first: K identical beams otherwise
    run = {"ids": seqs, "parent": parent, "scores": scores}
    done = {
        "ids": seqs.copy(),
        "parent": parent.copy(),
        "scores": np.full((B, K), NEG, np.float32),
        "finished": np.zeros((B, K), bool),
    }
    improvable = np.ones((B, 1), bool)
    feed = ids if embeds is None else np.repeat(embeds, K, axis=0)  # embeds: the first step's feed
    pos, past, cur = first_positions(mask, feed.shape[1], R), None, Tp
    while True:
        logits, out = step(feed, pos, mask, past, context)
        past = out["cache"] if isinstance(out, dict) else out
        logits = logits.astype(np.float32)
        logp = lp.apply(procs, run["ids"][:, :, :cur].reshape(R, cur), log_softmax(logits))
        _record(rec, logp, logits, out)
        V = logp.shape[-1]
        acc = (logp.reshape(B, K, V) + run["scores"][:, :, None]).reshape(B, K * V)  # b (k v)
        if rng is None:
            top = topk(acc, C)  # the C best continuations over all beams of an item
        else:  # beam sampling: C continuations drawn without replacement, kept in draw order
            top = np.stack([_draw(rng, _probs(a), C) for a in acc])
        top_scores, beam, tok = np.take_along_axis(acc, top, 1), top // V, top % V
        if cur == run["ids"].shape[2]:  # the buffers are full: double them (up to max_length)
            run, done = (_widen(x, min(2 * cur, max_length), fill) for x in (run, done))
        cand = select({"ids": run["ids"], "parent": run["parent"]}, beam)  # b c ...
        cand["ids"][:, :, cur] = tok
        cand["parent"][:, :, cur - Tp] = beam + np.arange(B)[:, None] * K
        hits = np.isin(tok, eos) | (cur + 1 >= max_length) | timed_out(timer)
        alive = top_scores + hits.astype(np.float32) * NEG  # the K best that did not end go on
        run = select({**cand, "scores": alive}, topk(alive, K))
        # of the top K, those that ended enter the finished store, length-normalised
        just = hits & (np.arange(C) < K)
        s = top_scores / np.float32((cur + 1 - Tp) ** lpen)  # generated length, prompt excluded
        s = s + (done["finished"].all(-1, keepdims=True) & (early is True)).astype(np.float32) * NEG
        s = s + (~improvable).astype(np.float32) * NEG + (~just).astype(np.float32) * NEG
        merged = {
            k: np.concatenate([done[k], v], 1)
            for k, v in {**cand, "scores": s, "finished": just}.items()
        }
        done = select(merged, topk(merged["scores"], K))
        past = take_rows(past, run["parent"][:, :, cur - Tp].reshape(R))  # follow the parents
        cur += 1
        improvable = still_improvable(
            improvable, run["scores"], done, cur, Tp, max_length, early, lpen
        )
        if not improvable.any() or (done["finished"].all() and early is True) or hits.all():
            break
        feed, pos = run["ids"][:, :, cur - 1].reshape(R, 1), pos[:, -1:] + 1
        mask = None if mask is None else np.concatenate([mask, np.ones((R, 1), np.int64)], axis=1)
    n = cfg["num_return_sequences"]
    out, parents = done["ids"][:, :n].reshape(B * n, -1), done["parent"][:, :n].reshape(B * n, -1)
    longest = int((parents >= 0).sum(1).max())
    return out[:, : Tp + longest], done["scores"][:, :n].reshape(B * n), parents[:, :longest]


def _widen(store, width, fill):
    """A beam store with its ids (B, K, L) and parents (B, K, L - Tp) padded to L = width."""
    grow = width - store["ids"].shape[2]
    pad = lambda a, v: np.concatenate([a, np.full(a.shape[:2] + (grow,), v, a.dtype)], 2)  # noqa: E731
    return {**store, "ids": pad(store["ids"], fill), "parent": pad(store["parent"], -1)}


def _record(rec, scores, logits, out=None):
    """Per step: processed scores, raw logits, and the decoder's self-attention probabilities
    and hidden states (embeddings + each layer) for this step's tokens, all rows (beams too)."""
    if rec is None:
        return
    if rec["scores"] is not None:
        rec["scores"].append(scores)
    if rec["logits"] is not None:
        rec["logits"].append(logits)
    if rec.get("attentions") is not None and isinstance(out, dict):
        rec["attentions"].append(tuple(out["attentions"]))
    if rec.get("hidden_states") is not None and isinstance(out, dict):
        rec["hidden_states"].append(tuple(out["hidden_states"]))


def _probs(acc_row):
    """softmax of one item's accumulated scores in float64, summing to 1 for rng.choice."""
    p = softmax(acc_row.astype(np.float64))
    return p / p.sum()


def _draw(rng, p, C):
    """C indices drawn without replacement from p, in draw order. When fewer than C have nonzero
    probability (warpers left few tokens; at the first step only beam 0 is live), those come
    first and zero-probability indices (lowest first) fill the rest: torch.multinomial fills the
    same way, in its topk's tie order, where numpy's choice raises."""
    n = np.count_nonzero(p)
    if n >= C:
        return rng.choice(p.size, C, replace=False, p=p)
    return np.concatenate([rng.choice(p.size, n, replace=False, p=p), np.flatnonzero(p == 0)])[:C]


def select(store, idx):
    """Entries idx (B, k) along axis 1 of every (B, C, ...) array of a beam store."""
    return {
        k: np.take_along_axis(v, idx.reshape(idx.shape + (1,) * (v.ndim - 2)), 1)
        for k, v in store.items()
    }


def still_improvable(flag, running_scores, done, cur, Tp, max_length, early, lpen):
    """Can an item's best running beam still beat its worst finished one? (sticky, per item)"""
    best_len = max_length - Tp if (early == "never" and lpen > 0) else cur - Tp
    best = running_scores[:, :1] / np.float32(best_len**lpen)
    worst = np.where(done["finished"], done["scores"].min(1, keepdims=True), NEG)
    return flag & (best > worst).any(-1, keepdims=True)


def topk(x, k):
    """Indices of the k largest entries per row, largest first; ties keep the lower index.

    The same as np.argsort(-x, kind="stable")[:, :k], without sorting all K * V entries: a
    partition finds the k-th largest value, and only the entries at or above it (ties included)
    are sorted. (B, n) -> (B, k)."""
    n = x.shape[-1]
    if k >= n:
        return np.argsort(-x, axis=-1, kind="stable")[:, :k]
    out = np.empty((x.shape[0], k), np.int64)
    for r, row in enumerate(x):
        if np.isnan(row).any():  # the sort puts nans last, the partition first: sort in full
            out[r] = np.argsort(-row, kind="stable")[:k]
            continue
        kth = np.partition(row, n - k)[n - k]  # the k-th largest value
        cand = np.flatnonzero(row >= kth)  # ascending indices: the stable sort keeps ties in order
        out[r] = cand[np.argsort(-row[cand], kind="stable")[:k]]
    return out


def take_rows(tree, idx):
    """Select batch rows idx from every array of a nest of dicts / lists / tuples."""
    if tree is None:
        return None
    if isinstance(tree, np.ndarray):
        return tree[idx]
    if isinstance(tree, dict):
        return {k: take_rows(v, idx) for k, v in tree.items()}
    return type(tree)(take_rows(v, idx) for v in tree)
