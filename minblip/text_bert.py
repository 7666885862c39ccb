"""The BLIP text tower: a post-LN BERT whose layers cross-attend to image features, + LM head.

Mirrors transformers' BlipTextModel (used as BLIP's text encoder and, inside BlipTextLMHeadModel,
as the caption decoder) and BlipTextLMHeadModel. Every layer owns a `crossattention` block when
the config says is_decoder (all hub configs); it runs only when image features are given.

KV cache (functional: passed in, returned, never mutated). cache = [(K, V) per layer], each
(B, H, T_past, Dh): the self-attention keys/values of the tokens seen so far. Cross-attention
keys/values depend only on the image, so `cross_kv` computes them once per generate call and the
caller passes them to every step (transformers' EncoderDecoderCache does the same).
"""

import contextlib
import math

import numpy as np

from .errors import CheckpointError, InputError
from .ops import (
    ACT2FN,
    attention,
    embedding,
    layer_norm,
    linear,
    log_softmax,
    merge_heads,
    split_heads,
)
from .trace import scope, tap


def text_embeddings(input_ids, position_ids, p, cfg, inputs_embeds=None):
    """Word + learned position embeddings, then LayerNorm. Mirrors BlipTextEmbeddings.

    Shapes: input_ids (B, T), position_ids (B|1, T) -> (B, T, Dt). No token-type embeddings.
    inputs_embeds (B, T, Dt), when given, stand in for the word embeddings of input_ids.
    Weights: word_embeddings.weight (V, Dt), position_embeddings.weight (512, Dt), LayerNorm.
    """
    if inputs_embeds is None:
        words = embedding(p["word_embeddings"]["weight"], input_ids)
    else:
        words = inputs_embeds
    x = words + embedding(p["position_embeddings"]["weight"], position_ids)
    x = tap("embeddings.LayerNorm", layer_norm(x, p["LayerNorm"], cfg.layer_norm_eps))
    return tap("embeddings", x)  # (dropout: identity at inference)


def project_kv(states, p, n_heads):
    """Keys and values of one attention block. (B, Tk, Dt|Dv) -> two (B, H, Tk, Dh)."""
    k = split_heads(linear(states, p["key"]), n_heads)  # b tk (h dh) -> b h tk dh
    v = split_heads(linear(states, p["value"]), n_heads)
    return k, v


def bert_attention(x, p, cfg, mask, past=None, kv=None):
    """Multi-head attention + post-LN output. Mirrors BlipTextAttention.

    Shapes: x (B, T, Dt); mask additive, broadcastable to (B, H, T, Tk) -> (B, T, Dt), probs
            (B, H, T, Tk), and the keys/values attended (B, H, Tk, Dh).
    Self-attention (kv None): q, k and v all come from x, and k, v go after the cached `past`
    (Tk = past + T). Cross-attention: `kv` are the image's keys/values, which depend on the
    image alone and are computed once per generate call by cross_kv (the one place where keys
    and values are not computed beside their queries).
    Weights: self.{query, key, value} {weight (Dt, Dt|Dv), bias}, output.dense, output.LayerNorm.
    """
    H = cfg.num_attention_heads
    q = split_heads(linear(x, p["self"]["query"]), H)  # b t (h dh) -> b h t dh
    if kv is None:
        kv = project_kv(x, p["self"], H)
        if past is not None:
            kv = tuple(np.concatenate([old, new], axis=2) for old, new in zip(past, kv))
    k, v = kv  # b h tk dh
    # divided by sqrt(Dh), as BERT writes it (the Q-Former multiplies by Dh^-0.5)
    context, probs = attention(q, k, v, math.sqrt(q.shape[-1]), mask, divide=True)
    context = tap("self", merge_heads(context))  # b h t dh -> b t (h dh)
    return bert_output(context, x, p["output"], cfg), probs, kv


def bert_output(h, residual, p, cfg):
    """dense, then LayerNorm(residual + .): post-LN. Mirrors BlipTextSelfOutput / BlipTextOutput."""
    out = layer_norm(linear(h, p["dense"]) + residual, p["LayerNorm"], cfg.layer_norm_eps)
    return tap("output", tap("output.LayerNorm", out))


def text_layer(x, p, cfg, mask, past, cross):
    """Self-attention, cross-attention to the image, FFN; each post-LN. Mirrors BlipTextLayer.

    Shapes: x (B, T, Dt) -> (B, T, Dt); past: the cached self-attention (K, V), each
    (B, H, past, Dh), or None; cross: the image's (K, V), each (B, H, N, Dh), or None in a
    text-only call. Returns (x, self (K, V) with this call's tokens, self probs, cross probs).
    """
    with scope("attention"):
        a, probs, kv = bert_attention(x, p["attention"], cfg, mask, past=past)
    tap("attention", a)
    cross_probs = None
    if cross is not None:
        with scope("crossattention"):
            # never masked in 5.23, even with an encoder_attention_mask (see text_model)
            a, cross_probs, _ = bert_attention(a, p["crossattention"], cfg, None, kv=cross)
        tap("crossattention", a)
    h = ACT2FN[cfg.hidden_act](linear(a, p["intermediate"]["dense"]))  # (B, T, F)
    tap("intermediate", h)
    return bert_output(h, a, p["output"], cfg), kv, probs, cross_probs


def cross_kv(encoder_hidden_states, p, cfg):
    """The image keys/values of every layer's cross-attention: computed once, reused every step.

    Shapes: encoder_hidden_states (B, N, Dv) -> [(K, V) per layer], each (B, H, N, Dh).
    """
    H = cfg.num_attention_heads
    return [
        project_kv(encoder_hidden_states, layer["crossattention"]["self"], H)
        for layer in p["encoder"]["layer"]
    ]


def self_mask(attention_mask, T, past_len, is_decoder, dtype):
    """Additive self-attention mask (B|1, 1, T, past_len + T): 0 where allowed, finfo.min elsewhere.

    Decoder: query t (absolute position past_len + t) sees keys 0 .. past_len + t that are not
    padding. Encoder: every non-padding key. attention_mask (B, past_len + T), 1 = keep, or None.
    """
    Tk = past_len + T
    allowed = np.ones((1, 1, T, Tk), bool)
    if is_decoder:
        allowed = allowed & (np.arange(Tk) <= past_len + np.arange(T)[:, None])  # causal
    if attention_mask is not None:
        allowed = allowed & (np.asarray(attention_mask)[:, None, None, :] != 0)
    elif not is_decoder:
        return None
    return np.where(allowed, 0, np.finfo(dtype).min).astype(dtype)


def text_model(
    input_ids,
    p,
    cfg,
    *,
    attention_mask=None,
    position_ids=None,
    encoder_hidden_states=None,
    encoder_attention_mask=None,
    is_decoder=False,
    cache=None,
    encoder_kv=None,
    pooler=False,
    inputs_embeds=None,
    encoder_embeds=None,
):
    """Mirrors BlipTextModel.forward (taps under the caller's scope: "bert." in the LM model).

    Shapes: input_ids (B, T) -> last_hidden_state (B, T, Dt); pooled (B, Dt) or None;
            hidden_states L+1 x (B, T, Dt); attentions / cross_attentions L x (B, H, T, Tk).
    inputs_embeds (B, T, Dt): word embeddings given instead of input_ids (positions and the
    LayerNorm still added). encoder_embeds (B, T, Dt): the whole embedding output given, as
    transformers takes it (the embeddings module is skipped; input_ids and position_ids unused).
    cache: [(K, V)] of the past tokens (decoder mode) or None; the cache returned holds them
    with this call's tokens appended. encoder_kv: cross_kv(...) precomputed, or None to compute
    it here from encoder_hidden_states.
    """
    past_len = 0 if cache is None else cache[0][0].shape[2]
    if encoder_embeds is not None:
        x = encoder_embeds
    else:
        T = (input_ids if inputs_embeds is None else inputs_embeds).shape[1]
        if position_ids is None:
            position_ids = np.arange(past_len, past_len + T)[None, :]
        check_positions(position_ids, cfg)
        x = text_embeddings(input_ids, position_ids, p["embeddings"], cfg, inputs_embeds)
    T = x.shape[1]
    smask = self_mask(attention_mask, T, past_len, is_decoder, x.dtype)
    if encoder_kv is None and encoder_hidden_states is not None:
        encoder_kv = cross_kv(encoder_hidden_states, p, cfg)
    # encoder_attention_mask is accepted and ignored, as transformers 5.23 ignores it: BlipTextLayer
    # passes it to crossattention as attention_mask, and BlipTextSelfAttention then reads its own
    # encoder_attention_mask argument (None) for cross-attention. Every memory token is attended.
    out = text_encoder(x, p["encoder"], cfg, smask, encoder_kv, cache)
    x = tap("encoder", out["last_hidden_state"])
    out["pooler_output"] = None
    if pooler:  # BertPooler: tanh(dense(first token))
        out["pooler_output"] = tap("pooler", np.tanh(linear(x[:, 0], p["pooler"]["dense"])))
    if not is_decoder:  # encoder mode keeps no cache
        out["cache"] = None
    out["encoder_kv"] = encoder_kv  # the image's keys/values, for a caller that caches them
    return out


def text_encoder(x, p, cfg, mask, encoder_kv, cache):
    """The layer stack, extending each layer's KV cache. Mirrors BlipTextEncoder.

    Shapes: x (B, T, Dt) -> last_hidden_state (B, T, Dt); hidden_states L+1 x (B, T, Dt);
    attentions / cross_attentions L x (B, H, T, Tk) (None entries without image); cache: per
    layer (K, V) of (B, H, past + T, Dh).
    """
    hidden_states, attentions, cross_attentions, new_cache = [x], [], [], []
    for i, layer in enumerate(p["layer"]):
        past = None if cache is None else cache[i]
        cross = None if encoder_kv is None else encoder_kv[i]
        with scope(f"encoder.layer.{i}"):
            x, kv, probs, cross_probs = text_layer(x, layer, cfg, mask, past, cross)
        new_cache.append(kv)  # each (B, H, past + T, Dh)
        hidden_states.append(tap(f"encoder.layer.{i}", x))
        attentions.append(probs)
        cross_attentions.append(cross_probs)
    return {
        "last_hidden_state": x,
        "hidden_states": hidden_states,
        "attentions": attentions,
        "cross_attentions": cross_attentions,
        "cache": new_cache,
    }


def check_positions(position_ids, cfg):
    """Position ids must index the learned table (torch would fail with an index error)."""
    n = cfg.max_position_embeddings
    if np.size(position_ids) and (np.max(position_ids) >= n or np.min(position_ids) < 0):
        raise InputError(
            f"text position {int(np.max(position_ids))} is outside the position table of "
            f"max_position_embeddings={n} rows: the text is too long for this model"
        )


def lm_head(h, p, word_embeddings, cfg):
    """transform (dense, act, LayerNorm), then the vocabulary. Mirrors BlipTextOnlyMLMHead.

    Shapes: h (B, T, Dt) -> logits (B, T, V).
    Weights: predictions.transform.{dense, LayerNorm}; the decoder weight (V, Dt) and bias (V,)
    are tied: "first present wins" (decoder_weights).
    """
    pp = p["predictions"]
    t = ACT2FN[cfg.hidden_act](linear(h, pp["transform"]["dense"]))
    t = layer_norm(t, pp["transform"]["LayerNorm"], cfg.layer_norm_eps)
    tap("predictions.transform", tap("predictions.transform.LayerNorm", t))
    W, b = decoder_weights(pp, word_embeddings)
    return tap("predictions", linear(t, {"weight": W, "bias": b}))


def decoder_weights(pp, word_embeddings):
    """The LM head's (weight, bias), first present wins. transformers ties decoder.weight to the
    word embeddings and decoder.bias to predictions.bias, and 5.23's save_pretrained writes only
    word_embeddings and predictions.bias; a file holding both halves of a pair with different
    values is loaded untied, and the forward then uses the decoder's own weight AND bias (checked
    on 5.23; checkpoints.md §3 says predictions.bias wins, transformers says decoder.bias)."""
    decoder = pp.get("decoder", {})
    W = decoder["weight"] if "weight" in decoder else word_embeddings
    b = decoder["bias"] if "bias" in decoder else pp["bias"]
    return W, b


def lm_loss(logits, labels, label_smoothing=0.0, reduction="mean"):
    """Next-token cross-entropy of BlipTextLMHeadModel: logits[:, :-1] against labels[:, 1:].

    Shapes: logits (B, T, V), labels (B, T) int, -100 = ignore -> scalar ("mean") or (B,) ("none":
    per-sample sum, as BLIP VQA uses). Label smoothing as torch: (1-e) * nll + e * mean_v(-logp).
    """
    V = logits.shape[-1]
    logp = log_softmax(logits[:, :-1].reshape(-1, V))
    target = np.asarray(labels)[:, 1:].reshape(-1)
    keep = target != -100
    if np.any(keep & ((target < 0) | (target >= V))):
        bad = target[keep & ((target < 0) | (target >= V))]
        raise InputError(f"labels must be -100 or token ids in [0, {V}), got {bad[0]}")
    safe = np.where(keep, target, 0)
    nll = -np.take_along_axis(logp, safe[:, None], 1)[:, 0]
    per_token = (
        (1 - label_smoothing) * nll - label_smoothing * logp.mean(-1) if label_smoothing else nll
    )
    per_token = np.where(keep, per_token, 0).astype(logits.dtype)
    if reduction == "none":
        return per_token.reshape(logits.shape[0], -1).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):  # all ignored -> 0/0 = nan, as torch
        return (per_token.sum() / keep.sum()).astype(logits.dtype)


def lm_step(p, cfg, name=None):
    """generate()'s step function for BlipTextLMHeadModel (params p): the new tokens through
    lm_forward with the cache, the image keys/values from context["encoder_kv"] (cross_kv, once
    per call). name: the decoder's module path in a bigger model ("text_decoder"), under which
    each step is recorded, as transformers' hooks see the decoder run once per token.

    Shapes: input_ids (B, T) -> next-token logits (B, V) and text_model's dict (its cache).
    """

    def step(input_ids, position_ids, attention_mask, past, context):
        with scope(name) if name else contextlib.nullcontext():
            logits, out = lm_forward(
                input_ids,
                p,
                cfg,
                last_only=True,
                attention_mask=attention_mask,
                position_ids=position_ids,
                cache=past,
                encoder_kv=context["encoder_kv"],
            )
        if name:
            tap(name, logits)
        return logits[:, -1], out  # out: the text model's dict (cache, hidden states, ...)

    return step


def check_lm_head(p, tied, where=""):
    """The tensors the LM head needs are in the file, or tied to ones that are."""
    pp = p["cls"]["predictions"]
    decoder = pp.get("decoder", {})
    if "bias" not in decoder and "bias" not in pp:
        raise CheckpointError(f"{where}cls.predictions: neither bias nor decoder.bias is stored")
    if "weight" not in decoder and not tied:
        raise CheckpointError(
            f"{where}cls.predictions.decoder.weight is missing and tie_word_embeddings is false: "
            "transformers would leave the LM head randomly initialised"
        )


def attention_shapes(D, kv_in, inner="self"):
    """{key: shape} of one BERT attention block: {inner}.{query, key, value} and output.{dense,
    LayerNorm}. kv_in: the width keys and values read (D, or the image's in cross-attention)."""
    return {
        f"{inner}.query.weight": (D, D),
        f"{inner}.query.bias": (D,),
        f"{inner}.key.weight": (D, kv_in),
        f"{inner}.key.bias": (D,),
        f"{inner}.value.weight": (D, kv_in),
        f"{inner}.value.bias": (D,),
        "output.dense.weight": (D, D),
        "output.dense.bias": (D,),
        "output.LayerNorm.weight": (D,),
        "output.LayerNorm.bias": (D,),
    }


def ffn_shapes(D, F, name_in="intermediate", name_out="output"):
    """{key: shape} of one BERT FFN: {name_in}.dense, then {name_out}.dense and LayerNorm."""
    return {
        f"{name_in}.dense.weight": (F, D),
        f"{name_in}.dense.bias": (F,),
        f"{name_out}.dense.weight": (D, F),
        f"{name_out}.dense.bias": (D,),
        f"{name_out}.LayerNorm.weight": (D,),
        f"{name_out}.LayerNorm.bias": (D,),
    }


def text_shapes(cfg, pooler=False, prefix=""):
    """{key: shape} of BlipTextModel's parameters (checkpoint names, under prefix)."""
    D, F, Dv = cfg.hidden_size, cfg.intermediate_size, cfg.encoder_hidden_size
    shapes = {
        "embeddings.word_embeddings.weight": (cfg.vocab_size, D),
        "embeddings.position_embeddings.weight": (cfg.max_position_embeddings, D),
        "embeddings.LayerNorm.weight": (D,),
        "embeddings.LayerNorm.bias": (D,),
    }
    blocks = {"attention": D, "crossattention": Dv} if cfg.is_decoder else {"attention": D}
    for i in range(cfg.num_hidden_layers):
        layer = ffn_shapes(D, F)
        for block, kv_in in blocks.items():
            layer.update({f"{block}.{k}": s for k, s in attention_shapes(D, kv_in).items()})
        shapes.update({f"encoder.layer.{i}.{k}": s for k, s in layer.items()})
    if pooler:
        shapes.update({"pooler.dense.weight": (D, D), "pooler.dense.bias": (D,)})
    return {prefix + k: s for k, s in shapes.items()}


def lm_shapes(cfg, prefix=""):
    """{key: shape} of BlipTextLMHeadModel (bert + cls), and the keys that may be absent (ties)."""
    D, V = cfg.hidden_size, cfg.vocab_size
    shapes = text_shapes(cfg, prefix=prefix + "bert.")
    head = {
        "cls.predictions.bias": (V,),
        "cls.predictions.transform.dense.weight": (D, D),
        "cls.predictions.transform.dense.bias": (D,),
        "cls.predictions.transform.LayerNorm.weight": (D,),
        "cls.predictions.transform.LayerNorm.bias": (D,),
        "cls.predictions.decoder.weight": (V, D),
        "cls.predictions.decoder.bias": (V,),
    }
    shapes.update({prefix + k: s for k, s in head.items()})
    optional = [
        prefix + "cls.predictions.decoder.weight",
        prefix + "cls.predictions.decoder.bias",
        prefix + "cls.predictions.bias",
    ]
    return shapes, optional


def lm_forward(input_ids, p, cfg, last_only=False, logits_to_keep=0, **kw):
    """Mirrors BlipTextLMHeadModel.forward without the loss: bert (decoder mode) + cls.

    Shapes: input_ids (B, T) -> logits (B, T, V), or (B, 1, V) with last_only (generate's
    logits_to_keep=1: the head sees only the last position), or the positions logits_to_keep
    selects (keep_positions); returns (logits, text_model's dict).
    """
    with scope("bert"):
        out = text_model(input_ids, p["bert"], cfg, **{"is_decoder": True, **kw})
    h = tap("bert", out["last_hidden_state"])
    word_embeddings = p["bert"]["embeddings"]["word_embeddings"]["weight"]
    with scope("cls"):
        logits = lm_head(
            keep_positions(h, 1 if last_only else logits_to_keep), p["cls"], word_embeddings, cfg
        )
    return tap("cls", logits), out


def keep_positions(h, logits_to_keep):
    """The positions the LM head projects. Mirrors transformers' slice_logits_to_keep: an int n
    keeps the last n (0: all), a 1-D index array those positions of every row, a 2-D (B, n)
    integer array n positions per row, a 2-D boolean (B, T) mask the True positions flattened.

    Shapes: h (B, T, Dt) -> (B, n, Dt), or (count, Dt) for a boolean mask.
    """
    if isinstance(logits_to_keep, (int, np.integer)):
        return h[:, -int(logits_to_keep) :] if logits_to_keep else h
    keep = np.asarray(logits_to_keep)
    if keep.ndim == 2 and keep.dtype == bool:
        return h[keep]
    if keep.ndim == 2:
        return np.take_along_axis(h, keep[..., None].astype(np.int64), axis=1)
    return h[:, keep]
