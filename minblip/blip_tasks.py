"""BLIP's other task models: contrastive features (BlipModel), image-text retrieval (ITM, ITC)
and visual question answering, composed from the vision tower and the BERT text tower.

    BlipModel                  pooled image . pooled text, both projected and L2-normalised
    BlipForImageTextRetrieval  ITM: text cross-attends to the image -> itm_head([CLS]) -> 2 logits
                               ITC: cosine of vision_proj(image [CLS]) and text_proj(text [CLS])
    BlipForQuestionAnswering   question encoded against the image; an answer decoded from [DEC]
                               cross-attending to the question's encoding
"""

import numpy as np

from .blip import BlipForConditionalGeneration, _mask_like, _token_ids, paired_batch
from .config import BlipConfig
from .errors import ConfigError, InputError
from .generate import generate
from .modeling import PreTrainedModel, select_hidden_states
from .ops import linear, normalize
from .outputs import ModelOutput
from .text_bert import cross_kv, lm_forward, lm_loss, lm_shapes, text_model, text_shapes
from .trace import scope, tap
from .vision import vision_shapes


class _BlipTask(PreTrainedModel):
    """What the three share: a BlipConfig, the vision tower, a text tower under `text_prefix`."""

    config_types = (BlipConfig,)
    _vision = BlipForConditionalGeneration._vision  # the same vision step as captioning

    @classmethod
    def sub_config(cls, config, folder):
        if not isinstance(config, BlipConfig):
            raise ConfigError(
                f"{folder}/config.json: model_type {config.model_type!r} is not a BLIP model"
            )
        return config

    def _flags(self, output_hidden_states, output_attentions):
        v = self.config.vision_config
        want_h = v.output_hidden_states if output_hidden_states is None else output_hidden_states
        want_a = v.output_attentions if output_attentions is None else output_attentions
        return want_h, want_a

    def _text(self, name, input_ids, attention_mask, **kw):
        """Run the BERT tower stored under `name` (encoder mode) and tap its output."""
        tcfg = self.config.text_config
        ids = _token_ids(input_ids, tcfg.vocab_size)
        mask = _mask_like(attention_mask, ids)
        with scope(name):
            out = text_model(ids, self.params[name], tcfg, attention_mask=mask, **kw)
        tap(name, out["last_hidden_state"])
        return out


def _vision_keys(config):
    return {f"vision_model.{k}": s for k, s in vision_shapes(config.vision_config).items()}


def _cross_entropy_diagonal(logits):
    """Mean cross-entropy of row i against class i (torch cross_entropy with arange targets)."""
    shifted = logits - logits.max(-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return -np.mean(logp[np.arange(len(logits)), np.arange(len(logits))])


class BlipModel(_BlipTask):
    """transformers.BlipModel: contrastive image and text features (CLIP-style).

    No public Salesforce checkpoint holds its text tower or projections: it loads checkpoints
    that do (e.g. saved by transformers' BlipModel), and refuses others by naming what is missing.
    """

    @classmethod
    def expected_shapes(cls, config):
        t, v, P = config.text_config, config.vision_config, config.projection_dim
        shapes = _vision_keys(config)
        shapes.update(text_shapes(t, pooler=True, prefix="text_model."))
        shapes.update(
            {
                "visual_projection.weight": (P, v.hidden_size),
                "text_projection.weight": (P, t.hidden_size),
                "logit_scale": (),
            }
        )
        return shapes

    def _image_tower(self, pixel_values, interpolate_pos_encoding, want_h, want_a):
        last, pooled, hidden, attn = self._vision(pixel_values, interpolate_pos_encoding, want_a)
        return ModelOutput(
            last_hidden_state=last,
            pooler_output=pooled,
            hidden_states=select_hidden_states(hidden, want_h),
            attentions=tuple(attn) if want_a else None,
        )

    def _text_tower(self, input_ids, attention_mask, position_ids, want_h, want_a):
        out = self._text(
            "text_model", input_ids, attention_mask, position_ids=position_ids, pooler=True
        )
        return ModelOutput(
            last_hidden_state=out["last_hidden_state"],
            pooler_output=out["pooler_output"],
            hidden_states=select_hidden_states(out["hidden_states"], want_h),
            attentions=tuple(out["attentions"]) if want_a else None,
        )

    def get_text_features(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        output_hidden_states=None,
        output_attentions=None,
    ):
        """Text features (B, P) = text_projection(pooler_output), returned in the pooler_output
        field of the text model's output, as 5.23 does."""
        out = self._text_tower(
            input_ids, attention_mask, position_ids, output_hidden_states, output_attentions
        )
        return ModelOutput(
            **{**out, "pooler_output": linear(out.pooler_output, self.params["text_projection"])}
        )

    def get_image_features(
        self,
        pixel_values=None,
        interpolate_pos_encoding=False,
        output_hidden_states=None,
        output_attentions=None,
    ):
        """Image features (B, P) = visual_projection(pooler_output) (the doubly normed [CLS])."""
        want_h, want_a = self._flags(output_hidden_states, output_attentions)
        out = self._image_tower(pixel_values, interpolate_pos_encoding, want_h, want_a)
        return ModelOutput(
            **{**out, "pooler_output": linear(out.pooler_output, self.params["visual_projection"])}
        )

    def get_multimodal_features(
        self, input_ids=None, pixel_values=None, attention_mask=None, interpolate_pos_encoding=False
    ):
        """Text encoded against the image (all image tokens visible), pooled, projected: (B, P)."""
        image_embeds = self._vision(pixel_values, interpolate_pos_encoding)[0]
        if input_ids is None:
            raise InputError("get_multimodal_features needs input_ids and pixel_values")
        paired_batch(np.shape(input_ids)[0], image_embeds.shape[0])
        out = self._text(
            "text_model", input_ids, attention_mask, pooler=True, encoder_hidden_states=image_embeds
        )
        return linear(out["pooler_output"], self.params["text_projection"])

    def __call__(
        self,
        input_ids=None,
        pixel_values=None,
        attention_mask=None,
        position_ids=None,
        return_loss=None,
        interpolate_pos_encoding=False,
        output_hidden_states=None,
        output_attentions=None,
        return_dict=True,
    ):
        """Mirrors BlipModel.forward: logits_per_text (Bt, Bi) = cos(text, image) e^logit_scale."""
        if input_ids is None or pixel_values is None:
            raise InputError("BlipModel needs input_ids and pixel_values")
        want_h, want_a = self._flags(output_hidden_states, output_attentions)
        vision_out = self._image_tower(pixel_values, interpolate_pos_encoding, want_h, want_a)
        text_out = self._text_tower(input_ids, attention_mask, position_ids, want_h, want_a)
        image_embeds = linear(vision_out.pooler_output, self.params["visual_projection"])
        text_embeds = linear(text_out.pooler_output, self.params["text_projection"])
        image_embeds = image_embeds / np.linalg.norm(
            image_embeds, axis=-1, keepdims=True
        )  # no eps, as 5.23
        text_embeds = text_embeds / np.linalg.norm(text_embeds, axis=-1, keepdims=True)
        logits_per_text = (
            text_embeds @ image_embeds.T * np.exp(self.params["logit_scale"])
        )  # (Bt, Bi)
        loss = None
        if return_loss:  # symmetric InfoNCE: text i belongs to image i
            if logits_per_text.shape[0] != logits_per_text.shape[1]:
                raise InputError(
                    f"return_loss needs as many texts as images, got {logits_per_text.shape}"
                )
            loss = (
                _cross_entropy_diagonal(logits_per_text)
                + _cross_entropy_diagonal(logits_per_text.T)
            ) / 2
        out = ModelOutput(
            loss=None if loss is None else np.asarray(loss, logits_per_text.dtype),
            logits_per_image=logits_per_text.T,
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            # return_dict=False: the towers' outputs are tuples too, as transformers builds them
            text_model_output=text_out if return_dict else text_out.to_tuple(),
            vision_model_output=vision_out if return_dict else vision_out.to_tuple(),
        )
        return out if return_dict else out.to_tuple()

    forward = __call__


class BlipForImageTextRetrieval(_BlipTask):
    """transformers.BlipForImageTextRetrieval (blip-itm-base-coco).

    use_itm_head=True: image-text matching, text b read against image b -> itm_score (B, 2)
    logits, column 1 = "match". use_itm_head=False: contrastive similarity -> itm_score (Bi, Bt),
    the cosine of every image with every text (no temperature).
    """

    @classmethod
    def expected_shapes(cls, config):
        t, v, E = config.text_config, config.vision_config, config.image_text_hidden_size
        shapes = _vision_keys(config)
        shapes.update(text_shapes(t, prefix="text_encoder."))
        shapes.update(
            {
                "vision_proj.weight": (E, v.hidden_size),
                "vision_proj.bias": (E,),
                "text_proj.weight": (E, t.hidden_size),
                "text_proj.bias": (E,),
                "itm_head.weight": (2, t.hidden_size),
                "itm_head.bias": (2,),
            }
        )
        return shapes

    def __call__(
        self,
        input_ids=None,
        pixel_values=None,
        use_itm_head=True,
        attention_mask=None,
        interpolate_pos_encoding=False,
        output_hidden_states=None,
        output_attentions=None,
        return_dict=True,
    ):
        if input_ids is None or pixel_values is None:
            raise InputError("BlipForImageTextRetrieval needs input_ids and pixel_values")
        want_h, want_a = self._flags(output_hidden_states, output_attentions)
        image_embeds, _, hidden, attn = self._vision(pixel_values, interpolate_pos_encoding, want_a)
        if use_itm_head:
            # text b against image b, or one image against every text (one text against every
            # image): torch broadcasts the batches, as transformers passes them
            paired_batch(np.shape(input_ids)[0], image_embeds.shape[0])
            # every image token visible: transformers' image mask is all ones
            text = self._text(
                "text_encoder", input_ids, attention_mask, encoder_hidden_states=image_embeds
            )
            score = linear(text["last_hidden_state"][:, 0], self.params["itm_head"])  # (B, 2)
        else:
            text = self._text("text_encoder", input_ids, attention_mask)  # text only
            image_feat = normalize(
                linear(image_embeds[:, 0], self.params["vision_proj"])
            )  # (Bi, E)
            text_feat = normalize(
                linear(text["last_hidden_state"][:, 0], self.params["text_proj"])
            )  # (Bt, E)
            score = image_feat @ text_feat.T  # (Bi, Bt)
        out = ModelOutput(
            itm_score=score,
            last_hidden_state=image_embeds,
            hidden_states=select_hidden_states(hidden, want_h),
            attentions=tuple(attn) if want_a else None,
            question_embeds=text["last_hidden_state"],
        )
        return out if return_dict else out.to_tuple()

    forward = __call__


class BlipForQuestionAnswering(_BlipTask):
    """transformers.BlipForQuestionAnswering (blip-vqa-base).

    The question is encoded bidirectionally against the image (text_encoder); the answer decoder
    (text_decoder) starts from [DEC] and cross-attends to that encoding.
    """

    @classmethod
    def sub_config(cls, config, folder):
        config = super().sub_config(config, folder)
        dv, dt = config.vision_config.hidden_size, config.text_config.hidden_size
        if (
            dv != dt
        ):  # the decoder's cross-attention is built for the vision width (encoder_hidden_size)
            raise ConfigError(
                f"{folder}/config.json: BlipForQuestionAnswering needs vision_config.hidden_size "
                f"({dv}) == text_config.hidden_size ({dt}): the answer decoder reads the question "
                "encoding through key/value projections sized for the vision width"
            )
        return config

    @classmethod
    def expected_shapes(cls, config):
        shapes = _vision_keys(config)
        shapes.update(text_shapes(config.text_config, prefix="text_encoder."))
        shapes.update(lm_shapes(config.text_config, "text_decoder.")[0])
        return shapes

    @classmethod
    def optional_keys(cls, config):
        return lm_shapes(config.text_config, "text_decoder.")[1]

    def _question(
        self, input_ids, pixel_values, attention_mask, interpolate_pos_encoding, want_a=False
    ):
        vision = self._vision(pixel_values, interpolate_pos_encoding, want_a)
        paired_batch(np.shape(input_ids)[0], vision[0].shape[0], "questions")
        q = self._text("text_encoder", input_ids, attention_mask, encoder_hidden_states=vision[0])
        return vision, q["last_hidden_state"]

    def __call__(
        self,
        input_ids=None,
        pixel_values=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        attention_mask=None,
        labels=None,
        interpolate_pos_encoding=False,
        output_hidden_states=None,
        output_attentions=None,
        return_dict=True,
    ):
        """Mirrors BlipForQuestionAnswering.forward: returns loss (with labels) and the vision
        outputs; like transformers, not the answer logits."""
        if labels is None and decoder_input_ids is None:
            raise InputError(
                "pass labels (training) or decoder_input_ids, or call generate() to answer"
            )
        tcfg = self.config.text_config
        want_h, want_a = self._flags(output_hidden_states, output_attentions)
        (image_embeds, _, hidden, attn), question = self._question(
            input_ids, pixel_values, attention_mask, interpolate_pos_encoding, want_a
        )
        if decoder_input_ids is None:
            decoder_input_ids = labels  # used as given: no shift here (the loss shifts)
        ids = _token_ids(decoder_input_ids, tcfg.vocab_size, "decoder_input_ids")
        with scope("text_decoder"):
            logits, _ = lm_forward(
                ids,
                self.params["text_decoder"],
                tcfg,
                attention_mask=_mask_like(decoder_attention_mask, ids, "decoder_attention_mask"),
                encoder_hidden_states=question,
                encoder_attention_mask=attention_mask,  # the question's mask (generate: ones)
            )
        loss = None
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != logits.shape[:2]:  # the decoder pairs answers with questions
                raise InputError(
                    f"labels have shape {labels.shape}, the answer logits {logits.shape[:2]} "
                    f"(answers x tokens, after pairing {ids.shape[0]} answers with "
                    f"{question.shape[0]} encoded questions)"
                )
            loss = lm_loss(logits, labels, tcfg.label_smoothing)
        tap("text_decoder", logits if loss is None else loss)
        out = ModelOutput(
            loss=loss,
            image_embeds=image_embeds,
            last_hidden_state=image_embeds,
            hidden_states=select_hidden_states(hidden, want_h),
            attentions=tuple(attn) if want_a else None,
        )
        return out if return_dict else out.to_tuple()

    forward = __call__

    def generate(
        self,
        input_ids=None,
        pixel_values=None,
        attention_mask=None,
        interpolate_pos_encoding=False,
        **generate_kwargs,
    ):
        """Mirrors BlipForQuestionAnswering.generate -> answer ids (B * n_return, L) from [DEC]."""
        if input_ids is None or pixel_values is None:
            raise InputError("generate needs input_ids (the question) and pixel_values")
        tcfg = self.config.text_config
        _, question = self._question(
            input_ids, pixel_values, attention_mask, interpolate_pos_encoding
        )
        p = self.params["text_decoder"]
        # transformers passes an all-ones mask here: the question's padding is NOT masked
        context = {"encoder_kv": cross_kv(question, p["bert"], tcfg)}
        bos = np.full((question.shape[0], 1), tcfg.bos_token_id, np.int64)

        def step(input_ids, position_ids, attention_mask, past, context):
            with scope("text_decoder"):
                logits, out = lm_forward(
                    input_ids,
                    p,
                    tcfg,
                    last_only=True,
                    attention_mask=attention_mask,
                    position_ids=position_ids,
                    cache=past,
                    encoder_kv=context["encoder_kv"],
                )
            return logits[:, -1], out  # out: the text model's dict (cache, hidden states, ...)

        return generate(
            step,
            bos,
            context=context,
            eos_token_id=tcfg.sep_token_id,
            pad_token_id=tcfg.pad_token_id,
            max_position_embeddings=tcfg.max_position_embeddings,
            **generate_kwargs,
        )
