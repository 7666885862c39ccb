"""BLIP-2 models. So far the vision tower (Blip2VisionModel, EVA ViT-g/14) and the Q-Former.

Blip2VisionModel computes exactly what BlipVisionModel computes (pre-LN ViT, CLS token, learned
positions with the same bicubic interpolation, post_layernorm applied twice for the pooled
output); only its config defaults differ (1408 wide, 39 layers, 16 heads of 88, 224 px, patch
14, layer_norm_eps 1e-6) and `qkv_bias` may be off. The checkpoint stores the EVA q/v biases as
one combined `self_attn.qkv.bias` [q | k | v] whose k third was initialised to 0 and is read as
stored (../shared/spec/blip2.md §2.2).
"""

import numpy as np

from .blip import BlipVisionModel, _mask_like, _token_ids
from .config import Blip2Config, Blip2QFormerConfig, Blip2VisionConfig
from .errors import InputError
from .modeling import PreTrainedModel, as_pixel_values
from .ops import ACT2FN, attention, layer_norm, linear, merge_heads, normalize, split_heads
from .outputs import ModelOutput
from .trace import scope, tap
from .vision import vision_model, vision_shapes


class Blip2VisionModel(BlipVisionModel):
    """transformers.Blip2VisionModel: (B, 3, S, S) pixels -> (B, N, Dv) features + pooled (B, Dv).

    Loads a blip_2_vision_model checkpoint folder; calls and outputs as BlipVisionModel's.
    """

    config_types = (Blip2VisionConfig,)


# ----------------------------------------------------------------------------- Q-Former


def qformer_attention(x, memory, mask, p, cfg):
    """Multi-head attention + dense + LayerNorm(x + .). Mirrors Blip2QFormerAttention.

    Shapes: x (B, Q+T, Dq) attends to memory (B, Tk, Dq | Dv) -> (B, Q+T, Dq); mask additive,
    broadcastable to (B, H, Q+T, Tk), or None. Weights: attention.{query,key,value}, output.dense,
    output.LayerNorm.
    """
    H = cfg.num_attention_heads
    a = p["attention"]
    q = split_heads(linear(x, a["query"]), H)  # b t (h dh) -> b h t dh
    k = split_heads(linear(memory, a["key"]), H)  # b tk (h dh) -> b h tk dh
    v = split_heads(linear(memory, a["value"]), H)
    # multiplied by Dh^-0.5, as transformers' Q-Former does (BERT divides by sqrt(Dh))
    context, _ = attention(q, k, v, q.shape[-1] ** -0.5, mask, return_probs=False)
    context = tap("attention", merge_heads(context))  # b h t dh -> b t (h dh)
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
    """Mirrors Blip2QFormerLayer: self-attention over all Q+T positions; the first Q (queries)
    then cross-attend to the image (in layers that have it) and take the query FFN; the rest
    (text) take the text FFN.  x (B, Q+T, Dq), image (B, N, Dv) -> (B, Q+T, Dq)."""
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


def qformer_forward(x, Q, image, self_mask, image_mask, p, cfg):
    """LayerNorm, then the layers. Mirrors Blip2QFormerModel.forward's computation.

    Shapes: x (B, Q+T, Dq), its first Q positions queries; image (B, N, Dv) or None; masks
    additive (B, 1, 1, Q+T|N) or None -> last_hidden_state (B, Q+T, Dq).
    """
    x = tap("layernorm", layer_norm(x, p["layernorm"], cfg.layer_norm_eps))
    for i, lp in enumerate(p["encoder"]["layer"]):
        with scope(f"encoder.layer.{i}"):
            x = qformer_layer(x, image, self_mask, image_mask, Q, lp, cfg)
        tap(f"encoder.layer.{i}", x)
    return tap("encoder", x)


def padding_mask(mask, dtype):
    """(B, Tk) of 1 keep / 0 pad -> additive (B, 1, 1, Tk): 0 or finfo.min, or None for no mask."""
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

    Loads a blip_2_qformer checkpoint folder. forward(query_embeds (B, Q+T, Dq), query_length=None
    (the first Q positions are queries; default all), attention_mask (B, Q+T),
    encoder_hidden_states (B, N, Dv), encoder_attention_mask (B, N)) -> last_hidden_state
    (B, Q+T, Dq), pooler_output (B, Dq) = last_hidden_state[:, 0] (no dense, no tanh).
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
            raise InputError("Blip2QFormerModel needs query_embeds (B, Q+T, hidden_size)")
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
            _mask_like(attention_mask, x.shape[:2], like_name="query_embeds"), x.dtype
        )
        image_mask = None
        if image is not None:
            image_mask = padding_mask(
                _mask_like(
                    encoder_attention_mask, image.shape[:2], "encoder_attention_mask", "the image"
                ),
                x.dtype,
            )
        x = qformer_forward(x, Q, image, self_mask, image_mask, self.params, cfg)
        out = ModelOutput(last_hidden_state=x, pooler_output=x[:, 0])
        return out if return_dict else out.to_tuple()

    forward = __call__


# ----------------------------------------------------------------------------- retrieval (ITM, ITC)


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
    return p["word_embeddings"]["weight"][ids] + p["position_embeddings"]["weight"][pos]


class _Blip2Retrieval(PreTrainedModel):
    """Shared by the blip2-itm-vit-g classes: the vision tower, the learned queries, the
    Q-Former (with its text embeddings) and the projections, under the checkpoint's names."""

    config_types = (Blip2Config,)

    parts = ("vision_model", "embeddings", "vision_projection", "text_projection", "itm_head")

    @classmethod
    def expected_shapes(cls, config):
        """The checkpoint's keys for the parts this class has (query_tokens and qformer always)."""
        q, D = config.qformer_config, config.qformer_config.hidden_size
        E = config.image_text_hidden_size
        shapes = {"query_tokens": (1, config.num_query_tokens, D)}
        shapes.update({f"qformer.{k}": s for k, s in qformer_shapes(q).items()})
        if "vision_model" in cls.parts:
            vision = vision_shapes(config.vision_config)
            shapes.update({f"vision_model.{k}": s for k, s in vision.items()})
        if "embeddings" in cls.parts:
            shapes["embeddings.word_embeddings.weight"] = (q.vocab_size, D)
            shapes["embeddings.position_embeddings.weight"] = (q.max_position_embeddings, D)
        for name, out in (("vision_projection", E), ("text_projection", E), ("itm_head", 2)):
            if name in cls.parts:
                shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (out, D), (out,)
        return shapes

    def _image(self, pixel_values, interpolate_pos_encoding=False, want_a=False):
        """The vision tower's outputs: (last (B, 257, Dv), pooled, hidden, attentions)."""
        x = as_pixel_values(pixel_values, self.dtype)
        with scope("vision_model"):
            out = vision_model(
                x,
                self.params["vision_model"],
                self.config.vision_config,
                interpolate_pos_encoding,
                want_a,
            )
        tap("vision_model", out[0])
        return out

    def _queries_read(self, image):
        """The learned queries through the Q-Former, reading the image.  -> (B, Qn, Dq)."""
        B, Qn = image.shape[0], self.config.num_query_tokens
        queries = np.broadcast_to(
            self.params["query_tokens"], (B, Qn, self.params["query_tokens"].shape[-1])
        )
        with scope("qformer"):
            h = qformer_forward(
                queries, Qn, image, None, None, self.params["qformer"], self.config.qformer_config
            )
        return tap("qformer", h)

    def _text_only(self, ids, mask, position_ids=None):
        """Text alone through the Q-Former (query_length 0).  -> (B, T, Dq)."""
        q = self.config.qformer_config
        x = tap(
            "embeddings", qformer_text_embeddings(ids, self.params["embeddings"], q, position_ids)
        )
        with scope("qformer"):
            h = qformer_forward(
                x, 0, None, padding_mask(mask, x.dtype), None, self.params["qformer"], q
            )
        return tap("qformer", h)

    def _ids(self, input_ids, attention_mask, strip_placeholders):
        q = self.config.qformer_config
        ids = _token_ids(
            input_ids, q.vocab_size if not strip_placeholders else np.iinfo(np.int64).max
        )
        mask = None if attention_mask is None else _mask_like(attention_mask, ids)
        if strip_placeholders:  # the processor put num_query_tokens image placeholders first
            n = self.config.num_query_tokens
            ids = ids[:, n:]
            if ids.size and (ids.min() < 0 or ids.max() >= q.vocab_size):
                raise InputError(
                    f"input_ids holds ids outside the Q-Former vocabulary [0, {q.vocab_size})"
                )
        return ids, mask


class Blip2ForImageTextRetrieval(_Blip2Retrieval):
    """transformers.Blip2ForImageTextRetrieval (blip2-itm-vit-g).

    use_image_text_matching_head=True (ITM): the queries and the text go through the Q-Former
    together, reading image b; the itm_head on the query outputs, averaged over the queries,
    gives (B, 2) logits (column 1 = match). False (ITC, the default): the image's query outputs
    and the text's [CLS] output are projected and normalised; a text's score with an image is
    the best cosine over the image's queries -> logits_per_image (Bi, Bt). As in transformers
    5.23, these BLIP-2 classes take no interpolate_pos_encoding: images must fit the table.
    """

    def __call__(
        self,
        pixel_values=None,
        input_ids=None,
        attention_mask=None,
        use_image_text_matching_head=False,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=True,
    ):
        if pixel_values is None or input_ids is None:
            raise InputError("Blip2ForImageTextRetrieval needs pixel_values and input_ids")
        want_a, want_h = bool(output_attentions), bool(output_hidden_states)
        image, pooled, hidden, attn = self._image(pixel_values, False, want_a)
        vision_out = ModelOutput(
            last_hidden_state=image,
            pooler_output=pooled,
            hidden_states=tuple(hidden) if want_h else None,
            attentions=tuple(attn) if want_a else None,
        )
        placeholders = self.config.image_token_index is not None
        q, Qn = self.config.qformer_config, self.config.num_query_tokens
        if use_image_text_matching_head:
            ids, mask = self._ids(input_ids, attention_mask, placeholders)
            if ids.shape[0] != image.shape[0]:
                raise InputError(
                    f"ITM reads text b against image b: {ids.shape[0]} texts for "
                    f"{image.shape[0]} images"
                )
            if not placeholders:
                if mask is None:  # transformers concatenates ones with the mask given
                    raise InputError(
                        "ITM needs attention_mask (the queries' ones go in front of it)"
                    )
                mask = np.concatenate([np.ones((ids.shape[0], Qn), np.int64), mask], axis=1)
            if mask is not None and mask.shape[1] != Qn + ids.shape[1]:
                raise InputError(
                    f"attention_mask covers {mask.shape[1]} positions; the queries and the text "
                    f"are {Qn + ids.shape[1]}"
                )
            text = qformer_text_embeddings(ids, self.params["embeddings"], q)
            queries = np.broadcast_to(
                self.params["query_tokens"], (ids.shape[0], Qn, q.hidden_size)
            )
            # Blip2TextEmbeddings puts the queries in front of the text: b (q t) d
            x = tap("embeddings", np.concatenate([queries.astype(text.dtype), text], axis=1))
            with scope("qformer"):
                h = qformer_forward(
                    x, Qn, image, padding_mask(mask, x.dtype), None, self.params["qformer"], q
                )
            tap("qformer", h)
            logits_per_image = linear(h[:, :Qn], self.params["itm_head"]).mean(axis=1)  # (B, 2)
            text_embeds, image_embeds = h, image
            text_out = ModelOutput(last_hidden_state=h, pooler_output=h[:, 0])
        else:
            read = self._queries_read(image)  # (Bi, Qn, Dq)
            ids, mask = self._ids(input_ids, attention_mask, placeholders)
            if placeholders and mask is not None:  # ITC drops the placeholders' mask too
                mask = mask[:, Qn:]
            ht = self._text_only(ids, mask)
            image_embeds = normalize(linear(read, self.params["vision_projection"]))  # (Bi, Qn, E)
            text_embeds = normalize(linear(ht[:, 0], self.params["text_projection"]))  # (Bt, E)
            logits_per_image = (image_embeds @ text_embeds.T).max(axis=1)  # bi q bt -> bi bt
            text_out = ModelOutput(last_hidden_state=ht, pooler_output=ht[:, 0])
        out = ModelOutput(
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_image.T,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=text_out if return_dict else text_out.to_tuple(),
            vision_model_output=vision_out if return_dict else vision_out.to_tuple(),
        )
        return out if return_dict else out.to_tuple()

    forward = __call__


class Blip2TextModelWithProjection(_Blip2Retrieval):
    """transformers.Blip2TextModelWithProjection: text alone through the Q-Former, every position
    projected and normalised -> text_embeds (B, T, E), last_hidden_state (B, T, Dq).

    Its checkpoint also holds query_tokens and the Q-Former's cross-attention and query FFN,
    which text alone never uses (nor does transformers)."""

    parts = ("embeddings", "text_projection")

    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, return_dict=True):
        if input_ids is None:
            raise InputError("Blip2TextModelWithProjection needs input_ids")
        ids, mask = self._ids(input_ids, attention_mask, False)
        ht = self._text_only(ids, mask, position_ids)
        out = ModelOutput(
            text_embeds=normalize(linear(ht, self.params["text_projection"])), last_hidden_state=ht
        )
        return out if return_dict else out.to_tuple()

    forward = __call__


class Blip2VisionModelWithProjection(_Blip2Retrieval):
    """transformers.Blip2VisionModelWithProjection: the queries read the image; each projected and
    normalised -> image_embeds (B, Qn, E); last_hidden_state is the vision tower's (B, N, Dv), as
    transformers returns it (hidden_states / attentions too, on request).

    A Q-Former with a text FFN (use_qformer_text_input) keeps it unused here, as transformers."""

    parts = ("vision_model", "vision_projection")

    def __call__(
        self,
        pixel_values=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=True,
    ):
        if pixel_values is None:
            raise InputError("Blip2VisionModelWithProjection needs pixel_values")
        want_a, want_h = bool(output_attentions), bool(output_hidden_states)
        image, _, hidden, attn = self._image(pixel_values, False, want_a)
        read = self._queries_read(image)
        out = ModelOutput(
            image_embeds=normalize(linear(read, self.params["vision_projection"])),
            last_hidden_state=image,
            hidden_states=tuple(hidden) if want_h else None,
            attentions=tuple(attn) if want_a else None,
        )
        return out if return_dict else out.to_tuple()

    forward = __call__
