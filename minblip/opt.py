"""OPT, BLIP-2's decoder-only language model: transformers 5.23's models/opt/modeling_opt.py.

Functions take the OPTForCausalLM subtree `p` (keys "model.decoder.*", optionally "lm_head.*")
and an OPTConfig; inside BLIP-2 that is the checkpoint's `language_model` subtree, and the caller
wraps them in scope("language_model") so the taps line up with transformers' module paths.

    embeddings  word rows (or inputs_embeds) -> project_in (when word_embed_proj_dim != D)
                + learned positions (row = position + 2: OPT's offset)
    layers      pre-LN (do_layer_norm_before, every OPT but 350m) or post-LN
    head        final_layer_norm (pre-LN only) -> project_out -> lm_head (tied by default)

KV cache (functional: passed in, returned, never mutated): [(K, V) per layer], each
(B, H, T_past, Dh), the keys/values of every token seen so far.
"""

import numpy as np

from .config import OPTConfig
from .errors import CheckpointError, InputError
from .generate import generate
from .modeling import PreTrainedModel, select_hidden_states
from .ops import (
    ACT2FN,
    attention,
    compute_dtype_of,
    embedding,
    layer_norm,
    linear,
    merge_heads,
    split_heads,
)
from .outputs import ModelOutput
from .text_bert import lm_loss
from .trace import scope, tap

EPS = 1e-5  # OPT builds nn.LayerNorm without eps: torch's default (the config has no eps)
OFFSET = 2  # OPTLearnedPositionalEmbedding: row = position + 2 (fairseq's padding_idx legacy)


def opt_norm(x, owner, name, cfg):
    """owner[name] as nn.LayerNorm(D, elementwise_affine=cfg.layer_norm_elementwise_affine).
    Without the affine step no weight or bias is stored: weight 1, bias 0 (exact) stand in."""
    if cfg.layer_norm_elementwise_affine:
        return layer_norm(x, owner[name], EPS)
    D = x.shape[-1]
    return layer_norm(x, {"weight": np.ones(D, x.dtype), "bias": np.zeros(D, x.dtype)}, EPS)


def embed_tokens(input_ids, p, cfg):
    """Word embeddings of token ids. Mirrors OPTDecoder.embed_tokens (no scaling).

    Shapes: input_ids (B, T) -> (B, T, Dw), Dw = word_embed_proj_dim (= Dl unless projected).
    Weights: p["model"]["decoder"]["embed_tokens"]["weight"] (V, Dw).
    """
    ids = np.asarray(input_ids)
    if ids.dtype.kind not in "iu" or ids.ndim != 2:
        raise InputError(f"input_ids must be a 2-D integer array, got {ids.dtype} {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= cfg.vocab_size):
        raise InputError(
            f"input_ids hold ids outside the vocabulary [0, {cfg.vocab_size}): "
            f"{ids.min()}..{ids.max()}"
        )
    return embedding(p["model"]["decoder"]["embed_tokens"]["weight"], ids)


def mask_positions(attention_mask, past_len, B, T):
    """Position ids when none are given: cumsum(mask) * mask - 1, the new tokens' part.

    Shapes: attention_mask (B, past_len + T) or None (all ones) -> (B, T). Padding gets -1
    (table row 1), the first real token 0, so left padding does not shift positions."""
    m = np.ones((B, past_len + T), np.int64) if attention_mask is None else attention_mask
    m = np.asarray(m, np.int64)
    return (np.cumsum(m, axis=1) * m - 1)[:, past_len:]


def embed_positions(position_ids, p, cfg):
    """Learned positions. Mirrors OPTLearnedPositionalEmbedding.

    Shapes: position_ids (B, T) -> (B, T, Dl). Weights: weight (max_position_embeddings + 2, Dl).
    """
    n = cfg.max_position_embeddings
    pos = np.asarray(position_ids)
    if pos.size and (pos.max() >= n or pos.min() < -OFFSET):
        raise InputError(
            f"position {int(pos.max())} is outside OPT's position table (max_position_embeddings="
            f"{n}): the sequence is longer than the model allows"
        )
    return embedding(p["weight"], pos + OFFSET)


def causal_mask(attention_mask, T, past_len, dtype):
    """Additive mask (B|1, 1, T, past_len + T): 0 where query t (absolute position past_len + t)
    may see key s (s <= past_len + t and not padding), finfo.min elsewhere (not -inf: a row with
    every key masked -- a left pad's own query -- stays finite, uniform, as transformers' eager)."""
    S = past_len + T
    allowed = (np.arange(S) <= past_len + np.arange(T)[:, None])[None, None]  # causal
    if attention_mask is not None:
        allowed = allowed & (np.asarray(attention_mask)[:, None, None, :] != 0)  # key padding
    return np.where(allowed, 0, np.finfo(dtype).min).astype(dtype)


def opt_attention(x, p, cfg, mask, past, output_attentions):
    """Causal self-attention with a KV cache. Mirrors OPTAttention (eager_attention_forward).

    Shapes: x (B, T, Dl); past (K, V) of (B, H, T_past, Dh) or None; mask (B|1, 1, T, S)
            -> out (B, T, Dl), probs (B, H, T, S) or None, (K, V) of (B, H, S, Dh).
    Weights: q_proj, k_proj, v_proj, out_proj {weight (Dl, Dl), bias (Dl,) unless enable_bias
    is false}.
    """
    H = cfg.num_attention_heads
    scaling = np.asarray((cfg.hidden_size // H) ** -0.5, x.dtype)
    # q is scaled BEFORE q @ k^T and the scores are not scaled again (OPTAttention passes
    # scaling=1.0): Dh = 80 is no power of two, so the order changes the scores' last bits
    q = split_heads(linear(x, p["q_proj"]) * scaling, H)  # b t (h dh) -> b h t dh
    k = split_heads(linear(x, p["k_proj"]), H)
    v = split_heads(linear(x, p["v_proj"]), H)
    if past is not None:
        k = np.concatenate([past[0], k], axis=2)  # b h (past + t) dh
        v = np.concatenate([past[1], v], axis=2)
    context, probs = attention(q, k, v, 1.0, mask, return_probs=output_attentions)
    out = linear(merge_heads(context), p["out_proj"])  # b h t dh -> b t (h dh) -> b t d
    return out, probs, (k, v)


def opt_layer(x, p, cfg, mask, past, output_attentions):
    """Self-attention and FFN, each with a residual. Mirrors OPTDecoderLayer.

    Pre-LN (do_layer_norm_before): x + attn(LN(x)), then x + fc2(act(fc1(LN(x)))). Post-LN
    (opt-350m): LN(x + attn(x)), then LN(x + fc2(act(fc1(x)))).
    Shapes: x (B, T, Dl) -> (B, T, Dl). Weights: self_attn, self_attn_layer_norm, fc1 (F, Dl),
    fc2 (Dl, F), final_layer_norm (the layer's FFN norm, not the decoder's).
    """
    pre = cfg.do_layer_norm_before
    h = tap("self_attn_layer_norm", opt_norm(x, p, "self_attn_layer_norm", cfg)) if pre else x
    with scope("self_attn"):
        h, probs, kv = opt_attention(h, p["self_attn"], cfg, mask, past, output_attentions)
    x = x + tap("self_attn", h)
    if not pre:
        x = tap("self_attn_layer_norm", opt_norm(x, p, "self_attn_layer_norm", cfg))
    h = x
    if pre:  # transformers flattens to (B*T, Dl) before the FFN: its recorded norm has that shape
        h = opt_norm(x, p, "final_layer_norm", cfg)
        tap("final_layer_norm", h.reshape(-1, h.shape[-1]))  # b t d -> (b t) d
    h = linear(ACT2FN[cfg.activation_function](linear(h, p["fc1"])), p["fc2"])  # (B, T, F) inside
    x = x + h
    if not pre:
        x = tap("final_layer_norm", opt_norm(x, p, "final_layer_norm", cfg))
    return x, probs, kv


def opt_forward(
    p,
    cfg,
    inputs_embeds,
    attention_mask=None,
    position_ids=None,
    cache=None,
    output_attentions=False,
    last_only=False,
):
    """Mirrors OPTForCausalLM.forward without the loss (taps under "model.decoder.*").

    Shapes: inputs_embeds (B, T, Dw) -> logits (B, T, V) ((B, 1, V) with last_only: generate's
    logits_to_keep=1); last_hidden_state (B, T, Dw); hidden_states L+1 x (B, T, Dl) whose last
    entry is last_hidden_state (after final_layer_norm / project_out, as 5.23 returns it);
    attentions L x (B, H, T, S) or None; cache [(K, V)] of (B, H, S, Dh), S = past + T.
    attention_mask (B, S), 1 = keep, or None; position_ids (B, T) or None (from the mask).
    """
    d = p["model"]["decoder"]
    x, (B, T) = check_embeds(inputs_embeds, cfg, d), np.shape(inputs_embeds)[:2]
    past_len = 0 if cache is None else cache[0][0].shape[2]
    if position_ids is None:
        position_ids = mask_positions(attention_mask, past_len, B, T)
    if cfg.word_embed_proj_dim != cfg.hidden_size:
        x = linear(x, d["project_in"])  # (B, T, Dw) -> (B, T, Dl)
    x = x + embed_positions(position_ids, d["embed_positions"], cfg)  # dropout: identity
    mask = causal_mask(attention_mask, T, past_len, x.dtype)
    hidden, attentions, new_cache = [x], [], []
    for i, lp in enumerate(d["layers"]):
        with scope(f"model.decoder.layers.{i}"):
            past = None if cache is None else cache[i]
            x, probs, kv = opt_layer(x, lp, cfg, mask, past, output_attentions)
        hidden.append(tap(f"model.decoder.layers.{i}", x))
        attentions.append(probs)
        new_cache.append(kv)
    if cfg.do_layer_norm_before and not cfg._remove_final_layer_norm:
        x = tap("model.decoder.final_layer_norm", opt_norm(x, d, "final_layer_norm", cfg))
    if cfg.word_embed_proj_dim != cfg.hidden_size:
        x = linear(x, d["project_out"])  # (B, T, Dl) -> (B, T, Dw)
    x = tap("model", tap("model.decoder", x))
    hidden[-1] = x  # 5.23's capture_outputs replaces the last layer's output by last_hidden_state
    logits = lm_head(x[:, -1:] if last_only else x, p)
    return {
        "logits": logits,
        "last_hidden_state": x,
        "hidden_states": hidden,
        "attentions": attentions if output_attentions else None,
        "cache": new_cache,
    }


def lm_head(h, p):
    """Vocabulary logits, no bias. lm_head.weight when the file stores it, else the tied
    embed_tokens.weight (save_pretrained keeps only the latter; a file holding both, different,
    is loaded untied by 5.23: checked). (B, T, Dw) -> (B, T, V)."""
    if "lm_head" in p:
        return linear(h, p["lm_head"])
    return linear(h, {"weight": p["model"]["decoder"]["embed_tokens"]["weight"]})  # tied


def check_embeds(inputs_embeds, cfg, d):
    """inputs_embeds as a (B, T, Dw) array in the model's dtype."""
    dtype = compute_dtype_of(d["embed_tokens"]["weight"])
    x = np.asarray(inputs_embeds)
    if x.ndim != 3 or x.shape[2] != cfg.word_embed_proj_dim or x.dtype.kind != "f":
        raise InputError(
            f"inputs_embeds must be a float array (batch, tokens, {cfg.word_embed_proj_dim}) "
            f"(word_embed_proj_dim), got {x.dtype} {x.shape}"
        )
    return x.astype(dtype, copy=False)


def opt_shapes(cfg):
    """{key: shape} of OPTForCausalLM's checkpoint (lm_head.weight optional when tied: see
    opt_optional_keys)."""
    D, F, V, Dw = cfg.hidden_size, cfg.ffn_dim, cfg.vocab_size, cfg.word_embed_proj_dim
    bias, affine = cfg.enable_bias, cfg.layer_norm_elementwise_affine
    pre = "model.decoder."
    shapes = {
        pre + "embed_tokens.weight": (V, Dw),
        pre + "embed_positions.weight": (cfg.max_position_embeddings + OFFSET, D),
        "lm_head.weight": (V, Dw),
    }
    if Dw != D:
        shapes.update({pre + "project_in.weight": (D, Dw), pre + "project_out.weight": (Dw, D)})
    norms = ["self_attn_layer_norm", "final_layer_norm"] if affine else []
    if affine and cfg.do_layer_norm_before and not cfg._remove_final_layer_norm:
        shapes.update({pre + "final_layer_norm.weight": (D,), pre + "final_layer_norm.bias": (D,)})
    for i in range(cfg.num_hidden_layers):
        linears = {f"self_attn.{n}": (D, D) for n in ("q_proj", "k_proj", "v_proj", "out_proj")}
        linears.update({"fc1": (F, D), "fc2": (D, F)})
        layer = {f"{n}.weight": s for n, s in linears.items()}
        layer.update({f"{n}.bias": (s[0],) for n, s in linears.items() if bias})
        layer.update({f"{n}.{w}": (D,) for n in norms for w in ("weight", "bias")})
        shapes.update({f"{pre}layers.{i}.{k}": s for k, s in layer.items()})
    return shapes


def opt_optional_keys(cfg):
    """Keys that may be absent: lm_head.weight when tied to embed_tokens.weight."""
    return ["lm_head.weight"] if cfg.tie_word_embeddings else []


def opt_generate(p, cfg, input_ids=None, inputs_embeds=None, attention_mask=None, **kwargs):
    """OPTForCausalLM.generate. With input_ids (and optionally inputs_embeds of the same length,
    which then feed the first step instead of the ids' embeddings): prompt ids + new ids. With
    inputs_embeds alone: only the new ids (5.23 starts from an empty (B, 0) id array). Neither:
    a bos prompt. eos / pad default to the config's; positions follow the mask's cumsum, so left
    padding works. kwargs: minblip.generate.generate's."""
    eos = kwargs.pop("eos_token_id", None)
    pad = kwargs.pop("pad_token_id", None)
    if input_ids is None:
        B = 1 if inputs_embeds is None else np.shape(inputs_embeds)[0]
        input_ids = np.full((B, 1 if inputs_embeds is None else 0), cfg.bos_token_id, np.int64)
    ids = np.asarray(input_ids)
    embeds = None
    if inputs_embeds is not None:
        embeds = check_embeds(inputs_embeds, cfg, p["model"]["decoder"])
        if ids.shape[1] not in (0, embeds.shape[1]) or ids.shape[0] != embeds.shape[0]:
            raise InputError(
                f"input_ids {ids.shape} and inputs_embeds {embeds.shape[:2]} must give the same "
                "batch and tokens (or pass inputs_embeds alone)"
            )
    T0 = ids.shape[1] if embeds is None else embeds.shape[1]
    if attention_mask is not None and np.shape(attention_mask) != (ids.shape[0], T0):
        raise InputError(
            f"attention_mask has shape {np.shape(attention_mask)}, the prompt {(ids.shape[0], T0)}"
        )
    embed_tokens(ids, p, cfg)  # checks the ids
    want_attn = bool(kwargs.get("output_attentions"))

    def step(feed, position_ids, attention_mask, past, context):
        x = feed if feed.ndim == 3 else embed_tokens(feed, p, cfg)
        out = opt_forward(p, cfg, x, attention_mask, position_ids, past, want_attn, last_only=True)
        return out["logits"][:, -1], out

    return generate(
        step,
        ids,
        inputs_embeds=embeds,
        attention_mask=attention_mask,
        eos_token_id=cfg.eos_token_id if eos is None else eos,
        pad_token_id=cfg.pad_token_id if pad is None else pad,
        max_position_embeddings=cfg.max_position_embeddings,
        **kwargs,
    )


def _embedded_inputs(p, cfg, input_ids, inputs_embeds, attention_mask, past):
    """OPTForCausalLM's input: the token embeddings (B, T, D) of input_ids, or inputs_embeds;
    exactly one of them, and an attention_mask of (B, past + T) if one is given."""
    if (input_ids is None) == (inputs_embeds is None):
        raise InputError("You must specify exactly one of input_ids or inputs_embeds")
    x = embed_tokens(input_ids, p, cfg) if inputs_embeds is None else inputs_embeds
    B, T = np.shape(x)[:2]
    past_len = 0 if past is None else past[0][0].shape[2]
    if attention_mask is not None and np.shape(attention_mask) != (B, past_len + T):
        raise InputError(
            f"attention_mask has shape {np.shape(attention_mask)}, expected {(B, past_len + T)}"
            " (batch, past + new tokens)"
        )
    return x


def _kept_logits(logits, logits_to_keep):
    """logits (B, T, V) at the positions logits_to_keep names: 0 all, n the last n, or an index
    array of positions (transformers' logits_to_keep)."""
    if isinstance(logits_to_keep, int) and logits_to_keep > 1:
        return logits[:, -logits_to_keep:]
    if not isinstance(logits_to_keep, int):
        return logits[:, np.asarray(logits_to_keep)]
    return logits


def _causal_lm_loss(logits, labels):
    """ForCausalLMLoss, None without labels: logits upcast to float32 (also in a float64 run),
    shifted by one against labels (B, T)."""
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.shape != logits.shape[:2]:
        raise InputError(f"labels have shape {labels.shape}, logits {logits.shape[:2]}")
    return lm_loss(logits.astype(np.float32), labels)


class OPTForCausalLM(PreTrainedModel):
    """transformers.OPTForCausalLM from an "opt" checkpoint: causal LM forward (+ loss) and
    generate. Calls take transformers' arguments in 5.23's order. past_key_values is a tuple of
    (K, V) per layer, each (B, H, S, Dh) (transformers: a DynamicCache holding the same)."""

    config_types = (OPTConfig,)
    prefix = "language_model"  # a BLIP-2 checkpoint's OPT subtree

    def __init__(self, config, params, name_or_path=None):
        super().__init__(config, params, name_or_path)
        if "lm_head" not in params and not config.tie_word_embeddings:
            raise CheckpointError(
                "lm_head.weight is missing and tie_word_embeddings is false: transformers would "
                "leave the LM head randomly initialised"
            )

    expected_shapes = staticmethod(opt_shapes)
    optional_keys = staticmethod(opt_optional_keys)

    def __call__(
        self,
        input_ids=None,
        attention_mask=None,
        past_key_values=None,
        inputs_embeds=None,
        labels=None,
        use_cache=None,
        position_ids=None,
        logits_to_keep=0,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=True,
    ):
        cfg, p = self.config, self.params
        x = _embedded_inputs(p, cfg, input_ids, inputs_embeds, attention_mask, past_key_values)
        want_a = cfg.output_attentions if output_attentions is None else output_attentions
        want_h = cfg.output_hidden_states if output_hidden_states is None else output_hidden_states
        one = isinstance(logits_to_keep, int) and logits_to_keep == 1
        out = opt_forward(
            p, cfg, x, attention_mask, position_ids, past_key_values, bool(want_a), last_only=one
        )
        logits = _kept_logits(out["logits"], logits_to_keep)
        use = cfg.use_cache if use_cache is None else use_cache
        result = ModelOutput(
            loss=_causal_lm_loss(logits, labels),
            logits=logits,
            past_key_values=tuple(out["cache"]) if use else None,
            hidden_states=select_hidden_states(out["hidden_states"], want_h),
            attentions=tuple(out["attentions"]) if want_a else None,
        )
        return result if return_dict else result.to_tuple()

    forward = __call__

    def generate(self, input_ids=None, attention_mask=None, inputs_embeds=None, **generate_kwargs):
        """GenerationMixin.generate for OPT (see opt_generate): prompt + new ids, or only the
        new ids when generating from inputs_embeds alone."""
        return opt_generate(
            self.params, self.config, input_ids, inputs_embeds, attention_mask, **generate_kwargs
        )
