"""BLIP-2 models. So far the vision tower (Blip2VisionModel, EVA ViT-g/14), the Q-Former
(qformer.py; Blip2QFormerModel is re-exported here) and the retrieval classes.

Blip2VisionModel computes exactly what BlipVisionModel computes (pre-LN ViT, CLS token, learned
positions with the same bicubic interpolation, post_layernorm applied twice for the pooled
output); only its config defaults differ (1408 wide, 39 layers, 16 heads of 88, 224 px, patch
14, layer_norm_eps 1e-6) and `qkv_bias` may be off. The checkpoint stores the EVA q/v biases as
one combined `self_attn.qkv.bias` [q | k | v] whose k third was initialised to 0 and is read as
stored (../shared/spec/blip2.md §2.2).
"""

import importlib

import numpy as np

from .blip import BlipVisionModel
from .config import Blip2Config, Blip2VisionConfig, is_decoder_only
from .errors import ConfigError, InputError
from .modeling import (
    PreTrainedModel,
    as_pixel_values,
    mask_like,
    require,
    select_hidden_states,
    submodel,
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
    ModelOutput,
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
from .text_bert import lm_loss
from .trace import scope, tap
from .vision import vision_shapes, vision_tower
from .weights import release


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

    def _image(self, pixel_values, output_attentions=False, interpolate_pos_encoding=False):
        """The vision tower's outputs: (last (B, N, Dv), pooled, hidden, attentions). As in
        transformers 5.23, the retrieval classes take no interpolate_pos_encoding (they pass
        False); Blip2Model and Blip2ForConditionalGeneration do."""
        x = as_pixel_values(pixel_values, self.dtype)
        vcfg = self.config.vision_config
        return vision_tower(
            x, self.params["vision_model"], vcfg, interpolate_pos_encoding, output_attentions
        )

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


# ------------------------------------------------------------------------ image -> language model


def scatter_prefix(embeds, placeholders, prefix):
    """torch's masked_scatter as 5.23 uses it: the placeholder rows of embeds, taken in row-major
    (batch, position) order, receive the prefix vectors one after another.

    Shapes: embeds (B, L, Dl), placeholders (B, L) bool, prefix (B, Q, Dl) -> (B, L, Dl).
    transformers scatters silently whatever the count (too few placeholders: the first vectors
    only; none: the image is ignored); minblip asks for exactly Q per image (docs/deviations.md).
    """
    B, Q, D = prefix.shape
    counts = placeholders.sum(axis=1)
    if embeds.shape[0] != B or np.any(counts != Q):
        raise InputError(
            f"each prompt must hold exactly num_query_tokens={Q} image placeholder tokens (one per "
            f"query, as Blip2Processor inserts them) for {B} image(s); found {counts.tolist()} in "
            f"{embeds.shape[0]} prompt(s)"
        )
    if embeds.shape[2] != D:
        raise InputError(
            f"the language model's input embeddings are {embeds.shape[2]} wide but "
            f"language_projection gives {D}"
        )
    out = embeds.copy()
    out[placeholders] = prefix.reshape(B * Q, D)  # b q d -> (b q) d, row-major as masked_scatter
    return out


def lm_width(text_config):
    """The language model's hidden width: OPT's hidden_size, T5's d_model."""
    return getattr(text_config, "hidden_size", None) or text_config.d_model


def language_module(config):
    """minblip.opt or minblip.t5: the file holding config's language model."""
    return importlib.import_module(language_model_class(config).__module__)


def language_model_class(config):
    """OPTForCausalLM or T5ForConditionalGeneration for config.text_config; others refused."""
    from .config import LANGUAGE_MODELS

    kind = getattr(config.text_config, "model_type", None)
    if kind == "opt":
        from .opt import OPTForCausalLM

        return OPTForCausalLM
    if kind == "t5":
        from .t5 import T5ForConditionalGeneration

        return T5ForConditionalGeneration
    if isinstance(config.text_config, dict):
        kind = config.text_config.get("model_type")
    raise ConfigError(
        f"BLIP-2 language model of type {kind!r} is not supported: minblip runs BLIP-2 with "
        f"{', '.join(LANGUAGE_MODELS)} language models"
    )


class _Blip2LanguageModel(_Blip2Retrieval):
    """Shared by Blip2Model and Blip2ForConditionalGeneration: vision tower, learned queries,
    Q-Former, language_projection and the language model (OPT or T5), under the checkpoint's
    names (language_model.* keyed as the OPTForCausalLM / T5ForConditionalGeneration inside)."""

    parts = ("vision_model",)

    @classmethod
    def expected_shapes(cls, config):
        lm = language_model_class(config)
        shapes = super().expected_shapes(config)
        Dq, Dl = config.qformer_config.hidden_size, lm_width(config.text_config)
        shapes["language_projection.weight"] = (Dl, Dq)
        shapes["language_projection.bias"] = (Dl,)
        for k, s in lm.expected_shapes(config.text_config).items():
            shapes[f"language_model.{k}"] = s
        return shapes

    @classmethod
    def optional_keys(cls, config):
        lm = language_model_class(config)
        return [f"language_model.{k}" for k in lm.optional_keys(config.text_config)]

    @property
    def language_model(self):
        """The language model over this checkpoint's language_model subtree (no copy)."""
        cls, cfg = language_model_class(self.config), self.config.text_config
        return submodel(cls, cfg, self.params["language_model"], self.dtype, self.name_or_path)

    def embed(self, ids):
        """The language model's input embeddings of ids (OPT embed_tokens, T5 shared)."""
        module = language_module(self.config)
        return module.embed_tokens(ids, self.params["language_model"], self.config.text_config)

    def image_prefix(self, image):
        """Queries read the image; language_projection maps them to the language model's width.
        Mirrors get_image_features' steps 2-3.  image (B, N, Dv) -> ((B, Q, Dq), (B, Q, Dl))."""
        query_output = self._queries_read(image)
        return query_output, linear(query_output, self.params["language_projection"])

    def language_inputs(self, input_ids, inputs_embeds, attention_mask, prefix):
        """The prompt's embeddings with the prefix scattered into its image placeholders.

        Mirrors 5.23's generate/forward: with neither ids nor embeddings the prompt is Q
        placeholders + the language model's bos; placeholders are found in input_ids, or (ids
        absent) as rows equal to the placeholder's embedding. -> (ids or None, (B, L, Dl), mask).
        """
        cfg = self.config
        token = cfg.image_token_index
        if token is None:
            raise ConfigError(
                f"{self.name_or_path}: config.json has no image_token_index; transformers 5.23 "
                "places the image through placeholder tokens and cannot run without it"
            )
        if inputs_embeds is None:
            if input_ids is None:
                bos = cfg.text_config.bos_token_id
                if bos is None:  # 5.23 fails here too (AttributeError on the config)
                    raise ConfigError(
                        f"{self.name_or_path}: text_config has no bos_token_id, which starts "
                        "the prompt when no input_ids are given; pass input_ids"
                    )
                start = [token] * cfg.num_query_tokens + [bos]
                input_ids = np.tile(np.array([start], np.int64), (prefix.shape[0], 1))
            ids = token_ids(input_ids, cfg.text_config.vocab_size)
            embeds = self.embed(ids)
        else:
            ids = None if input_ids is None else token_ids(input_ids, cfg.text_config.vocab_size)
            embeds = np.asarray(inputs_embeds).astype(self.dtype, copy=False)
            if embeds.ndim != 3:
                raise InputError(
                    f"inputs_embeds must be (batch, length, width), got {embeds.shape}"
                )
        if ids is not None:
            placeholders = ids == token
        else:  # as 5.23: rows equal to the placeholder's own embedding, in every feature
            row = self.embed(np.array([[token]], np.int64))[0, 0]
            placeholders = np.all(embeds == row, axis=-1)
        mask = mask_like(attention_mask, embeds.shape[:2], like_name="the prompt")
        if mask is None:
            mask = np.ones(embeds.shape[:2], np.int64)  # 5.23: ones_like(input_ids)
        return ids, scatter_prefix(embeds, placeholders, prefix.astype(embeds.dtype)), mask

    def image_features(self, pixel_values, interpolate_pos_encoding=False):
        """Steps 1-3 of Blip2ForConditionalGeneration: vision tower, queries, projection ->
        last_hidden_state (B, N, Dv), pooler_output = the prefix (B, Q, Dl), vision_outputs,
        qformer_outputs (the layout of 5.23's get_image_features)."""
        if pixel_values is None:
            raise InputError(f"{type(self).__name__} needs pixel_values")
        image, pooled, _, _ = self._image(pixel_values, False, interpolate_pos_encoding)
        query_output, prefix = self.image_prefix(image)
        return ModelOutput(
            last_hidden_state=image,
            pooler_output=prefix,
            vision_outputs=ModelOutput(last_hidden_state=image, pooler_output=pooled),
            qformer_outputs=ModelOutput(
                last_hidden_state=query_output, pooler_output=query_output[:, 0]
            ),
        )

    def forward_with_image(
        self,
        image,
        input_ids,
        attention_mask,
        decoder_input_ids,
        decoder_attention_mask,
        inputs_embeds,
        labels,
        output_attentions,
        output_hidden_states,
        return_dict,
    ):
        """The prompt with the image's prefix through the language model (forward's step 4).
        image: image_features' output."""
        if input_ids is None and inputs_embeds is None:
            raise InputError(f"{type(self).__name__} needs input_ids")
        prefix = image["pooler_output"]
        _, embeds, mask = self.language_inputs(input_ids, inputs_embeds, attention_mask, prefix)
        options = {"output_attentions": output_attentions}
        options["output_hidden_states"] = output_hidden_states
        loss, logits, lm_out = self.run_language_model(
            embeds, mask, labels, decoder_input_ids, decoder_attention_mask, **options
        )
        return blip2_output(
            return_dict,
            loss=loss,
            logits=logits,
            vision_outputs=image["vision_outputs"],
            qformer_outputs=image["qformer_outputs"],
            language_model_outputs=lm_out,
        )

    def run_language_model(
        self, embeds, mask, labels, decoder_input_ids, decoder_attention_mask, **options
    ):
        """The language model on the prefixed prompt -> (loss, logits, its outputs). Mirrors the
        last step of Blip2ForConditionalGeneration.forward: OPT gets the embeddings and the mask,
        and with labels its logits are cut to the labels' length before the causal-LM loss (as
        5.23 does, in float32); T5's encoder gets them, its decoder decoder_input_ids (or
        labels shifted right) and it computes its own loss."""
        with scope("language_model"):
            if is_decoder_only(self.config):
                out = self.language_model(inputs_embeds=embeds, attention_mask=mask, **options)
            else:
                out = self.language_model(
                    inputs_embeds=embeds,
                    attention_mask=mask,
                    decoder_input_ids=decoder_input_ids,
                    decoder_attention_mask=decoder_attention_mask,
                    labels=labels,
                    **options,
                )
        tap("language_model", out.logits)
        logits, loss = out.logits, out.loss
        if is_decoder_only(self.config) and labels is not None:
            labels = np.asarray(labels)
            logits = logits[:, -labels.shape[1] :]  # the labels cover the last positions
            loss = lm_loss(logits.astype(np.float32), labels)
        return loss, logits, out


class Blip2ForConditionalGeneration(_Blip2LanguageModel):
    """transformers.Blip2ForConditionalGeneration (blip2-opt-2.7b, blip2-flan-t5-xl, ...).

    pixels -> EVA ViT (B, N, Dv) -> Q learned queries read it in the Q-Former (B, Q, Dq) ->
    language_projection (B, Q, Dl) -> scattered into the prompt's Q image placeholders ->
    OPT (decoder-only) or T5 (the prompt feeds the encoder) -> logits (B, L, V).
    """

    def __call__(
        self,
        pixel_values=None,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        inputs_embeds=None,
        labels=None,
        interpolate_pos_encoding=False,
        mm_encoder_outputs=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=True,
    ):
        """mm_encoder_outputs: {"image": get_image_features(...)'s output} instead of
        pixel_values (5.23's way to reuse the image's features across calls)."""
        if pixel_values is not None and mm_encoder_outputs is not None:
            raise InputError("give pixel_values or mm_encoder_outputs, not both")
        image = (mm_encoder_outputs or {}).get("image")
        if image is None:
            image = self.image_features(pixel_values, interpolate_pos_encoding)
        return self.forward_with_image(
            image,
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            inputs_embeds=inputs_embeds,
            labels=labels,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=return_dict,
        )

    forward = __call__

    def generate(
        self,
        pixel_values=None,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        interpolate_pos_encoding=False,
        **generate_kwargs,
    ):
        """Mirrors Blip2ForConditionalGeneration.generate. OPT returns the prompt ids (Q
        placeholders + bos + prompt) followed by the new ids (only new ids when generating from
        inputs_embeds alone); T5 returns decoder ids starting with decoder_start_token_id.
        Settings: minblip.generate.generate's (num_beams, max_new_tokens, do_sample, ...)."""
        if pixel_values is None:
            raise InputError("generate needs pixel_values")
        # Each half maps only its own weights: the language model's pages (from an earlier
        # caption) are released before the vision tower reads its own, and those after the
        # prefix is made, so the peak RSS is the larger half, not the sum (weights.release).
        release(self.params["language_model"])
        image = self._image(pixel_values, False, interpolate_pos_encoding)[0]
        prefix = self.image_prefix(image)[1]
        ids, embeds, mask = self.language_inputs(input_ids, inputs_embeds, attention_mask, prefix)
        for part in ("vision_model", "qformer"):
            release(self.params[part])
        with scope("language_model"):
            if is_decoder_only(self.config):
                return self.language_model.generate(
                    input_ids=ids, attention_mask=mask, inputs_embeds=embeds, **generate_kwargs
                )
            return self.language_model.generate(
                inputs_embeds=embeds, attention_mask=mask, **generate_kwargs
            )

    def get_image_features(
        self, pixel_values=None, interpolate_pos_encoding=False, return_dict=True
    ):
        """Blip2ForConditionalGeneration.get_image_features: the vision tower's outputs with
        pooler_output replaced by the language-model prefix (B, Q, Dl), and the Q-Former's
        outputs attached (as 5.23 returns them)."""
        out = self.image_features(pixel_values, interpolate_pos_encoding)
        return out if return_dict else out.to_tuple()


class Blip2Model(_Blip2LanguageModel):
    """transformers.Blip2Model: the same parts and checkpoint keys as
    Blip2ForConditionalGeneration (its language model keeps its LM head), the same forward
    (without inputs_embeds), and the feature helpers get_image_features (the vision tower),
    get_qformer_features (the queries after the Q-Former) and get_text_features (text alone
    through OPT's decoder or T5's encoder)."""

    def __call__(
        self,
        pixel_values=None,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        labels=None,
        interpolate_pos_encoding=False,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=True,
    ):
        image = self.image_features(pixel_values, interpolate_pos_encoding)
        return self.forward_with_image(
            image,
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            inputs_embeds=None,
            labels=labels,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=return_dict,
        )

    forward = __call__

    def get_image_features(
        self,
        pixel_values=None,
        interpolate_pos_encoding=False,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=True,
    ):
        """The vision tower's BaseModelOutputWithPooling (last_hidden_state (B, N, Dv),
        pooler_output (B, Dv)), as 5.23's self.vision_model(...) returns it."""
        if pixel_values is None:
            raise InputError("get_image_features needs pixel_values")
        want_a, want_h = bool(output_attentions), bool(output_hidden_states)
        image, pooled, hidden, attn = self._image(pixel_values, want_a, interpolate_pos_encoding)
        return returned(tower_output(image, pooled, hidden, attn, want_h, want_a), return_dict)

    def get_qformer_features(self, pixel_values=None, interpolate_pos_encoding=False):
        """The learned queries after the Q-Former, reading the image: (B, Q, Dq) (an array, as
        5.23 returns it)."""
        if pixel_values is None:
            raise InputError("get_qformer_features needs pixel_values")
        image = self._image(pixel_values, False, interpolate_pos_encoding)[0]
        return self._queries_read(image)

    def get_text_features(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=True,
    ):
        """Text alone: OPT's decoder (after its final LayerNorm) or T5's encoder ->
        last_hidden_state (B, T, Dl), hidden_states, attentions. decoder_input_ids,
        decoder_attention_mask and labels are accepted and unused, as in 5.23."""
        if input_ids is None:
            raise InputError("get_text_features needs input_ids")
        cfg, p = self.config.text_config, self.params["language_model"]
        ids = token_ids(input_ids, cfg.vocab_size)
        mask = mask_like(attention_mask, ids)
        want_a = bool(output_attentions)
        with scope("language_model"):
            if is_decoder_only(self.config):
                opt = language_module(self.config)
                x = opt.embed_tokens(ids, p, cfg)
                out = opt.opt_forward(p, cfg, x, mask, output_attentions=want_a)
            else:
                t5 = language_module(self.config)
                x = t5.embed_tokens(ids, p, cfg)
                out = t5.t5_encoder(p, cfg, x, mask, output_attentions=want_a)
        result = ModelOutput(
            last_hidden_state=out["last_hidden_state"],
            hidden_states=select_hidden_states(out["hidden_states"], output_hidden_states),
            attentions=tuple(out["attentions"]) if want_a else None,
        )
        return result if return_dict else result.to_tuple()


def blip2_output(return_dict, **fields):
    """Blip2ForConditionalGenerationModelOutput; its to_tuple turns the nested outputs into
    tuples too (as transformers' override does)."""
    out = ModelOutput(**fields)
    if return_dict:
        return out
    return tuple(v.to_tuple() if isinstance(v, ModelOutput) else v for v in out.to_tuple())
