"""The BLIP-2 Q-Former: learned queries (and, for retrieval, text) reading the image features.

Mirrors transformers' Blip2QFormerModel: a LayerNorm, then post-LN BERT layers in which every
position self-attends; the first Q positions (the queries) also cross-attend to the image in
every cross_attention_frequency-th layer and take their own FFN (intermediate_query /
output_query), while text positions after them take the text FFN (intermediate / output).
"""

import numpy as np

from .config import Blip2QFormerConfig
from .errors import InputError
from .modeling import PreTrainedModel, features, mask_like, output_flags, select_hidden_states
from .ops import ACT2FN, attention, embedding, layer_norm, linear, merge_heads, split_heads
from .outputs import BaseModelOutputWithPoolingAndCrossAttentions, returned
from .text_bert import attention_shapes, ffn_shapes
from .trace import scope, tap


def qformer_attention(x, memory, mask, p, cfg, output_attentions=False):
    """Multi-head attention + dense + LayerNorm(x + .). Mirrors Blip2QFormerAttention.

    Shapes: x (B, Q+T, Dq) attends to memory (B, Tk, Dq | Dv) -> (B, Q+T, Dq); mask additive,
    broadcastable to (B, H, Q+T, Tk), or None. Also returns the probabilities (B, H, Q+T, Tk) if
    output_attentions, else None. Weights: attention.{query,key,value}, output.dense,
    output.LayerNorm.
    """
    H = cfg.num_attention_heads
    a = p["attention"]
    q = split_heads(linear(x, a["query"]), H)  # b t (h dh) -> b h t dh
    k = split_heads(linear(memory, a["key"]), H)  # b tk (h dh) -> b h tk dh
    v = split_heads(linear(memory, a["value"]), H)
    # multiplied by Dh^-0.5, as transformers' Q-Former does (BERT divides by sqrt(Dh))
    context, probs = attention(q, k, v, q.shape[-1] ** -0.5, mask, return_probs=output_attentions)
    context = tap("attention", merge_heads(context))  # b h t dh -> b t (h dh)
    o = p["output"]
    out = layer_norm(linear(context, o["dense"]) + x, o["LayerNorm"], cfg.layer_norm_eps)
    return tap("output", tap("output.LayerNorm", out)), probs


def qformer_ffn(x, p, names, cfg):
    """dense, activation, dense, LayerNorm(x + .). Mirrors Blip2QFormerIntermediate + Output.

    names: ("intermediate_query", "output_query") for queries, ("intermediate", "output") text.
    """
    n_in, n_out = names
    h = tap(n_in, ACT2FN[cfg.hidden_act](linear(x, p[n_in]["dense"])))
    y = layer_norm(linear(h, p[n_out]["dense"]) + x, p[n_out]["LayerNorm"], cfg.layer_norm_eps)
    return tap(n_out, tap(f"{n_out}.LayerNorm", y))


def qformer_layer(x, image, self_mask, image_mask, Q, p, cfg, output_attentions=False):
    """Mirrors Blip2QFormerLayer: self-attention over all Q+T positions; the first Q (queries)
    then cross-attend to the image (in layers that have it) and take the query FFN; the rest
    (text) take the text FFN.  x (B, Q+T, Dq), image (B, N, Dv) -> (B, Q+T, Dq), the
    self-attention probs (B, H, Q+T, Q+T) and the cross-attention probs (B, H, Q, N) (None
    when not output_attentions, or when the layer has no cross-attention or no queries)."""
    with scope("attention"):
        a, probs = qformer_attention(x, x, self_mask, p["attention"], cfg, output_attentions)
    tap("attention", a)
    if Q == 0:
        return qformer_ffn(a, p, ("intermediate", "output"), cfg), probs, None
    aq, cross_probs = a[:, :Q], None
    if "crossattention" in p:
        with scope("crossattention"):
            aq, cross_probs = qformer_attention(
                aq, image, image_mask, p["crossattention"], cfg, output_attentions
            )
        tap("crossattention", aq)
    y = qformer_ffn(aq, p, ("intermediate_query", "output_query"), cfg)
    if a.shape[1] > Q:  # text positions after the queries
        yt = qformer_ffn(a[:, Q:], p, ("intermediate", "output"), cfg)
        y = np.concatenate([y, yt], axis=1)  # b (q t) d
    return y, probs, cross_probs


def qformer_encoder(x, Q, image, self_mask, image_mask, p, cfg, output_attentions=False):
    """LayerNorm, then the layers. Mirrors Blip2QFormerModel.forward's computation.

    Shapes: x (B, Q+T, Dq), its first Q positions queries; image (B, N, Dv) or None; masks
    additive (B, 1, 1, Q+T|N) or None -> {"last_hidden_state": (B, Q+T, Dq), "hidden_states":
    L+1 x (B, Q+T, Dq) (the LayerNorm's output, then each layer's), "attentions",
    "cross_attentions": the probabilities as 5.23 collects them (output_attentions only)}.
    5.23 records "attentions" from every Blip2QFormerMultiHeadAttention whose path contains
    ".attention." -- the cross-attention's own (crossattention.attention) matches too -- so
    its attentions interleave self (B, H, Q+T, Q+T) and cross (B, H, Q, N) probabilities in the
    order they run; cross_attentions holds the cross ones alone.
    """
    x = tap("layernorm", layer_norm(x, p["layernorm"], cfg.layer_norm_eps))
    hidden_states, attentions, cross_attentions = [x], [], []
    for i, layer in enumerate(p["encoder"]["layer"]):
        with scope(f"encoder.layer.{i}"):
            x, probs, cross_probs = qformer_layer(
                x, image, self_mask, image_mask, Q, layer, cfg, output_attentions
            )
        hidden_states.append(tap(f"encoder.layer.{i}", x))
        if output_attentions:
            attentions.append(probs)
            if cross_probs is not None:
                attentions.append(cross_probs)
                cross_attentions.append(cross_probs)
    return {
        "last_hidden_state": tap("encoder", x),
        "hidden_states": hidden_states,
        "attentions": attentions,
        "cross_attentions": cross_attentions,
    }


def qformer_forward(x, Q, image, self_mask, image_mask, p, cfg):
    """qformer_encoder's last_hidden_state (B, Q+T, Dq) alone."""
    return qformer_encoder(x, Q, image, self_mask, image_mask, p, cfg)["last_hidden_state"]


def padding_mask(mask, dtype):
    """(B, Tk) of 1 keep / 0 pad -> additive (B, 1, 1, Tk): 0 or finfo.min, or None for no mask."""
    if mask is None:
        return None
    m = np.asarray(mask)
    return np.where(m[:, None, None, :] != 0, 0, np.finfo(dtype).min).astype(dtype)


def qformer_shapes(cfg):
    """{key: shape} of Blip2QFormerModel's parameters for this config (checkpoint names)."""
    D, F, E = cfg.hidden_size, cfg.intermediate_size, cfg.encoder_hidden_size
    shapes = {"layernorm.weight": (D,), "layernorm.bias": (D,)}
    for i in range(cfg.num_hidden_layers):
        blocks = {"attention": D}
        if i % cfg.cross_attention_frequency == 0:
            blocks["crossattention"] = E
        layer = {}
        for block, kv_in in blocks.items():  # BERT's blocks, "attention" where BERT has "self"
            attn = attention_shapes(D, kv_in, inner="attention")
            layer.update({f"{block}.{k}": s for k, s in attn.items()})
        layer.update(ffn_shapes(D, F, "intermediate_query", "output_query"))
        if cfg.use_qformer_text_input:
            layer.update(ffn_shapes(D, F))
        shapes.update({f"encoder.layer.{i}.{k}": s for k, s in layer.items()})
    return shapes


def qformer_text_embeddings(ids, p, cfg, position_ids=None):
    """word + position embeddings, no LayerNorm (the Q-Former's own comes next). Mirrors
    Blip2TextEmbeddings.  ids (B, T) -> (B, T, Dq)."""
    T = ids.shape[1]
    pos = np.arange(T)[None] if position_ids is None else np.asarray(position_ids)
    if pos.size and int(pos.max()) >= cfg.max_position_embeddings:
        raise InputError(
            f"text position {int(pos.max())} is outside the position table of "
            f"max_position_embeddings={cfg.max_position_embeddings} rows"
        )
    words = embedding(p["word_embeddings"]["weight"], ids)
    return words + embedding(p["position_embeddings"]["weight"], pos)


class Blip2QFormerModel(PreTrainedModel):
    """transformers.Blip2QFormerModel: query (and text) embeddings read the image features.

    Loads a blip_2_qformer checkpoint folder. forward(query_embeds (B, Q+T, Dq), query_length=None
    (the first Q positions are queries; default all), attention_mask (B, Q+T),
    encoder_hidden_states (B, N, Dv), encoder_attention_mask (B, N)) -> last_hidden_state
    (B, Q+T, Dq), pooler_output (B, Dq) = last_hidden_state[:, 0] (no dense, no tanh).
    """

    config_types = (Blip2QFormerConfig,)
    prefix = "qformer"

    expected_shapes = staticmethod(qformer_shapes)

    def __call__(
        self,
        query_embeds=None,
        query_length=None,
        attention_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=True,
    ):
        x, Q, image = self._inputs(query_embeds, query_length, encoder_hidden_states)
        want_h, want_a = output_flags(self.config, output_hidden_states, output_attentions)
        mask = mask_like(attention_mask, x.shape[:2], like_name="query_embeds")
        image_mask = None
        if image is not None:
            image_mask = mask_like(
                encoder_attention_mask, image.shape[:2], "encoder_attention_mask", "the image"
            )
        enc = qformer_encoder(
            x,
            Q,
            image,
            padding_mask(mask, x.dtype),
            padding_mask(image_mask, x.dtype),
            self.params,
            self.config,
            output_attentions=bool(want_a),
        )
        x = enc["last_hidden_state"]
        out = BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=x,
            pooler_output=x[:, 0],
            hidden_states=select_hidden_states(enc["hidden_states"], want_h),
            attentions=tuple(enc["attentions"]) if want_a else None,
            cross_attentions=tuple(enc["cross_attentions"]) if want_a else None,
        )
        return returned(out, return_dict)

    forward = __call__

    def _inputs(self, query_embeds, query_length, encoder_hidden_states):
        """(x (B, Q+T, Dq), Q, image (B, N, Dv) or None), checked against the config."""
        cfg = self.config
        if query_embeds is None:
            raise InputError("Blip2QFormerModel needs query_embeds (B, Q+T, hidden_size)")
        x = features(query_embeds, cfg.hidden_size, self.dtype, "query_embeds", "batch, length, ")
        Q = x.shape[1] if query_length is None else int(query_length)
        if not 0 <= Q <= x.shape[1]:
            raise InputError(f"query_length {Q} is outside [0, {x.shape[1]}]")
        if x.shape[1] > Q and not cfg.use_qformer_text_input:
            raise InputError(
                f"{x.shape[1] - Q} text positions after {Q} queries, but this Q-Former has no text "
                "FFN (use_qformer_text_input is false)"
            )
        if encoder_hidden_states is None:
            if Q > 0:
                raise InputError("encoder_hidden_states must be given for cross-attention layers")
            return x, Q, None
        return x, Q, features(encoder_hidden_states, cfg.encoder_hidden_size, self.dtype)
