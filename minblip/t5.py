"""T5 / Flan-T5: BLIP-2's encoder-decoder language model.

Mirrors transformers 5.23.0's models/t5/modeling_t5.py (T5ForConditionalGeneration, T5EncoderModel).
Every function reads the checkpoint's own subtree `p` of T5ForConditionalGeneration (keys
"shared", "encoder", "decoder", "lm_head"), so BLIP-2 passes its `language_model` subtree as is.

What sets T5 apart from the BERT-style towers (each mirrored from 5.23, spec language_models.md §2):
* RMS LayerNorm (T5LayerNorm): no mean, no bias, pre-norm residuals `x + Sub(norm(x))`;
* no position embeddings: a learned bias per (relative-distance bucket, head), owned by block 0
  of each stack and shared by all its blocks; bidirectional in the encoder, causal in the decoder;
* attention scores are NOT divided by sqrt(Dh) (Mesh TensorFlow folded it into the init);
* cross-attention has no position bias, only the encoder padding mask.

Decoder cache (functional): cache = [(K, V) per block], each (B, H, T_past, Dh); cross_kv =
[(K, V) per block] of the encoder states, computed once per generate call (EncoderDecoderCache).
"""

import math

import numpy as np

from .config import T5Config
from .errors import ConfigError, InputError
from .generate import generate
from .modeling import PreTrainedModel, select_hidden_states
from .ops import ACT2FN, attention, embedding, linear, log_softmax, merge_heads, split_heads
from .outputs import ModelOutput
from .trace import scope, tap

# ----------------------------------------------------------------------------- building blocks


def torch_float32_sum(x):
    """Sum over the last axis in float32, in the order torch 2.13's CPU kernel adds (cascade_sum:
    8-lane vectors, 4 interleaved accumulators, a level cascade every 16+ steps, lanes last).

    Why: T5LayerNorm computes its variance in float32 even when the model runs in float64, so a
    float64 run carries float32 rounding that only the same summation order reproduces (numpy's
    pairwise order differs from torch's in the last bit for ~half the rows; measured).
    Shapes: x (..., D) float32 -> (...) float32.
    """
    D, lanes = x.shape[-1], 8
    if D < lanes:  # torch's scalar loop
        lanes = 1
    nvec = D // lanes
    vecs = x[..., : nvec * lanes].reshape(x.shape[:-1] + (nvec, lanes))  # ... (nvec l)
    n4 = nvec // 4
    acc = _cascade(vecs[..., : n4 * 4, :].reshape(x.shape[:-1] + (n4, 4, lanes)))  # ... 4 l
    head = acc[..., 0, :]
    for i in range(n4 * 4, nvec):
        head = head + vecs[..., i, :]
    for k in range(1, 4):
        head = head + acc[..., k, :]
    total = np.zeros(x.shape[:-1], np.float32)
    for k in range(nvec * lanes, D):  # the tail that fills no vector, then the lanes
        total = total + x[..., k]
    for k in range(lanes):
        total = total + head[..., k]
    return total


def _cascade(rows):
    """torch's multi_row_sum: rows (..., n, 4, L) -> (..., 4, L), 4 levels of partial sums."""
    n, levels = rows.shape[-3], 4
    power = max(4, (math.ceil(math.log2(n)) if n > 1 else 0) // levels)
    step = 1 << power
    acc = [np.zeros(rows.shape[:-3] + rows.shape[-2:], np.float32) for _ in range(levels)]
    i = 0
    while i + step <= n:
        for _ in range(step):
            acc[0] = acc[0] + rows[..., i, :, :]
            i += 1
        for j in range(1, levels):
            acc[j], acc[j - 1] = acc[j] + acc[j - 1], np.zeros_like(acc[j - 1])
            if i & ((step - 1) << (j * power)):
                break
    for i in range(i, n):
        acc[0] = acc[0] + rows[..., i, :, :]
    for j in range(1, levels):
        acc[0] = acc[0] + acc[j]
    return acc[0]


def rms_norm(x, p, eps):
    """RMS LayerNorm. Mirrors T5LayerNorm: no mean subtraction, no bias, and the variance in
    float32 whatever the compute dtype (so float64 runs keep float32 rounding here, as torch's).

    Shapes: x (B, T, D) -> (B, T, D). Weights: p["weight"] (D,).
    """
    x32 = x.astype(np.float32)
    var = torch_float32_sum(x32 * x32) / np.float32(x.shape[-1])
    return p["weight"] * (x * (np.float32(1) / np.sqrt(var + np.float32(eps)))[..., None])


def relative_position_bucket(rel, bidirectional, num_buckets, max_distance):
    """Mirrors T5Attention._relative_position_bucket: exact buckets for small distances, then
    log-spaced ones up to max_distance (every farther distance shares the last bucket). The log
    term is float32, as torch computes it (rel.float()), truncated toward zero.

    Shapes: rel (T, S) int (memory position - query position) -> (T, S) int bucket ids.
    """
    bucket = np.zeros_like(rel)
    if bidirectional:  # half of the buckets for keys after the query
        num_buckets //= 2
        bucket += (rel > 0) * num_buckets
        n = np.abs(rel)
    else:  # causal: later keys (rel > 0) all fall into bucket 0
        n = -np.minimum(rel, 0)
    max_exact = num_buckets // 2
    log_ratio = np.log(np.maximum(n, 1).astype(np.float32) / np.float32(max_exact))
    scaled = log_ratio / np.float32(math.log(max_distance / max_exact))
    large = max_exact + (scaled * np.float32(num_buckets - max_exact)).astype(np.int64)
    return bucket + np.where(n < max_exact, n, np.minimum(large, num_buckets - 1))


def position_bias(T, S, past_len, weight, bidirectional, cfg):
    """Mirrors T5Attention.compute_bias: the bias of queries past_len .. past_len+T-1 over keys
    0 .. S-1. Shapes: weight (buckets, H) -> (1, H, T, S)."""
    rel = np.arange(S)[None, :] - (np.arange(T)[:, None] + past_len)  # t s
    bucket = relative_position_bucket(
        rel, bidirectional, cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance
    )
    return embedding(weight, bucket).transpose(2, 0, 1)[None]  # t s h -> 1 h t s


def with_mask(bias, allowed, dtype):
    """The additive scores mask: the bias where a key is allowed, finfo.min where not (as 5.23's
    SDPA path builds it; never -inf, so a fully masked row stays finite).
    bias (1|B, H, T, S) or 0; allowed bool broadcastable to (B, 1, T, S) or None."""
    if allowed is None:
        return None if np.isscalar(bias) else bias
    return np.where(allowed, bias, np.finfo(dtype).min).astype(dtype)


def project_kv(states, p, H):
    """Keys and values of one T5Attention. (B, S, D) -> two (B, H, S, Dh)."""
    k = split_heads(linear(states, p["k"]), H)  # b s (h dh) -> b h s dh
    v = split_heads(linear(states, p["v"]), H)
    return k, v


def t5_attention(x, k, v, p, H, mask, output_attentions=True):
    """Mirrors T5Attention with given keys/values: q, o projections without bias, and the scores
    q k^T NOT divided by sqrt(Dh) (scale 1.0); the position bias rides in the additive mask.

    Shapes: x (B, T, D); k, v (B, H, S, Dh); mask (1|B, H|1, T, S) -> (B, T, D), probs.
    """
    q = split_heads(linear(x, p["q"]), H)  # b t (h dh) -> b h t dh
    context, probs = attention(q, k, v, 1.0, mask, return_probs=output_attentions)
    return linear(merge_heads(context), p["o"]), probs  # b h t dh -> b t (h dh)


def t5_ff(x, p, cfg):
    """Mirrors T5LayerFF: x + DenseReluDense(norm(x)); gated (T5DenseGatedActDense: act(wi_0 h)
    * wi_1 h) or not (T5DenseActDense: act(wi h)), then wo; no biases. Taps under layer.{-1}."""
    h = tap("layer_norm", rms_norm(x, p["layer_norm"], cfg.layer_norm_epsilon))
    d, act = p["DenseReluDense"], ACT2FN[cfg.dense_act_fn]  # Flan-T5 in BLIP-2: exact "gelu"
    if cfg.is_gated_act:
        h = act(linear(h, d["wi_0"])) * linear(h, d["wi_1"])  # (B, T, F)
    else:
        h = act(linear(h, d["wi"]))
    return x + tap("DenseReluDense", linear(h, d["wo"]))


def t5_block(x, p, cfg, self_mask, past=None, cross=None, cross_mask=None, probs=True):
    """Mirrors T5Block: self-attention, [cross-attention], FFN, each `x + Sub(norm(x))`.

    Shapes: x (B, T, D) -> (B, T, D); past (K, V) of earlier tokens or None; cross (K, V) of the
    encoder states (decoder) or None (encoder). Returns (x, (K, V) with this call's tokens,
    self probs, cross probs).
    """
    eps, H = cfg.layer_norm_epsilon, cfg.num_heads
    sa = p["layer"][0]
    h = tap("layer.0.layer_norm", rms_norm(x, sa["layer_norm"], eps))
    k, v = project_kv(h, sa["SelfAttention"], H)
    if past is not None:
        k, v = np.concatenate([past[0], k], axis=2), np.concatenate([past[1], v], axis=2)
    a, self_probs = t5_attention(h, k, v, sa["SelfAttention"], H, self_mask, probs)
    x = tap("layer.0", x + tap("layer.0.SelfAttention", a))
    cross_probs = None
    if cross is not None:
        ca = p["layer"][1]
        h = tap("layer.1.layer_norm", rms_norm(x, ca["layer_norm"], eps))
        a, cross_probs = t5_attention(h, *cross, ca["EncDecAttention"], H, cross_mask, probs)
        x = tap("layer.1", x + tap("layer.1.EncDecAttention", a))
    n = len(p["layer"]) - 1
    with scope(f"layer.{n}"):
        x = t5_ff(x, p["layer"][n], cfg)
    return tap(f"layer.{n}", x), (k, v), self_probs, cross_probs


# ----------------------------------------------------------------------------- stacks


def embed_tokens(input_ids, p, cfg):
    """The `shared` table (BLIP-2's get_input_embeddings). input_ids (B, T) -> (B, T, D).
    No scaling by sqrt(D), unlike the original Transformer."""
    return embedding(p["shared"]["weight"], check_ids(input_ids, cfg.vocab_size))


def stack_table(p, stack):
    """The table a stack embeds with: its own embed_tokens when the file stores one, else
    `shared` (5.23 ties them, but keeps a stored copy that differs: first present wins)."""
    own = p[stack].get("embed_tokens", {})
    return own["weight"] if "weight" in own else p["shared"]["weight"]


def t5_encoder(p, cfg, inputs_embeds, attention_mask=None, output_attentions=False):
    """Mirrors T5Stack as the encoder (taps under "encoder."): bidirectional bias from block 0.

    Shapes: inputs_embeds (B, T, D), attention_mask (B, T) 1 = keep or None ->
    last_hidden_state (B, T, D) (after final_layer_norm), hidden_states L+1 x (B, T, D) (the
    last one normed, as 5.23 ties it to last_hidden_state), attentions L x (B, H, T, T).
    """
    ep, x = p["encoder"], inputs_embeds
    T = x.shape[1]
    weight = ep["block"][0]["layer"][0]["SelfAttention"]["relative_attention_bias"]["weight"]
    allowed = None if attention_mask is None else padding(attention_mask)[:, None, None, :]
    mask = with_mask(position_bias(T, T, 0, weight, True, cfg), allowed, x.dtype)
    hidden_states, attentions = [x], []
    with scope("encoder"):
        for i, bp in enumerate(ep["block"]):
            with scope(f"block.{i}"):
                x, _, probs, _ = t5_block(x, bp, cfg, mask, probs=output_attentions)
            hidden_states.append(tap(f"block.{i}", x))
            attentions.append(probs)
        x = tap("final_layer_norm", rms_norm(x, ep["final_layer_norm"], cfg.layer_norm_epsilon))
    hidden_states[-1] = tap("encoder", x)
    return {"last_hidden_state": x, "hidden_states": hidden_states, "attentions": attentions}


def t5_cross_kv(p, cfg, encoder_hidden_states):
    """Every decoder block's cross-attention keys/values: (B, S, D) -> [(K, V)], (B, H, S, Dh)."""
    H = cfg.num_heads
    blocks = p["decoder"]["block"]
    return [project_kv(encoder_hidden_states, b["layer"][1]["EncDecAttention"], H) for b in blocks]


def t5_decoder_forward(
    p,
    cfg,
    decoder_input_ids,
    encoder_hidden_states,
    encoder_attention_mask,
    decoder_attention_mask=None,
    cache=None,
    cross_kv=None,
    decoder_inputs_embeds=None,
    output_attentions=False,
    last_only=False,
):
    """Mirrors T5Stack as the decoder (taps under "decoder.") + the LM head of
    T5ForConditionalGeneration: causal bias from block 0 (queries offset by the cache length).

    Shapes: decoder_input_ids (B, T) (or decoder_inputs_embeds (B, T, D)); encoder states
    (B, S, D) or cross_kv precomputed; masks (B, S) / (B, past+T) -> logits (B, T|1, V),
    last_hidden_state, hidden_states, attentions (B, H, T, past+T), cross_attentions, cache.
    """
    dp = p["decoder"]
    y = decoder_inputs_embeds
    if y is None:
        y = embedding(
            stack_table(p, "decoder"), check_ids(decoder_input_ids, cfg.vocab_size, "decoder")
        )
    B, T = y.shape[:2]
    past = 0 if cache is None else cache[0][0].shape[2]
    weight = dp["block"][0]["layer"][0]["SelfAttention"]["relative_attention_bias"]["weight"]
    allowed = np.arange(past + T)[None, :] <= past + np.arange(T)[:, None]  # causal: t s
    if decoder_attention_mask is not None:
        allowed = allowed & padding(decoder_attention_mask)[:, None, None, :]
    self_mask = with_mask(position_bias(T, past + T, past, weight, False, cfg), allowed, y.dtype)
    if cross_kv is None:
        cross_kv = t5_cross_kv(p, cfg, encoder_hidden_states)
    enc_allowed = None
    if encoder_attention_mask is not None:
        enc_allowed = padding(encoder_attention_mask)[:, None, None, :]
    cross_mask = with_mask(0, enc_allowed, y.dtype)  # no position bias across the two stacks
    out = {"hidden_states": [y], "attentions": [], "cross_attentions": [], "cache": []}
    with scope("decoder"):
        for i, bp in enumerate(dp["block"]):
            past_i = None if cache is None else cache[i]
            with scope(f"block.{i}"):
                y, kv, probs, cprobs = t5_block(
                    y, bp, cfg, self_mask, past_i, cross_kv[i], cross_mask, output_attentions
                )
            out["hidden_states"].append(tap(f"block.{i}", y))
            out["cache"].append(kv)
            out["attentions"].append(probs)
            out["cross_attentions"].append(cprobs)
        y = tap("final_layer_norm", rms_norm(y, dp["final_layer_norm"], cfg.layer_norm_epsilon))
    out["hidden_states"][-1] = out["last_hidden_state"] = tap("decoder", y)
    out["logits"] = lm_head(y[:, -1:] if last_only else y, p, cfg)
    return out


def lm_head(h, p, cfg):
    """Mirrors T5ForConditionalGeneration's head: with scale_decoder_outputs (original T5, whose
    config leaves tie_word_embeddings true) h is first scaled by d_model**-0.5; v1.1 / Flan-T5
    (tie_word_embeddings false) are not. The weight is lm_head.weight when the file stores it,
    else `shared` (5.23 always ties, but never over a stored lm_head that differs).
    Shapes: h (B, T, D) -> (B, T, V)."""
    if cfg.scale_decoder_outputs:
        h = h * np.asarray(cfg.d_model**-0.5, h.dtype)
    own = p.get("lm_head", {})
    return linear(h, own if "weight" in own else {"weight": p["shared"]["weight"]})


def padding(mask):
    """A (B, S) 1/0 mask as bool keep flags."""
    return np.asarray(mask) != 0


def check_ids(ids, vocab_size, what="input"):
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu" or ids.ndim != 2:
        raise InputError(f"{what} ids must be a 2-D integer array (batch, tokens), got {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise InputError(
            f"{what} ids hold values outside the vocabulary [0, {vocab_size}): "
            f"{ids.min()}..{ids.max()}"
        )
    return ids.astype(np.int64)


def shift_right(labels, cfg):
    """Mirrors T5PreTrainedModel._shift_right: decoder_start_token_id, then labels[:, :-1], with
    -100 replaced by pad_token_id. (B, T) -> (B, T)."""
    start = start_token(cfg)
    if cfg.pad_token_id is None:
        raise ConfigError("pad_token_id has to be defined to shift labels right")
    out = np.empty_like(labels)
    out[:, 0], out[:, 1:] = start, labels[:, :-1]
    return np.where(out == -100, cfg.pad_token_id, out)


def start_token(cfg):
    """decoder_start_token_id, else bos_token_id (5.23's fallback in generate)."""
    start = cfg.decoder_start_token_id
    start = cfg.bos_token_id if start is None else start
    if start is None:
        raise ConfigError("decoder_start_token_id or bos_token_id has to be defined for T5")
    return start


def cross_entropy(logits, labels):
    """CrossEntropyLoss(ignore_index=-100), mean over kept tokens. (B, T, V), (B, T) -> ()."""
    V = logits.shape[-1]
    logp, target = log_softmax(logits.reshape(-1, V)), labels.reshape(-1)
    keep = target != -100
    if np.any(keep & ((target < 0) | (target >= V))):
        raise InputError(f"labels must be -100 or token ids in [0, {V})")
    nll = -np.take_along_axis(logp, np.where(keep, target, 0)[:, None], 1)[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):  # all ignored: nan, as torch
        return (np.where(keep, nll, 0).sum() / keep.sum()).astype(logits.dtype)


# ----------------------------------------------------------------------------- generate


def t5_generate(p, cfg, inputs_embeds=None, input_ids=None, attention_mask=None, **generate_kwargs):
    """Mirrors T5ForConditionalGeneration.generate: the encoder once, then the decoder from
    decoder_start_token_id; returns the decoder ids (B * n, L) starting with it (or generate's
    ModelOutput with return_dict_in_generate). Lengths (max_length, max_new_tokens, min_length)
    count decoder tokens, the start token included, as 5.23 counts them for encoder-decoders.
    eos_token_id / pad_token_id / decoder_start_token_id override the config's.
    output_attentions / output_hidden_states (with return_dict_in_generate) give 5.23's
    GenerateEncoderDecoderOutput fields: encoder_attentions L x (B, H, S, S) and
    encoder_hidden_states L+1 x (B, S, D) once (not copied per beam, as 5.23 leaves them), and
    per step decoder_attentions L x (R, H, 1, t), cross_attentions L x (R, H, 1, S) and
    decoder_hidden_states L+1 x (R, 1, D), R = every decoded row (beams included).
    """
    eos = generate_kwargs.pop("eos_token_id", cfg.eos_token_id)
    pad = generate_kwargs.pop("pad_token_id", cfg.pad_token_id)
    first = generate_kwargs.pop("decoder_start_token_id", None)
    first = start_token(cfg) if first is None else first
    want_a = bool(generate_kwargs.get("output_attentions"))
    if (input_ids is None) == (inputs_embeds is None):
        raise InputError("T5 generate: pass exactly one of input_ids and inputs_embeds")
    if inputs_embeds is None:
        # no mask inferred from pad ids: 5.23 infers one for decoder-only models only, so an
        # encoder input holding pad tokens without attention_mask is attended in full
        inputs_embeds = stack_table(p, "encoder")[check_ids(input_ids, cfg.vocab_size)]
    encoded = t5_encoder(p, cfg, inputs_embeds, attention_mask, want_a)
    enc = encoded["last_hidden_state"]
    B = enc.shape[0]
    context = {"kv": t5_cross_kv(p, cfg, enc), "mask": None}
    if attention_mask is not None:
        context["mask"] = np.asarray(attention_mask, np.int64)

    cross_steps = []  # the cross-attention probabilities of each step (generate keeps the rest)

    def step(ids, positions, mask, cache, ctx):  # T5 has no positions: the cache gives past
        out = t5_decoder_forward(
            p, cfg, ids, None, ctx["mask"], cache=cache, cross_kv=ctx["kv"], last_only=True,
            output_attentions=want_a,
        )  # fmt: skip
        if want_a:
            cross_steps.append(tuple(out["cross_attentions"]))
        return out["logits"][:, -1], out

    result = generate(
        step,
        np.full((B, 1), first, np.int64),
        eos_token_id=eos,
        pad_token_id=pad,
        # the start token is T5's pad id, yet no padding: an explicit all-ones mask stops generate
        # from inferring one from pad (transformers infers masks for the encoder input only)
        attention_mask=np.ones((B, 1), np.int64),
        context=context,
        **generate_kwargs,
    )
    if not isinstance(result, ModelOutput):
        return result
    return encoder_decoder_output(result, encoded, cross_steps, generate_kwargs)


def encoder_decoder_output(result, encoded, cross_steps, generate_kwargs):
    """generate's decoder-only ModelOutput as 5.23's GenerateEncoderDecoderOutput (or its beam
    twin): attentions -> decoder_attentions, hidden_states -> decoder_hidden_states, with the
    encoder's attentions and hidden states and the per-step cross_attentions, in its field order."""
    want_a = bool(generate_kwargs.get("output_attentions"))
    want_h = bool(generate_kwargs.get("output_hidden_states"))
    kept = [k for k in result._names if k not in ("attentions", "hidden_states")]
    fields = {k: result.get(k) for k in kept}
    fields.update(
        encoder_attentions=tuple(encoded["attentions"]) if want_a else None,
        encoder_hidden_states=tuple(encoded["hidden_states"]) if want_h else None,
        decoder_attentions=result.get("attentions"),
        cross_attentions=tuple(cross_steps) if want_a else None,
        decoder_hidden_states=result.get("hidden_states"),
    )
    return ModelOutput(**fields)


# ----------------------------------------------------------------------------- checkpoint keys


def t5_shapes(cfg, encoder_only=False):
    """{key: shape} of T5ForConditionalGeneration's checkpoint (or T5EncoderModel's)."""
    D, F, V, inner = cfg.d_model, cfg.d_ff, cfg.vocab_size, cfg.num_heads * cfg.d_kv
    attn = {f"{m}.weight": (inner, D) for m in "qkv"} | {"o.weight": (D, inner)}
    if cfg.is_gated_act:
        ff = {"wi_0.weight": (F, D), "wi_1.weight": (F, D), "wo.weight": (D, F)}
    else:
        ff = {"wi.weight": (F, D), "wo.weight": (D, F)}
    shapes = {"shared.weight": (V, D)}
    stacks = [("encoder", cfg.num_layers)] + ([] if encoder_only else [("decoder", None)])
    for stack, n in stacks:
        n = cfg.num_decoder_layers if stack == "decoder" else n
        shapes[f"{stack}.embed_tokens.weight"] = (V, D)
        shapes[f"{stack}.final_layer_norm.weight"] = (D,)
        bias = f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
        shapes[bias] = (cfg.relative_attention_num_buckets, cfg.num_heads)
        for i in range(n):
            sub = [("SelfAttention", attn)] + ([("EncDecAttention", attn)] * (stack == "decoder"))
            for j, (name, part) in enumerate(sub + [("DenseReluDense", ff)]):
                pre = f"{stack}.block.{i}.layer.{j}"
                shapes[f"{pre}.layer_norm.weight"] = (D,)
                shapes.update({f"{pre}.{name}.{k}": s for k, s in part.items()})
    if not encoder_only:
        shapes["lm_head.weight"] = (V, D)
        ignored = "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"
        shapes[ignored] = (cfg.relative_attention_num_buckets, cfg.num_heads)
    return shapes


def t5_optional_keys(cfg):
    """Tied copies save_pretrained leaves out (5.23 writes `shared` only, and lm_head only when
    it differs), plus the cross-attention bias old checkpoints carry, which 5.23 ignores on load
    (_keys_to_ignore_on_load_unexpected) and so does minblip."""
    return (
        "encoder.embed_tokens.weight",
        "decoder.embed_tokens.weight",
        "lm_head.weight",
        "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",
    )


# ----------------------------------------------------------------------------- model classes


def _flag(value, default):
    return default if value is None else value


def _encoder_inputs(model, input_ids, inputs_embeds, attention_mask):
    """(inputs_embeds, attention_mask) checked: exactly one of ids / embeddings, as T5Stack."""
    cfg = model.config
    if (input_ids is None) == (inputs_embeds is None):
        raise InputError("You must specify exactly one of input_ids or inputs_embeds")
    if inputs_embeds is None:
        x = stack_table(model.params, "encoder")[check_ids(input_ids, cfg.vocab_size)]
    else:
        x = np.asarray(inputs_embeds)
        if x.ndim != 3 or x.shape[-1] != cfg.d_model or x.dtype.kind != "f":
            raise InputError(
                f"inputs_embeds must be a float (batch, tokens, {cfg.d_model}) array, "
                f"got {x.dtype} {x.shape}"
            )
        x = x.astype(model.dtype, copy=False)
    if attention_mask is not None and np.shape(attention_mask) != x.shape[:2]:
        raise InputError(
            f"attention_mask has shape {np.shape(attention_mask)}, the input has {x.shape[:2]}"
        )
    return x, attention_mask


class T5EncoderModel(PreTrainedModel):
    """transformers.T5EncoderModel: ids or embeddings (B, T) -> encoder states (B, T, D).
    Loads a T5EncoderModel checkpoint or the encoder of a T5ForConditionalGeneration one."""

    config_types = (T5Config,)

    @classmethod
    def expected_shapes(cls, config):
        return t5_shapes(config, encoder_only=True)

    @classmethod
    def optional_keys(cls, config):
        return ("encoder.embed_tokens.weight",)

    @classmethod
    def select_weights(cls, flat):
        # 5.23 ignores a full model's decoder on load (_keys_to_ignore_on_load_unexpected), and
        # its lm_head (an unexpected key, only warned about)
        return {k: v for k, v in flat.items() if not k.startswith(("decoder.", "lm_head."))}

    def __call__(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=True,
    ):
        x, mask = _encoder_inputs(self, input_ids, inputs_embeds, attention_mask)
        want_a = _flag(output_attentions, self.config.output_attentions)
        want_h = _flag(output_hidden_states, self.config.output_hidden_states)
        enc = t5_encoder(self.params, self.config, x, mask, want_a)
        out = ModelOutput(
            last_hidden_state=enc["last_hidden_state"],
            hidden_states=select_hidden_states(enc["hidden_states"], want_h),
            attentions=tuple(enc["attentions"]) if want_a else None,
        )
        return out if return_dict else out.to_tuple()

    forward = __call__


def _decoder_inputs(cfg, labels, decoder_input_ids, decoder_inputs_embeds):
    """(labels as int64 or None, decoder_input_ids): labels checked against the vocabulary, and
    with labels but no decoder inputs the decoder reads shift_right(labels), as transformers."""
    if labels is not None:
        labels = np.asarray(labels, np.int64)
        if np.any((labels != -100) & ((labels < 0) | (labels >= cfg.vocab_size))):
            raise InputError(f"labels must be -100 or token ids in [0, {cfg.vocab_size})")
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = shift_right(labels, cfg)
    if (decoder_input_ids is None) == (decoder_inputs_embeds is None):
        raise InputError("You must specify exactly one of decoder_input_ids or inputs_embeds")
    return labels, decoder_input_ids


def _seq2seq_output(enc, dec, labels, cross, keep, want_a, want_h):
    """T5ForConditionalGeneration.forward's Seq2SeqLMOutput fields, from the encoder's and the
    decoder's outputs; past_key_values only with use_cache (keep)."""
    logits = dec["logits"]
    return ModelOutput(
        loss=None if labels is None else cross_entropy(logits, labels),
        logits=logits,
        past_key_values={"self_attention": dec["cache"], "cross_attention": cross}
        if keep
        else None,
        decoder_hidden_states=select_hidden_states(dec["hidden_states"], want_h),
        decoder_attentions=tuple(dec["attentions"]) if want_a else None,
        cross_attentions=tuple(dec["cross_attentions"]) if want_a else None,
        encoder_last_hidden_state=enc["last_hidden_state"],
        encoder_hidden_states=select_hidden_states(enc["hidden_states"], want_h),
        encoder_attentions=tuple(enc["attentions"]) if want_a else None,
    )


class T5ForConditionalGeneration(PreTrainedModel):
    """transformers.T5ForConditionalGeneration: encoder, decoder with cross-attention, LM head.

    Computes in float32 (or float64): fp16 / bf16 checkpoints are widened on load. T5 is known
    to overflow in float16 (activations beyond 65504 in the FFN; transformers clamps them), so
    minblip never computes in it.
    """

    config_types = (T5Config,)

    expected_shapes = staticmethod(t5_shapes)
    optional_keys = staticmethod(t5_optional_keys)

    def __call__(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        past_key_values=None,
        inputs_embeds=None,
        decoder_inputs_embeds=None,
        labels=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=True,
    ):
        """Mirrors T5ForConditionalGeneration.forward. With labels and no decoder inputs, the
        decoder reads shift_right(labels). past_key_values: the dict this call returns
        ({"self_attention": [(K, V)], "cross_attention": [(K, V)]}) to continue from."""
        cfg = self.config
        want_a = _flag(output_attentions, cfg.output_attentions)
        want_h = _flag(output_hidden_states, cfg.output_hidden_states)
        enc = self._encode(input_ids, attention_mask, inputs_embeds, encoder_outputs, want_a)
        labels, decoder_input_ids = _decoder_inputs(
            cfg, labels, decoder_input_ids, decoder_inputs_embeds
        )
        cache, cross = None, None
        if past_key_values is not None:
            cache, cross = past_key_values["self_attention"], past_key_values["cross_attention"]
        dec = t5_decoder_forward(
            self.params,
            cfg,
            decoder_input_ids,
            enc["last_hidden_state"],
            attention_mask,
            decoder_attention_mask,
            cache=cache,
            cross_kv=cross,
            decoder_inputs_embeds=decoder_inputs_embeds,
            output_attentions=want_a,
        )
        keep = _flag(use_cache, cfg.use_cache)
        if cross is None and keep:
            cross = t5_cross_kv(self.params, cfg, enc["last_hidden_state"])
        out = _seq2seq_output(enc, dec, labels, cross, keep, want_a, want_h)
        return out if return_dict else out.to_tuple()

    forward = __call__

    def _encode(self, input_ids, attention_mask, inputs_embeds, encoder_outputs, want_a):
        if encoder_outputs is None:
            x, mask = _encoder_inputs(self, input_ids, inputs_embeds, attention_mask)
            return t5_encoder(self.params, self.config, x, mask, want_a)
        if isinstance(encoder_outputs, dict):
            last = encoder_outputs["last_hidden_state"]
            hidden, attn = encoder_outputs.get("hidden_states"), encoder_outputs.get("attentions")
        else:
            last = encoder_outputs[0]
            hidden = encoder_outputs[1] if len(encoder_outputs) > 1 else None
            attn = encoder_outputs[2] if len(encoder_outputs) > 2 else None
        last = np.asarray(last)
        if last.ndim != 3 or last.shape[-1] != self.config.d_model:
            raise InputError(
                f"encoder_outputs' last_hidden_state must be (batch, tokens, "
                f"{self.config.d_model}), got {last.shape}"
            )
        return {"last_hidden_state": last, "hidden_states": hidden or [], "attentions": attn}

    def generate(self, input_ids=None, attention_mask=None, inputs_embeds=None, **kwargs):
        """Mirrors GenerationMixin.generate for T5: decoder ids (B * n, L) from the start token.
        Settings as minblip.generate.generate; decoder_input_ids / encoder_outputs not taken."""
        if inputs_embeds is not None:
            inputs_embeds, attention_mask = _encoder_inputs(
                self, None, inputs_embeds, attention_mask
            )
        elif input_ids is not None:
            _encoder_inputs(self, input_ids, None, attention_mask)  # checks only
        return t5_generate(
            self.params, self.config, inputs_embeds, input_ids, attention_mask, **kwargs
        )
