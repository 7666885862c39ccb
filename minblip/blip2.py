"""BLIP-2 models. So far the vision tower (Blip2VisionModel, EVA ViT-g/14) and the Q-Former.

Blip2VisionModel computes exactly what BlipVisionModel computes (pre-LN ViT, CLS token, learned
positions with the same bicubic interpolation, post_layernorm applied twice for the pooled
output); only its config defaults differ (1408 wide, 39 layers, 16 heads of 88, 224 px, patch
14, layer_norm_eps 1e-6) and `qkv_bias` may be off. The checkpoint stores the EVA q/v biases as
one combined `self_attn.qkv.bias` [q | k | v] whose k third was initialised to 0 and is read as
stored (../shared/spec/blip2.md §2.2).
"""

import numpy as np

from .blip import BlipVisionModel
from .config import Blip2QFormerConfig, Blip2VisionConfig
from .errors import InputError
from .modeling import PreTrainedModel
from .ops import ACT2FN, layer_norm, linear, merge_heads, softmax, split_heads
from .outputs import ModelOutput
from .trace import scope, tap


class Blip2VisionModel(BlipVisionModel):
    """transformers.Blip2VisionModel: (B, 3, S, S) pixels -> (B, N, Dv) features + pooled (B, Dv).

    Loads a blip_2_vision_model checkpoint folder; calls and outputs as BlipVisionModel's.
    """

    config_types = (Blip2VisionConfig,)


# ----------------------------------------------------------------------------- Q-Former


def qformer_attention(x, memory, mask, p, cfg):
    """Multi-head attention + dense + LayerNorm(x + .). Mirrors Blip2QFormerAttention.

    Shapes: x (B, L, Dq) attends to memory (B, S, Dq | De) -> (B, L, Dq); mask additive,
    broadcastable to (B, H, L, S), or None. Weights: attention.{query,key,value}, output.dense,
    output.LayerNorm.
    """
    H = cfg.num_attention_heads
    a = p["attention"]
    q = split_heads(linear(x, a["query"]), H)  # b l (h dh) -> b h l dh
    k = split_heads(linear(memory, a["key"]), H)  # b s (h dh) -> b h s dh
    v = split_heads(linear(memory, a["value"]), H)
    scores = (q @ k.transpose(0, 1, 3, 2)) * np.asarray(q.shape[-1] ** -0.5, q.dtype)  # b h l s
    if mask is not None:
        scores = scores + mask
    context = tap("attention", merge_heads(softmax(scores) @ v))  # b h l dh -> b l (h dh)
    o = p["output"]
    out = layer_norm(linear(context, o["dense"]) + x, o["LayerNorm"], cfg.layer_norm_eps)
    return tap("output", tap("output.LayerNorm", out))


def qformer_ffn(x, p, names, cfg):
    """dense, activation, dense, LayerNorm(x + .). Mirrors Blip2QFormerIntermediate + Output.

    names: ("intermediate_query", "output_query") for queries, ("intermediate", "output") text.
    """
    n_in, n_out = names
    h = tap(n_in, ACT2FN[cfg.hidden_act](linear(x, p[n_in]["dense"])))
    y = layer_norm(linear(h, p[n_out]["dense"]) + x, p[n_out]["LayerNorm"], cfg.layer_norm_eps)
    return tap(n_out, tap(f"{n_out}.LayerNorm", y))


def qformer_layer(x, image, self_mask, image_mask, Q, p, cfg):
    """Mirrors Blip2QFormerLayer: self-attention over all L positions; the first Q (the queries)
    then cross-attend to the image (in layers that have it) and take the query FFN; the rest
    (text) take the text FFN.  x (B, L, Dq), image (B, S, De) -> (B, L, Dq)."""
    with scope("attention"):
        a = qformer_attention(x, x, self_mask, p["attention"], cfg)
    tap("attention", a)
    if Q == 0:
        return qformer_ffn(a, p, ("intermediate", "output"), cfg)
    aq = a[:, :Q]
    if "crossattention" in p:
        with scope("crossattention"):
            aq = qformer_attention(aq, image, image_mask, p["crossattention"], cfg)
        tap("crossattention", aq)
    y = qformer_ffn(aq, p, ("intermediate_query", "output_query"), cfg)
    if a.shape[1] > Q:  # text positions after the queries
        yt = qformer_ffn(a[:, Q:], p, ("intermediate", "output"), cfg)
        y = np.concatenate([y, yt], axis=1)  # b (q t) d
    return y


def padding_mask(mask, dtype):
    """(B, S) of 1 keep / 0 pad -> additive (B, 1, 1, S): 0 or finfo.min, or None for no mask."""
    if mask is None:
        return None
    m = np.asarray(mask)
    return np.where(m[:, None, None, :] != 0, 0, np.finfo(dtype).min).astype(dtype)


def qformer_shapes(cfg):
    """{key: shape} of Blip2QFormerModel's parameters for this config (checkpoint names)."""
    D, F, E = cfg.hidden_size, cfg.intermediate_size, cfg.encoder_hidden_size

    def block(width_in):
        return {
            "attention.query.weight": (D, D),
            "attention.query.bias": (D,),
            "attention.key.weight": (D, width_in),
            "attention.key.bias": (D,),
            "attention.value.weight": (D, width_in),
            "attention.value.bias": (D,),
            "output.dense.weight": (D, D),
            "output.dense.bias": (D,),
            "output.LayerNorm.weight": (D,),
            "output.LayerNorm.bias": (D,),
        }

    def ffn(name_in, name_out):
        return {
            f"{name_in}.dense.weight": (F, D),
            f"{name_in}.dense.bias": (F,),
            f"{name_out}.dense.weight": (D, F),
            f"{name_out}.dense.bias": (D,),
            f"{name_out}.LayerNorm.weight": (D,),
            f"{name_out}.LayerNorm.bias": (D,),
        }

    shapes = {"layernorm.weight": (D,), "layernorm.bias": (D,)}
    for i in range(cfg.num_hidden_layers):
        layer = {f"attention.{k}": s for k, s in block(D).items()}
        if i % cfg.cross_attention_frequency == 0:
            layer.update({f"crossattention.{k}": s for k, s in block(E).items()})
        layer.update(ffn("intermediate_query", "output_query"))
        if cfg.use_qformer_text_input:
            layer.update(ffn("intermediate", "output"))
        shapes.update({f"encoder.layer.{i}.{k}": s for k, s in layer.items()})
    return shapes


class Blip2QFormerModel(PreTrainedModel):
    """transformers.Blip2QFormerModel: query (and text) embeddings read the image features.

    Loads a blip_2_qformer checkpoint folder. forward(query_embeds (B, L, Dq), query_length=None
    (the first Q of the L positions are queries; default L), attention_mask (B, L),
    encoder_hidden_states (B, S, De), encoder_attention_mask (B, S)) -> last_hidden_state
    (B, L, Dq), pooler_output (B, Dq) = last_hidden_state[:, 0] (no dense, no tanh).
    """

    config_types = (Blip2QFormerConfig,)
    prefix = "qformer"

    @classmethod
    def expected_shapes(cls, config):
        return qformer_shapes(config)

    def __call__(
        self,
        query_embeds=None,
        query_length=None,
        attention_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        return_dict=True,
    ):
        cfg = self.config
        if query_embeds is None:
            raise InputError("Blip2QFormerModel needs query_embeds (B, L, hidden_size)")
        x = np.asarray(query_embeds).astype(self.dtype, copy=False)
        if x.ndim != 3 or x.shape[2] != cfg.hidden_size:
            raise InputError(
                f"query_embeds must be (batch, length, {cfg.hidden_size}), got {x.shape}"
            )
        Q = x.shape[1] if query_length is None else int(query_length)
        if not 0 <= Q <= x.shape[1]:
            raise InputError(f"query_length {Q} is outside [0, {x.shape[1]}]")
        if x.shape[1] > Q and not cfg.use_qformer_text_input:
            raise InputError(
                f"{x.shape[1] - Q} text positions after {Q} queries, but this Q-Former has no text "
                "FFN (use_qformer_text_input is false)"
            )
        image = None
        if encoder_hidden_states is not None:
            image = np.asarray(encoder_hidden_states).astype(self.dtype, copy=False)
            if image.ndim != 3 or image.shape[2] != cfg.encoder_hidden_size:
                raise InputError(
                    f"encoder_hidden_states must be (batch, tokens, {cfg.encoder_hidden_size}), "
                    f"got {image.shape}"
                )
        elif Q > 0:
            raise InputError("encoder_hidden_states must be given for cross-attention layers")
        self_mask = padding_mask(
            _checked_mask(attention_mask, x.shape[:2], "attention_mask"), x.dtype
        )
        image_mask = None
        if image is not None:
            image_mask = padding_mask(
                _checked_mask(encoder_attention_mask, image.shape[:2], "encoder_attention_mask"),
                x.dtype,
            )
        p = self.params
        x = tap("layernorm", layer_norm(x, p["layernorm"], cfg.layer_norm_eps))
        for i, lp in enumerate(p["encoder"]["layer"]):
            with scope(f"encoder.layer.{i}"):
                x = qformer_layer(x, image, self_mask, image_mask, Q, lp, cfg)
            tap(f"encoder.layer.{i}", x)
        out = ModelOutput(last_hidden_state=tap("encoder", x), pooler_output=x[:, 0])
        return out if return_dict else out.to_tuple()

    forward = __call__


def _checked_mask(mask, shape, name):
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise InputError(f"{name} has shape {m.shape}, expected {tuple(shape)}")
    return m
