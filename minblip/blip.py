"""BLIP model classes: the towers composed, with transformers' call signatures and field names."""

import numpy as np

from .config import BlipConfig, BlipTextConfig, BlipVisionConfig
from .errors import CheckpointError, ConfigError, InputError
from .generate import generate
from .modeling import PreTrainedModel, as_pixel_values, select_hidden_states
from .outputs import ModelOutput
from .text_bert import cross_kv, lm_forward, lm_loss, lm_shapes, text_model, text_shapes
from .trace import scope, tap
from .vision import vision_model, vision_shapes


class BlipVisionModel(PreTrainedModel):
    """transformers.BlipVisionModel: (B, 3, S, S) pixels -> (B, N, Dv) features + pooled (B, Dv).

    Loads a blip_vision_model checkpoint, or the vision_model.* part of any BLIP checkpoint.
    """

    config_types = (BlipVisionConfig,)
    prefix = "vision_model"

    @classmethod
    def expected_shapes(cls, config):
        return vision_shapes(config)

    def __call__(
        self,
        pixel_values=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=True,
        interpolate_pos_encoding=False,
    ):
        if pixel_values is None:
            raise InputError("You have to specify pixel_values")
        x = as_pixel_values(pixel_values, self.dtype)
        if min(x.shape[2:]) < self.config.patch_size:
            raise InputError(
                f"pixel_values of {x.shape[2]}x{x.shape[3]} are smaller than one "
                f"{self.config.patch_size}-pixel patch"
            )
        want_h = (
            self.config.output_hidden_states
            if output_hidden_states is None
            else output_hidden_states
        )
        want_a = self.config.output_attentions if output_attentions is None else output_attentions
        last, pooled, hidden, attn = vision_model(
            x, self.params, self.config, interpolate_pos_encoding, want_a
        )
        out = ModelOutput(
            last_hidden_state=last,
            pooler_output=pooled,
            hidden_states=select_hidden_states(hidden, want_h),
            attentions=tuple(attn) if want_a else None,
        )
        return out if return_dict else out.to_tuple()

    forward = __call__


# ----------------------------------------------------------------------------- captioning


def _token_ids(input_ids, vocab_size, name="input_ids"):
    """A (B, T) integer array of ids in [0, V), copied (callers' arrays are never written)."""
    ids = np.array(input_ids)
    if ids.dtype.kind not in "iu" or ids.ndim != 2:
        raise InputError(
            f"{name} must be a 2-D integer array (batch, tokens), got {ids.dtype} {ids.shape}"
        )
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise InputError(
            f"{name} holds ids outside the vocabulary [0, {vocab_size}): {ids.min()}..{ids.max()}"
        )
    return ids.astype(np.int64)


def _mask_like(attention_mask, like, name="attention_mask", like_name="input_ids"):
    """attention_mask as int64, checked to have the shape of `like` (an array or a shape)."""
    if attention_mask is None:
        return None
    mask = np.asarray(attention_mask)
    shape = tuple(getattr(like, "shape", like))
    if mask.shape != shape:
        raise InputError(f"{name} has shape {mask.shape}, {like_name} has {shape}")
    return mask.astype(np.int64)


def paired_batch(n_text, n_image, what="texts"):
    """The batch of texts read against images through cross-attention. transformers passes the
    two batches to torch as they are, and torch broadcasts them: equal, or either one is 1 (one
    image for every text, one text for every image). Anything else is refused."""
    if n_text == n_image or 1 in (n_text, n_image):
        return max(n_text, n_image)
    raise InputError(
        f"{n_text} {what} for {n_image} images: pass one per image, one image for all of them, "
        f"or one for all images"
    )


def generate_pairing(n_prompts, n_images, generate_kwargs, images="images"):
    """generate's rule for prompt and image batches: transformers copies both for beams and
    returned sequences, after which torch can no longer broadcast them, so one image serves
    several prompts only when nothing is copied (greedy, or sampling with one sequence each);
    otherwise there is one prompt per image."""
    copies = max(
        generate_kwargs.get("num_beams") or 1, generate_kwargs.get("num_return_sequences") or 1
    )
    if n_prompts != n_images and not (n_images == 1 and copies == 1):
        raise InputError(
            f"input_ids has {n_prompts} prompts for {n_images} {images}: pass one per image "
            "(one image serves several prompts only in greedy or sampled generation with "
            "num_return_sequences=1, as in transformers)"
        )


def _check_lm_head(p, tied, where=""):
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


class BlipForConditionalGeneration(PreTrainedModel):
    """transformers.BlipForConditionalGeneration: image -> caption.

    pixels -> vision_model (B, N, Dv) -> text_decoder (BERT decoder cross-attending to them) ->
    logits (B, T, V). generate() decodes from [DEC] (+ an optional prompt) until [SEP].
    """

    config_types = (BlipConfig,)

    @classmethod
    def sub_config(cls, config, folder):
        if not isinstance(config, BlipConfig):
            raise ConfigError(
                f"{folder}/config.json: model_type {config.model_type!r} is not a BLIP "
                "captioning model"
            )
        return config

    @classmethod
    def expected_shapes(cls, config):
        shapes = {f"vision_model.{k}": s for k, s in vision_shapes(config.vision_config).items()}
        shapes.update(lm_shapes(config.text_config, "text_decoder.")[0])
        return shapes

    @classmethod
    def optional_keys(cls, config):
        return lm_shapes(config.text_config, "text_decoder.")[1]

    def __init__(self, config, params, name_or_path=None):
        super().__init__(config, params, name_or_path)
        # tied when either config says so (transformers gathers the ties of the model and its parts)
        tied = config.tie_word_embeddings or config.text_config.tie_word_embeddings
        _check_lm_head(params["text_decoder"], tied, "text_decoder.")

    def _vision(self, pixel_values, interpolate_pos_encoding, output_attentions=False):
        x = as_pixel_values(pixel_values, self.dtype)
        P = self.config.vision_config.patch_size
        if min(x.shape[2:]) < P:
            raise InputError(
                f"pixel_values of {x.shape[2]}x{x.shape[3]} are smaller than one {P}-pixel patch"
            )
        with scope("vision_model"):
            out = vision_model(
                x,
                self.params["vision_model"],
                self.config.vision_config,
                interpolate_pos_encoding,
                output_attentions,
            )
        tap("vision_model", out[0])
        return out

    def __call__(
        self,
        pixel_values=None,
        input_ids=None,
        attention_mask=None,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=True,
        interpolate_pos_encoding=False,
    ):
        """Mirrors BlipForConditionalGeneration.forward: input_ids are used as given (no [DEC])."""
        if pixel_values is None or input_ids is None:
            raise InputError("BlipForConditionalGeneration needs pixel_values and input_ids")
        tcfg = self.config.text_config
        ids = _token_ids(input_ids, tcfg.vocab_size)
        mask = _mask_like(attention_mask, ids)
        want_h = (
            self.config.vision_config.output_hidden_states
            if output_hidden_states is None
            else output_hidden_states
        )
        want_a = (
            self.config.vision_config.output_attentions
            if output_attentions is None
            else output_attentions
        )
        image_embeds, _, hidden, attn = self._vision(pixel_values, interpolate_pos_encoding, want_a)
        paired_batch(ids.shape[0], image_embeds.shape[0])  # one image may serve many texts
        with scope("text_decoder"):
            logits, _ = lm_forward(
                ids,
                self.params["text_decoder"],
                tcfg,
                attention_mask=mask,
                encoder_hidden_states=image_embeds,
            )
        loss = None
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != logits.shape[:2]:
                raise InputError(
                    f"labels have shape {labels.shape}, the logits {logits.shape[:2]} "
                    f"(texts x tokens, after pairing {ids.shape[0]} texts with "
                    f"{image_embeds.shape[0]} images)"
                )
            loss = lm_loss(logits, labels, tcfg.label_smoothing)
        tap("text_decoder", logits if loss is None else loss)  # its output's first field
        out = ModelOutput(
            loss=loss,
            logits=logits,
            image_embeds=image_embeds,
            last_hidden_state=image_embeds,
            hidden_states=select_hidden_states(hidden, want_h),
            attentions=tuple(attn) if want_a else None,
        )
        return out if return_dict else out.to_tuple()

    forward = __call__

    def generate(
        self,
        pixel_values=None,
        input_ids=None,
        attention_mask=None,
        interpolate_pos_encoding=False,
        **generate_kwargs,
    ):
        """Mirrors BlipForConditionalGeneration.generate -> int64 ids (B * n_return, L).

        Decodes from [DEC] + prompt (see decoder_prompt) until [SEP] (sep_token_id); finished
        rows are filled with pad. Settings: minblip.generate.generate. input_ids is not modified.
        """
        if pixel_values is None:
            raise InputError("generate needs pixel_values")
        tcfg = self.config.text_config
        image_embeds = self._vision(pixel_values, interpolate_pos_encoding)[0]
        prompt, mask = self.decoder_prompt(input_ids, attention_mask, image_embeds.shape[0])
        generate_pairing(prompt.shape[0], image_embeds.shape[0], generate_kwargs)
        p = self.params["text_decoder"]
        context = {"encoder_kv": cross_kv(image_embeds, p["bert"], tcfg)}  # once per call

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
            tap("text_decoder", logits)
            return logits[:, -1], out  # out: the text model's dict (cache, hidden states, ...)

        return generate(
            step,
            prompt,
            attention_mask=mask,
            context=context,
            eos_token_id=tcfg.sep_token_id,
            pad_token_id=tcfg.pad_token_id,
            max_position_embeddings=tcfg.max_position_embeddings,
            **generate_kwargs,
        )

    def decoder_prompt(self, input_ids, attention_mask, batch):
        """transformers' prompt handling: the first token is replaced by [DEC] (bos) and the last
        column ([SEP] of a processor output) is dropped, the mask sliced alike; without input_ids
        the prompt is [DEC] alone (one per image: batch of them). Returns (prompt (B, P), mask
        (B, P) or None), both copies; how prompts pair with images is generate_pairing's."""
        tcfg = self.config.text_config
        if input_ids is None:  # transformers' placeholder [bos, eos]; its last column is dropped
            ids = np.tile(np.array([[tcfg.bos_token_id, tcfg.eos_token_id]], np.int64), (batch, 1))
        else:
            ids = _token_ids(input_ids, tcfg.vocab_size)
        mask = _mask_like(attention_mask, ids)
        if ids.shape[1] < 2:
            raise InputError(
                "input_ids must hold at least 2 tokens ([CLS] ... [SEP]): the first becomes [DEC] "
                "and the last is dropped"
            )
        ids[:, 0] = tcfg.bos_token_id  # on our copy; transformers writes into the caller's tensor
        prompt, mask = ids[:, :-1], None if mask is None else mask[:, :-1]
        n = tcfg.max_position_embeddings
        if prompt.shape[1] > n:
            raise InputError(
                f"the decoder prompt has {prompt.shape[1]} tokens ([DEC] + {prompt.shape[1] - 1}) "
                f"but the position table has max_position_embeddings={n} rows"
            )
        return prompt, mask


# ----------------------------------------------------------------------------- text tower alone


def _text_inputs(model, input_ids, attention_mask, encoder_hidden_states, generate_kwargs=None):
    """ids, mask and encoder states, checked. The two batches pair as torch broadcasts them
    (paired_batch), or in generate (generate_kwargs given) by generate_pairing's rule."""
    cfg = model.config
    if input_ids is None:
        raise InputError(f"{type(model).__name__} needs input_ids")
    ids = _token_ids(input_ids, cfg.vocab_size)
    enc = None
    if encoder_hidden_states is not None:
        enc = np.asarray(encoder_hidden_states).astype(model.dtype, copy=False)
        if enc.ndim != 3 or enc.shape[2] != cfg.encoder_hidden_size:
            raise InputError(
                f"encoder_hidden_states must be (batch, tokens, encoder_hidden_size "
                f"{cfg.encoder_hidden_size}), got {enc.shape}"
            )
        if generate_kwargs is None:
            paired_batch(ids.shape[0], enc.shape[0], "texts")
        else:
            generate_pairing(ids.shape[0], enc.shape[0], generate_kwargs, "encoder states")
    return ids, _mask_like(attention_mask, ids), enc


class BlipTextModel(PreTrainedModel):
    """transformers.BlipTextModel (with its pooler) from a blip_text_model checkpoint.

    Encoder mode (is_decoder=False, the default) attends both ways; decoder mode is causal and
    returns its KV cache as past_key_values ([(K, V)] per layer, (B, H, T, Dh)).
    """

    config_types = (BlipTextConfig,)

    @classmethod
    def expected_shapes(cls, config):
        return text_shapes(config, pooler=True)

    def __call__(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        is_decoder=False,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=True,
    ):
        ids, mask, enc = _text_inputs(self, input_ids, attention_mask, encoder_hidden_states)
        out = text_model(
            ids,
            self.params,
            self.config,
            attention_mask=mask,
            position_ids=position_ids,
            encoder_hidden_states=enc,
            encoder_attention_mask=encoder_attention_mask,
            is_decoder=is_decoder,
            pooler=True,
        )
        return _text_output(self.config, out, output_attentions, output_hidden_states, return_dict)

    forward = __call__


def _text_output(cfg, out, output_attentions, output_hidden_states, return_dict, head=None):
    """transformers' BaseModelOutputWithPoolingAndCrossAttentions, or with head = {loss, logits}
    its CausalLMOutputWithCrossAttentions (the two order their fields differently)."""
    want_h = cfg.output_hidden_states if output_hidden_states is None else output_hidden_states
    want_a = cfg.output_attentions if output_attentions is None else output_attentions
    crossed = out["cross_attentions"][0] is not None
    hidden = select_hidden_states(out["hidden_states"], want_h)
    if head is None:
        fields = {
            "last_hidden_state": out["last_hidden_state"],
            "pooler_output": out["pooler_output"],
            "hidden_states": hidden,
            "past_key_values": out["cache"],
        }
    else:
        fields = {**head, "past_key_values": out["cache"], "hidden_states": hidden}
    result = ModelOutput(
        **fields,
        attentions=tuple(out["attentions"]) if want_a else None,
        cross_attentions=tuple(out["cross_attentions"]) if want_a and crossed else None,
    )
    return result if return_dict else result.to_tuple()


class BlipTextLMHeadModel(PreTrainedModel):
    """transformers.BlipTextLMHeadModel (bert + cls) from a blip_text_model checkpoint."""

    config_types = (BlipTextConfig,)

    def __init__(self, config, params, name_or_path=None):
        super().__init__(config, params, name_or_path)
        _check_lm_head(params, config.tie_word_embeddings)

    @classmethod
    def expected_shapes(cls, config):
        return lm_shapes(config)[0]

    @classmethod
    def optional_keys(cls, config):
        return lm_shapes(config)[1]

    def __call__(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        labels=None,
        return_logits=False,
        is_decoder=True,
        reduction="mean",
        output_attentions=None,
        output_hidden_states=None,
        return_dict=True,
    ):
        ids, mask, enc = _text_inputs(self, input_ids, attention_mask, encoder_hidden_states)
        if reduction not in ("mean", "none"):
            raise InputError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        logits, out = lm_forward(
            ids,
            self.params,
            self.config,
            attention_mask=mask,
            position_ids=position_ids,
            encoder_hidden_states=enc,
            encoder_attention_mask=encoder_attention_mask,
            is_decoder=is_decoder,
        )
        if return_logits:  # transformers returns the shifted logits alone
            return logits[:, :-1]
        loss = None
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != logits.shape[:2]:
                raise InputError(
                    f"labels have shape {labels.shape}, the logits {logits.shape[:2]} "
                    f"(texts x tokens, after pairing with encoder_hidden_states)"
                )
            loss = lm_loss(logits, labels, self.config.label_smoothing, reduction)
        head = {"loss": loss, "logits": logits}
        return _text_output(
            self.config, out, output_attentions, output_hidden_states, return_dict, head
        )

    forward = __call__

    def generate(
        self,
        input_ids=None,
        attention_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        eos_token_id=None,
        pad_token_id=None,
        **generate_kwargs,
    ):
        """transformers' GenerationMixin.generate for this decoder: continue input_ids, attending
        to encoder_hidden_states. eos / pad default to the config's (eos_token_id, pad_token_id).
        encoder_attention_mask is accepted and, as in transformers 5.23, has no effect."""
        ids, mask, enc = _text_inputs(
            self, input_ids, attention_mask, encoder_hidden_states, generate_kwargs
        )
        cfg, p = self.config, self.params
        context = {"encoder_kv": None if enc is None else cross_kv(enc, p["bert"], cfg)}

        def step(input_ids, position_ids, attention_mask, past, context):
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
            return logits[:, -1], out  # out: the text model's dict (cache, hidden states, ...)

        return generate(
            step,
            ids,
            attention_mask=mask,
            context=context,
            eos_token_id=cfg.eos_token_id if eos_token_id is None else eos_token_id,
            pad_token_id=cfg.pad_token_id if pad_token_id is None else pad_token_id,
            max_position_embeddings=cfg.max_position_embeddings,
            **generate_kwargs,
        )
