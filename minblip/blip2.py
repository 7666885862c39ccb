"""BLIP-2 models. So far the vision tower (Blip2VisionModel, EVA ViT-g/14), the Q-Former
(qformer.py; Blip2QFormerModel is re-exported here) and the retrieval classes.

Blip2VisionModel computes exactly what BlipVisionModel computes (pre-LN ViT, CLS token, learned
positions with the same bicubic interpolation, post_layernorm applied twice for the pooled
output); only its config defaults differ (1408 wide, 39 layers, 16 heads of 88, 224 px, patch
14, layer_norm_eps 1e-6) and `qkv_bias` may be off. The checkpoint stores the EVA q/v biases as
one combined `self_attn.qkv.bias` [q | k | v] whose k third was initialised to 0 and is read as
stored (../shared/spec/blip2.md §2.2).
"""

import numpy as np

from .blip import BlipVisionModel
from .config import Blip2Config, Blip2VisionConfig
from .errors import InputError
from .modeling import (
    PreTrainedModel,
    as_pixel_values,
    mask_like,
    require,
    token_ids,
    tower_fields,
    tower_output,
)
from .ops import linear, normalize
from .outputs import (
    BaseModelOutputWithPoolingAndCrossAttentions,
    Blip2ImageTextMatchingModelOutput,
    Blip2TextModelOutput,
    Blip2VisionModelOutput,
    returned,
)
from .qformer import (  # noqa: F401  (re-exported: these lived in blip2.py before qformer.py)
    Blip2QFormerModel,
    padding_mask,
    qformer_attention,
    qformer_ffn,
    qformer_forward,
    qformer_layer,
    qformer_shapes,
    qformer_text_embeddings,
)
from .trace import scope, tap
from .vision import vision_shapes, vision_tower


class Blip2VisionModel(BlipVisionModel):
    """transformers.Blip2VisionModel: (B, 3, S, S) pixels -> (B, N, Dv) features + pooled (B, Dv).

    Loads a blip_2_vision_model checkpoint folder; calls and outputs as BlipVisionModel's.
    """

    config_types = (Blip2VisionConfig,)


# ----------------------------------------------------------------------------- retrieval (ITM, ITC)


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

    def _image(self, pixel_values, output_attentions=False):
        """The vision tower's outputs: (last (B, N, Dv), pooled, hidden, attentions). As in
        transformers 5.23, these classes take no interpolate_pos_encoding."""
        x = as_pixel_values(pixel_values, self.dtype)
        vcfg = self.config.vision_config
        return vision_tower(x, self.params["vision_model"], vcfg, False, output_attentions)

    def _qformer(self, x, Q, image, mask):
        """x (B, Q+T, Dq) through the Q-Former, its first Q positions reading image. -> same."""
        with scope("qformer"):
            h = qformer_forward(
                x, Q, image, mask, None, self.params["qformer"], self.config.qformer_config
            )
        return tap("qformer", h)

    def _queries(self, B):
        """The learned queries, one set per image.  -> (B, Q, Dq)."""
        tokens = self.params["query_tokens"]
        return np.broadcast_to(tokens, (B, tokens.shape[1], tokens.shape[2]))

    def _queries_read(self, image):
        """The learned queries through the Q-Former, reading the image.  -> (B, Q, Dq)."""
        return self._qformer(
            self._queries(image.shape[0]), self.config.num_query_tokens, image, None
        )

    def _text_only(self, ids, mask, position_ids=None):
        """Text alone through the Q-Former (query_length 0).  -> (B, T, Dq)."""
        q = self.config.qformer_config
        x = qformer_text_embeddings(ids, self.params["embeddings"], q, position_ids)
        x = tap("embeddings", x)
        return self._qformer(x, 0, None, padding_mask(mask, x.dtype))

    def _queries_and_text_read(self, image, ids, mask):
        """ITM: the queries and text b together through the Q-Former, reading image b.
        -> (B, Q+T, Dq)."""
        text = qformer_text_embeddings(ids, self.params["embeddings"], self.config.qformer_config)
        queries = self._queries(ids.shape[0]).astype(text.dtype)
        # Blip2TextEmbeddings puts the queries in front of the text: b (q t) d
        x = tap("embeddings", np.concatenate([queries, text], axis=1))
        return self._qformer(x, queries.shape[1], image, padding_mask(mask, x.dtype))

    def _ids(self, input_ids, attention_mask, strip_placeholders):
        q = self.config.qformer_config
        ids = token_ids(
            input_ids, q.vocab_size if not strip_placeholders else np.iinfo(np.int64).max
        )
        mask = None if attention_mask is None else mask_like(attention_mask, ids)
        if strip_placeholders:  # the processor put num_query_tokens image placeholders first
            n = self.config.num_query_tokens
            ids = ids[:, n:]
            if ids.size and (ids.min() < 0 or ids.max() >= q.vocab_size):
                raise InputError(
                    f"input_ids holds ids outside the Q-Former vocabulary [0, {q.vocab_size})"
                )
        return ids, mask

    def _itm_text(self, input_ids, attention_mask, n_images):
        """ITM's ids (B, T) and the mask of queries + text (B, Q+T) or None, checked."""
        placeholders, Qn = self.config.image_token_index is not None, self.config.num_query_tokens
        ids, mask = self._ids(input_ids, attention_mask, placeholders)
        if ids.shape[0] != n_images:
            raise InputError(
                f"ITM reads text b against image b: {ids.shape[0]} texts for {n_images} images"
            )
        if not placeholders:
            if mask is None:  # transformers concatenates ones with the mask given
                raise InputError("ITM needs attention_mask (the queries' ones go in front of it)")
            mask = np.concatenate([np.ones((ids.shape[0], Qn), np.int64), mask], axis=1)
        if mask is not None and mask.shape[1] != Qn + ids.shape[1]:
            raise InputError(
                f"attention_mask covers {mask.shape[1]} positions; the queries and the text "
                f"are {Qn + ids.shape[1]}"
            )
        return ids, mask

    def _itc_text(self, input_ids, attention_mask):
        """ITC's ids (B, T) and mask (B, T) or None: the placeholders' mask dropped too."""
        placeholders = self.config.image_token_index is not None
        ids, mask = self._ids(input_ids, attention_mask, placeholders)
        if placeholders and mask is not None:
            mask = mask[:, self.config.num_query_tokens :]
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
        require("Blip2ForImageTextRetrieval", pixel_values=pixel_values, input_ids=input_ids)
        want_a, want_h = bool(output_attentions), bool(output_hidden_states)
        image, pooled, hidden, attn = self._image(pixel_values, want_a)
        if use_image_text_matching_head:
            ids, mask = self._itm_text(input_ids, attention_mask, image.shape[0])
            h = self._queries_and_text_read(image, ids, mask)  # (B, Q+T, Dq)
            Qn = self.config.num_query_tokens
            logits_per_image = linear(h[:, :Qn], self.params["itm_head"]).mean(axis=1)  # (B, 2)
            text_embeds, image_embeds = h, image
        else:
            read = self._queries_read(image)  # (Bi, Q, Dq)
            h = self._text_only(*self._itc_text(input_ids, attention_mask))  # (Bt, T, Dq)
            image_embeds = normalize(linear(read, self.params["vision_projection"]))  # (Bi, Q, E)
            text_embeds = normalize(linear(h[:, 0], self.params["text_projection"]))  # (Bt, E)
            logits_per_image = (image_embeds @ text_embeds.T).max(axis=1)  # bi q bt -> bi bt
        out = Blip2ImageTextMatchingModelOutput(
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_image.T,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=BaseModelOutputWithPoolingAndCrossAttentions(
                last_hidden_state=h, pooler_output=h[:, 0]
            ),
            vision_model_output=tower_output(image, pooled, hidden, attn, want_h, want_a),
        )
        return returned(out, return_dict)

    forward = __call__


class Blip2TextModelWithProjection(_Blip2Retrieval):
    """transformers.Blip2TextModelWithProjection: text alone through the Q-Former, every position
    projected and normalised -> text_embeds (B, T, E), last_hidden_state (B, T, Dq).

    Its checkpoint also holds query_tokens and the Q-Former's cross-attention and query FFN,
    which text alone never uses (nor does transformers)."""

    parts = ("embeddings", "text_projection")

    def __call__(self, input_ids=None, attention_mask=None, position_ids=None, return_dict=True):
        require("Blip2TextModelWithProjection", input_ids=input_ids)
        ids, mask = self._ids(input_ids, attention_mask, False)
        h = self._text_only(ids, mask, position_ids)
        text_embeds = normalize(linear(h, self.params["text_projection"]))
        return returned(
            Blip2TextModelOutput(text_embeds=text_embeds, last_hidden_state=h), return_dict
        )

    forward = __call__


class Blip2VisionModelWithProjection(_Blip2Retrieval):
    """transformers.Blip2VisionModelWithProjection: the queries read the image; each projected and
    normalised -> image_embeds (B, Q, E); last_hidden_state is the vision tower's (B, N, Dv), as
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
        require("Blip2VisionModelWithProjection", pixel_values=pixel_values)
        want_a, want_h = bool(output_attentions), bool(output_hidden_states)
        image, _, hidden, attn = self._image(pixel_values, want_a)
        read = self._queries_read(image)
        image_embeds = normalize(linear(read, self.params["vision_projection"]))  # (B, Q, E)
        fields = tower_fields(image, hidden, attn, want_h, want_a)
        out = Blip2VisionModelOutput(image_embeds=image_embeds, **fields)
        return returned(out, return_dict)

    forward = __call__
