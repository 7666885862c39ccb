"""BLIP's other task models: contrastive features (BlipModel), image-text retrieval (ITM, ITC)
and visual question answering, composed from the vision tower and the BERT text tower.

    BlipModel                  pooled image . pooled text, both projected and L2-normalised
    BlipForImageTextRetrieval  ITM: text cross-attends to the image -> itm_head([CLS]) -> 2 logits
                               ITC: cosine of vision_proj(image [CLS]) and text_proj(text [CLS])
    BlipForQuestionAnswering   question encoded against the image; an answer decoded from [DEC]
                               cross-attending to the question's encoding
"""

import numpy as np

from .blip import BlipPreTrainedModel, decode, fixed_stop_ids, text_decoder
from .errors import ConfigError, InputError
from .modeling import mask_like, paired_batch, require, token_ids, tower_fields, tower_output
from .ops import linear, log_softmax, normalize
from .outputs import (
    BlipImageTextMatchingModelOutput,
    BlipOutput,
    BlipTextVisionModelOutput,
    returned,
)
from .text_bert import lm_shapes, text_model, text_shapes
from .trace import scope, tap
from .vision import vision_shapes


class _BlipTask(BlipPreTrainedModel):
    """What the three share: BLIP's vision step, and a text tower under a checkpoint prefix."""

    def _text(self, name, input_ids, attention_mask, **kw):
        """Run the BERT tower stored under `name` (encoder mode) and tap its output."""
        tcfg = self.config.text_config
        ids = token_ids(input_ids, tcfg.vocab_size)
        mask = mask_like(attention_mask, ids)
        with scope(name):
            out = text_model(ids, self.params[name], tcfg, attention_mask=mask, **kw)
        tap(name, out["last_hidden_state"])
        return out


def _vision_keys(config):
    return {f"vision_model.{k}": s for k, s in vision_shapes(config.vision_config).items()}


def _cross_entropy_diagonal(logits):
    """Mean cross-entropy of row i against class i (torch cross_entropy with arange targets)."""
    n = np.arange(len(logits))
    return -np.mean(log_softmax(logits)[n, n])


class BlipModel(_BlipTask):
    """transformers.BlipModel: contrastive image and text features (CLIP-style).

    No public Salesforce checkpoint holds its text tower or projections: it loads checkpoints
    that do (e.g. saved by transformers' BlipModel), and refuses others by naming what is missing.
    """

    @classmethod
    def expected_shapes(cls, config):
        t, v, E = config.text_config, config.vision_config, config.projection_dim
        shapes = _vision_keys(config)
        shapes.update(text_shapes(t, pooler=True, prefix="text_model."))
        shapes.update(
            {
                "visual_projection.weight": (E, v.hidden_size),
                "text_projection.weight": (E, t.hidden_size),
                "logit_scale": (),
            }
        )
        return shapes

    def _image_tower(self, pixel_values, interpolate_pos_encoding, want_h, want_a):
        last, pooled, hidden, attn = self.vision_outputs(
            pixel_values, interpolate_pos_encoding, want_a
        )
        return tower_output(last, pooled, hidden, attn, want_h, want_a)

    def _text_tower(self, input_ids, attention_mask, position_ids, want_h, want_a):
        out = self._text(
            "text_model", input_ids, attention_mask, position_ids=position_ids, pooler=True
        )
        last, pooled = out["last_hidden_state"], out["pooler_output"]
        return tower_output(last, pooled, out["hidden_states"], out["attentions"], want_h, want_a)

    def get_text_features(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        output_hidden_states=None,
        output_attentions=None,
    ):
        """Text features (B, E) = text_projection(pooler_output), returned in the pooler_output
        field of the text model's output, as 5.23 does."""
        out = self._text_tower(
            input_ids, attention_mask, position_ids, output_hidden_states, output_attentions
        )
        return out.replace(pooler_output=linear(out.pooler_output, self.params["text_projection"]))

    def get_image_features(
        self,
        pixel_values=None,
        interpolate_pos_encoding=False,
        output_hidden_states=None,
        output_attentions=None,
    ):
        """Image features (B, E) = visual_projection(pooler_output) (the doubly normed [CLS])."""
        want_h, want_a = self.output_flags(output_hidden_states, output_attentions)
        out = self._image_tower(pixel_values, interpolate_pos_encoding, want_h, want_a)
        W = self.params["visual_projection"]
        return out.replace(pooler_output=linear(out.pooler_output, W))

    def get_multimodal_features(
        self, input_ids=None, pixel_values=None, attention_mask=None, interpolate_pos_encoding=False
    ):
        """Text encoded against the image (all image tokens visible), pooled, projected: (B, E)."""
        image = self.vision_outputs(pixel_values, interpolate_pos_encoding)[0]
        require("get_multimodal_features", input_ids=input_ids, pixel_values=pixel_values)
        paired_batch(np.shape(input_ids)[0], image.shape[0])
        out = self._text(
            "text_model", input_ids, attention_mask, pooler=True, encoder_hidden_states=image
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
        require("BlipModel", input_ids=input_ids, pixel_values=pixel_values)
        want_h, want_a = self.output_flags(output_hidden_states, output_attentions)
        vision_out = self._image_tower(pixel_values, interpolate_pos_encoding, want_h, want_a)
        text_out = self._text_tower(input_ids, attention_mask, position_ids, want_h, want_a)
        image_embeds = linear(vision_out.pooler_output, self.params["visual_projection"])
        text_embeds = linear(text_out.pooler_output, self.params["text_projection"])
        # divided by the norm with no eps, as 5.23 writes it (ops.normalize clamps at 1e-12)
        image_embeds = image_embeds / np.linalg.norm(image_embeds, axis=-1, keepdims=True)
        text_embeds = text_embeds / np.linalg.norm(text_embeds, axis=-1, keepdims=True)
        scale = np.exp(self.params["logit_scale"])
        logits_per_text = text_embeds @ image_embeds.T * scale  # (Bt, Bi)
        out = BlipOutput(
            loss=self._loss(logits_per_text) if return_loss else None,
            logits_per_image=logits_per_text.T,
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=text_out,
            vision_model_output=vision_out,
        )
        return returned(out, return_dict)

    forward = __call__

    @staticmethod
    def _loss(logits_per_text):
        """Symmetric InfoNCE: text i belongs to image i."""
        if logits_per_text.shape[0] != logits_per_text.shape[1]:
            raise InputError(
                f"return_loss needs as many texts as images, got {logits_per_text.shape}"
            )
        loss = (
            _cross_entropy_diagonal(logits_per_text) + _cross_entropy_diagonal(logits_per_text.T)
        ) / 2
        return np.asarray(loss, logits_per_text.dtype)


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
        require("BlipForImageTextRetrieval", input_ids=input_ids, pixel_values=pixel_values)
        want_h, want_a = self.output_flags(output_hidden_states, output_attentions)
        image, _, hidden, attn = self.vision_outputs(pixel_values, interpolate_pos_encoding, want_a)
        if use_itm_head:
            # text b against image b, or one image against every text (one text against every
            # image): torch broadcasts the batches, as transformers passes them
            paired_batch(np.shape(input_ids)[0], image.shape[0])
            # every image token visible: transformers' image mask is all ones
            text = self._text(
                "text_encoder", input_ids, attention_mask, encoder_hidden_states=image
            )
            text = text["last_hidden_state"]
            score = linear(text[:, 0], self.params["itm_head"])  # (B, 2)
        else:
            text = self._text("text_encoder", input_ids, attention_mask)["last_hidden_state"]
            image_feat = normalize(linear(image[:, 0], self.params["vision_proj"]))  # (Bi, E)
            text_feat = normalize(linear(text[:, 0], self.params["text_proj"]))  # (Bt, E)
            score = image_feat @ text_feat.T  # (Bi, Bt)
        fields = tower_fields(image, hidden, attn, want_h, want_a)
        out = BlipImageTextMatchingModelOutput(itm_score=score, question_embeds=text, **fields)
        return returned(out, return_dict)

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
        # the decoder's cross-attention is built for the vision width (encoder_hidden_size)
        if dv != dt:
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
        vision = self.vision_outputs(pixel_values, interpolate_pos_encoding, want_a)
        paired_batch(np.shape(input_ids)[0], vision[0].shape[0], "questions")
        q = self._text("text_encoder", input_ids, attention_mask, encoder_hidden_states=vision[0])
        return vision, q["last_hidden_state"]

    def _answer(self, labels, decoder_input_ids, decoder_attention_mask):
        """The answer ids (B, T) and mask: labels are used as given when there are no
        decoder_input_ids (no shift: the loss shifts)."""
        answer = labels if decoder_input_ids is None else decoder_input_ids
        ids = token_ids(answer, self.config.text_config.vocab_size, "decoder_input_ids")
        return ids, mask_like(decoder_attention_mask, ids, "decoder_attention_mask")

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
        want_h, want_a = self.output_flags(output_hidden_states, output_attentions)
        (image, _, hidden, attn), question = self._question(
            input_ids, pixel_values, attention_mask, interpolate_pos_encoding, want_a
        )
        ids, ids_mask = self._answer(labels, decoder_input_ids, decoder_attention_mask)
        n, m = ids.shape[0], question.shape[0]  # the decoder pairs answers with questions
        pairing = f"answers x tokens, after pairing {n} answers with {m} encoded questions"
        p, what = self.params["text_decoder"], "the answer logits"
        # the question's mask goes to the decoder, and has no effect there (text_bert.text_model)
        _, loss = text_decoder(
            p, tcfg, ids, ids_mask, question, labels, pairing, attention_mask, what
        )
        fields = tower_fields(image, hidden, attn, want_h, want_a)
        out = BlipTextVisionModelOutput(loss=loss, image_embeds=image, **fields)
        return returned(out, return_dict)

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
        fixed_stop_ids(generate_kwargs, "BlipForQuestionAnswering")
        tcfg = self.config.text_config
        _, question = self._question(
            input_ids, pixel_values, attention_mask, interpolate_pos_encoding
        )
        bos = np.full((question.shape[0], 1), tcfg.bos_token_id, np.int64)
        # transformers passes an all-ones mask here: the question's padding is NOT masked
        p, eos, pad = self.params["text_decoder"], tcfg.sep_token_id, tcfg.pad_token_id
        return decode(p, tcfg, bos, None, question, eos, pad, "text_decoder", generate_kwargs)
