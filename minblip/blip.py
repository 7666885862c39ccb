"""BLIP model classes: the towers composed, with transformers' call signatures and field names.

Each __call__ / generate reads as the model: the towers' functions (vision.py, text_bert.py)
composed; checking arguments and assembling outputs is modeling.py's and outputs.py's.
"""

import numpy as np

from .config import BlipConfig, BlipTextConfig, BlipVisionConfig
from .errors import ConfigError, InputError
from .generate import generate
from .modeling import (
    PreTrainedModel,
    as_pixel_values,
    features,
    generate_pairing,
    labels_loss,
    mask_like,
    output_flags,
    paired_batch,
    require,
    select_hidden_states,
    token_ids,
    tower_fields,
    tower_output,
)
from .outputs import (
    BaseModelOutputWithPoolingAndCrossAttentions,
    BlipForConditionalGenerationModelOutput,
    CausalLMOutputWithCrossAttentions,
    returned,
)
from .text_bert import (
    check_lm_head,
    cross_kv,
    lm_forward,
    lm_loss,
    lm_shapes,
    lm_step,
    text_model,
    text_shapes,
)
from .trace import scope, tap
from .vision import vision_model, vision_shapes, vision_tower


class BlipVisionModel(PreTrainedModel):
    """transformers.BlipVisionModel: (B, 3, S, S) pixels -> (B, N, Dv) features + pooled (B, Dv).

    Loads a blip_vision_model checkpoint, or the vision_model.* part of any BLIP checkpoint.
    """

    config_types = (BlipVisionConfig,)
    prefix = "vision_model"

    expected_shapes = staticmethod(vision_shapes)

    def __call__(
        self,
        pixel_values=None,
        interpolate_pos_encoding=False,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=True,
    ):
        if pixel_values is None:
            raise InputError("You have to specify pixel_values")
        x = as_pixel_values(pixel_values, self.dtype, patch_size=self.config.patch_size)
        want_h, want_a = output_flags(self.config, output_hidden_states, output_attentions)
        last, pooled, hidden, attn = vision_model(
            x, self.params, self.config, interpolate_pos_encoding, want_a
        )
        return returned(tower_output(last, pooled, hidden, attn, want_h, want_a), return_dict)

    forward = __call__


class BlipPreTrainedModel(PreTrainedModel):
    """What the BLIP models built from both towers share: a BlipConfig (`config_kind` names it in
    errors) and the vision step, pixels -> vision_model's outputs."""

    config_types = (BlipConfig,)
    config_kind = "BLIP model"

    @classmethod
    def sub_config(cls, config, folder):
        if not isinstance(config, BlipConfig):
            raise ConfigError(
                f"{folder}/config.json: model_type {config.model_type!r} is not a {cls.config_kind}"
            )
        return config

    def vision_outputs(self, pixel_values, interpolate_pos_encoding=False, output_attentions=False):
        """vision_model's (last (B, N, Dv), pooled (B, Dv), hidden states, attentions)."""
        vcfg = self.config.vision_config
        x = as_pixel_values(pixel_values, self.dtype, patch_size=vcfg.patch_size)
        p = self.params["vision_model"]
        return vision_tower(x, p, vcfg, interpolate_pos_encoding, output_attentions)

    def output_flags(self, output_hidden_states, output_attentions):
        """(want hidden states, want attentions), defaulting to the vision config's."""
        return output_flags(self.config.vision_config, output_hidden_states, output_attentions)


def text_decoder(
    p,
    cfg,
    ids,
    mask,
    memory,
    labels,
    pairing,
    memory_mask=None,
    what="the logits",
    logits_to_keep=0,
):
    """The text_decoder part of a BLIP model (params p) on given ids: logits (B, T, V) and the
    loss against labels (B, T) (None without labels). memory (B, N, Dv): what it cross-attends
    to; pairing says how its batch and the ids' paired, for the labels' error message.
    logits_to_keep: the positions the head projects (text_bert.keep_positions)."""
    with scope("text_decoder"):
        logits, _ = lm_forward(
            ids,
            p,
            cfg,
            logits_to_keep=logits_to_keep,
            attention_mask=mask,
            encoder_hidden_states=memory,
            encoder_attention_mask=memory_mask,
        )
    loss_fn = lambda x, y: lm_loss(x, y, cfg.label_smoothing)  # noqa: E731
    loss = labels_loss(labels, logits, loss_fn, pairing, what)
    tap("text_decoder", logits if loss is None else loss)  # its output's first field
    return logits, loss


def fixed_stop_ids(generate_kwargs, owner):
    """BLIP's captioning and VQA generate pass eos_token_id=sep_token_id and pad_token_id to
    their text decoder themselves, so transformers 5.23 refuses either one in **generate_kwargs
    (Python's TypeError "got multiple values for keyword argument"). minblip refuses them too,
    by name, and says where the ids come from."""
    given = [k for k in ("eos_token_id", "pad_token_id") if k in generate_kwargs]
    if given:
        raise InputError(
            f"{owner}.generate takes no {' or '.join(given)}: it always stops at "
            "text_config.sep_token_id and pads with text_config.pad_token_id (transformers 5.23 "
            "refuses them too, with a TypeError); change those in the config to change them"
        )


def decode(p, cfg, prompt, mask, memory, eos_token_id, pad_token_id, name, generate_kwargs):
    """generate() with a BLIP text decoder (params p): memory (B, N, Dv) is what it cross-attends
    to (the image, or VQA's encoded question), its keys/values computed once here.

    Shapes: prompt (B, Tp) -> ids (B * n_return, L)."""
    context = {"encoder_kv": None if memory is None else cross_kv(memory, p["bert"], cfg)}
    return generate(
        lm_step(p, cfg, name),
        prompt,
        attention_mask=mask,
        context=context,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        max_position_embeddings=cfg.max_position_embeddings,
        **generate_kwargs,
    )


# ----------------------------------------------------------------------------- captioning


class BlipForConditionalGeneration(BlipPreTrainedModel):
    """transformers.BlipForConditionalGeneration: image -> caption.

    pixels -> vision_model (B, N, Dv) -> text_decoder (BERT decoder cross-attending to them) ->
    logits (B, T, V). generate() decodes from [DEC] (+ an optional prompt) until [SEP].
    """

    config_kind = "BLIP captioning model"

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
        check_lm_head(params["text_decoder"], tied, "text_decoder.")

    def __call__(
        self,
        pixel_values=None,
        input_ids=None,
        attention_mask=None,
        labels=None,
        interpolate_pos_encoding=False,
        logits_to_keep=0,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=True,
    ):
        """Mirrors BlipForConditionalGeneration.forward: input_ids are used as given (no [DEC]).
        logits_to_keep: the positions the decoder's head projects (text_bert.keep_positions)."""
        require("BlipForConditionalGeneration", pixel_values=pixel_values, input_ids=input_ids)
        tcfg = self.config.text_config
        ids = token_ids(input_ids, tcfg.vocab_size)
        mask = mask_like(attention_mask, ids)
        want_h, want_a = self.output_flags(output_hidden_states, output_attentions)
        image, _, hidden, attn = self.vision_outputs(pixel_values, interpolate_pos_encoding, want_a)
        paired_batch(ids.shape[0], image.shape[0])  # one image may serve many texts
        pairing = f"texts x tokens, after pairing {ids.shape[0]} texts with {image.shape[0]} images"
        p = self.params["text_decoder"]
        logits, loss = text_decoder(
            p, tcfg, ids, mask, image, labels, pairing, logits_to_keep=logits_to_keep
        )
        out = BlipForConditionalGenerationModelOutput(
            loss=loss,
            logits=logits,
            image_embeds=image,
            **tower_fields(image, hidden, attn, want_h, want_a),
        )
        return returned(out, return_dict)

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
        require("generate", pixel_values=pixel_values)
        fixed_stop_ids(generate_kwargs, "BlipForConditionalGeneration")
        tcfg = self.config.text_config
        image = self.vision_outputs(pixel_values, interpolate_pos_encoding)[0]
        prompt, mask = self.decoder_prompt(input_ids, attention_mask, image.shape[0])
        generate_pairing(prompt.shape[0], image.shape[0], generate_kwargs)
        p, eos, pad = self.params["text_decoder"], tcfg.sep_token_id, tcfg.pad_token_id
        return decode(p, tcfg, prompt, mask, image, eos, pad, "text_decoder", generate_kwargs)

    def decoder_prompt(self, input_ids, attention_mask, batch):
        """transformers' prompt handling: the first token is replaced by [DEC] (bos) and the last
        column ([SEP] of a processor output) is dropped, the mask sliced alike; without input_ids
        the prompt is [DEC] alone (one per image: batch of them). Returns (prompt (B, Tp), mask
        (B, Tp) or None), both copies; how prompts pair with images is generate_pairing's."""
        tcfg = self.config.text_config
        if input_ids is None:  # transformers' placeholder [bos, eos]; its last column is dropped
            ids = np.tile(np.array([[tcfg.bos_token_id, tcfg.eos_token_id]], np.int64), (batch, 1))
        else:
            ids = token_ids(input_ids, tcfg.vocab_size)
        mask = mask_like(attention_mask, ids)
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
    require(type(model).__name__, input_ids=input_ids)
    ids = token_ids(input_ids, model.config.vocab_size)
    enc = _encoder_states(model, encoder_hidden_states, ids.shape[0], generate_kwargs)
    return ids, mask_like(attention_mask, ids), enc


def _encoder_states(model, encoder_hidden_states, n_texts, generate_kwargs=None):
    """encoder_hidden_states (B, N, E) checked and cast, or None."""
    if encoder_hidden_states is None:
        return None
    dims = "batch, tokens, encoder_hidden_size "
    enc = features(encoder_hidden_states, model.config.encoder_hidden_size, model.dtype, dims=dims)
    if generate_kwargs is None:
        paired_batch(n_texts, enc.shape[0], "texts")
    else:
        generate_pairing(n_texts, enc.shape[0], generate_kwargs, "encoder states")
    return enc


def _forward_inputs(model, input_ids, inputs_embeds, encoder_embeds, attention_mask, enc, past):
    """What BlipTextModel.forward takes as its text, checked: (ids or None, text_model's keywords
    attention_mask, encoder_hidden_states, cache, encoder_kv, inputs_embeds, encoder_embeds).
    past: past_key_values, the dict a call with use_cache returns ({"self_attention": [(K, V)],
    "cross_attention": [(K, V)] or None}), or a bare [(K, V)] list (self-attention only, as
    transformers wraps a DynamicCache)."""
    cfg, name = model.config, type(model).__name__
    if input_ids is not None and inputs_embeds is not None:
        raise InputError("You cannot specify both input_ids and inputs_embeds at the same time")
    D = cfg.hidden_size
    if encoder_embeds is not None:  # the embedding output itself: input_ids are not read
        ids, embeds = None, None
        encoder_embeds = features(encoder_embeds, D, model.dtype, "encoder_embeds")
        like = encoder_embeds
    elif inputs_embeds is not None:
        ids, embeds = None, features(inputs_embeds, D, model.dtype, "inputs_embeds")
        like = embeds
    else:
        require(name, input_ids=input_ids)
        ids, embeds = token_ids(input_ids, cfg.vocab_size), None
        like = ids
    cache, cross = None, None
    if past is not None:
        dict_cache = isinstance(past, dict)
        cache, cross = (
            (past["self_attention"], past["cross_attention"]) if dict_cache else (past, None)
        )
    B, T = like.shape[:2]
    past_len = 0 if not cache else cache[0][0].shape[2]
    what = "the past and new tokens" if past_len else "the tokens"
    mask = mask_like(attention_mask, (B, past_len + T), like_name=what)
    enc = _encoder_states(model, enc, B)
    return ids, {
        "attention_mask": mask,
        "encoder_hidden_states": enc,
        "cache": cache or None,
        # the cached cross-attention keys/values are used (as transformers reuses them) only
        # when the call gives encoder_hidden_states: without them the layers skip cross-attention
        "encoder_kv": cross if enc is not None else None,
        "inputs_embeds": embeds,
        "encoder_embeds": encoder_embeds,
    }


def _text_output(cfg, out, output_attentions, output_hidden_states, return_dict, head=None):
    """transformers' BaseModelOutputWithPoolingAndCrossAttentions, or with head = {loss, logits}
    its CausalLMOutputWithCrossAttentions (the two order their fields differently)."""
    want_h, want_a = output_flags(cfg, output_hidden_states, output_attentions)
    crossed = out["cross_attentions"][0] is not None
    fields = {
        "hidden_states": select_hidden_states(out["hidden_states"], want_h),
        "past_key_values": out["cache"],
        "attentions": tuple(out["attentions"]) if want_a else None,
        "cross_attentions": tuple(out["cross_attentions"]) if want_a and crossed else None,
    }
    if head is None:
        pooled = {
            "last_hidden_state": out["last_hidden_state"],
            "pooler_output": out["pooler_output"],
        }
        result = BaseModelOutputWithPoolingAndCrossAttentions(**pooled, **fields)
    else:
        result = CausalLMOutputWithCrossAttentions(**head, **fields)
    return returned(result, return_dict)


def _decoder_cache(model, out, is_decoder, use_cache, labels, past):
    """_with_cache for BlipTextLMHeadModel: labels turn use_cache off (as in transformers), and
    an encoder call (is_decoder False) returns no cache."""
    if not is_decoder:
        out["cache"] = None
        return
    _with_cache(model, out, False if labels is not None else use_cache, past is not None)


def _lm_loss(cfg, reduction):
    """(labels, logits) -> BlipTextLMHeadModel's loss, None without labels; labels are checked
    against the logits' (B, T) first. reduction 'mean' or 'none' (BLIP VQA's per-sample sum)."""
    if reduction not in ("mean", "none"):
        raise InputError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    pairing = "texts x tokens, after pairing with encoder_hidden_states"

    def loss(labels, logits):
        fn = lambda x, y: lm_loss(x, y, cfg.label_smoothing, reduction)  # noqa: E731
        return labels_loss(labels, logits, fn, pairing)

    return loss


def _with_cache(model, out, use_cache, continued):
    """Sets out["cache"] to what past_key_values returns: with use_cache (default: the config's)
    {"self_attention": [(K, V)] per layer (B, H, past + T, Dh), "cross_attention": [(K, V)] per
    layer (B, H, N, Dh) or None without encoder_hidden_states} (transformers' EncoderDecoderCache);
    else None. A call continued from a past_key_values returns the cache whatever use_cache says
    (continued), as transformers returns the cache object it was given."""
    use = model.config.use_cache if use_cache is None else use_cache
    if not (use or continued):
        out["cache"] = None
        return
    out["cache"] = {"self_attention": out["cache"], "cross_attention": out["encoder_kv"]}


class BlipTextModel(PreTrainedModel):
    """transformers.BlipTextModel (with its pooler) from a blip_text_model checkpoint.

    Encoder mode (is_decoder=False, the default) attends both ways; decoder mode is causal and
    returns its KV cache as past_key_values (see _with_cache), which a later call continues.
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
        inputs_embeds=None,
        encoder_embeds=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values=None,
        use_cache=None,
        is_decoder=False,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=True,
    ):
        """Mirrors BlipTextModel.forward. past_key_values / use_cache: see _forward_inputs and
        _with_cache (decoder mode only: the encoder mode keeps no cache, as in transformers)."""
        ids, inputs = _forward_inputs(
            self,
            input_ids,
            inputs_embeds,
            encoder_embeds,
            attention_mask,
            encoder_hidden_states,
            past_key_values,
        )
        out = text_model(
            ids,
            self.params,
            self.config,
            position_ids=position_ids,
            encoder_attention_mask=encoder_attention_mask,
            is_decoder=is_decoder,
            pooler=True,
            **inputs,
        )
        if is_decoder:
            _with_cache(self, out, use_cache, past_key_values is not None)
        else:  # the encoder mode keeps no cache (transformers sets use_cache False)
            out["cache"] = None
        return _text_output(self.config, out, output_attentions, output_hidden_states, return_dict)

    forward = __call__


class BlipTextLMHeadModel(PreTrainedModel):
    """transformers.BlipTextLMHeadModel (bert + cls) from a blip_text_model checkpoint."""

    config_types = (BlipTextConfig,)

    def __init__(self, config, params, name_or_path=None):
        super().__init__(config, params, name_or_path)
        check_lm_head(params, config.tie_word_embeddings)

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
        inputs_embeds=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        labels=None,
        past_key_values=None,
        use_cache=None,
        return_logits=False,
        is_decoder=True,
        reduction="mean",
        logits_to_keep=0,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=True,
    ):
        """Mirrors BlipTextLMHeadModel.forward. logits_to_keep: the positions the head projects
        (keep_positions: 0 all, n the last n, or index arrays); labels turn use_cache off."""
        ids, inputs = _forward_inputs(
            self,
            input_ids,
            inputs_embeds,
            None,
            attention_mask,
            encoder_hidden_states,
            past_key_values,
        )
        loss_of = _lm_loss(self.config, reduction)  # refuses an unknown reduction before any work
        logits, out = lm_forward(
            ids,
            self.params,
            self.config,
            logits_to_keep=logits_to_keep,
            position_ids=position_ids,
            encoder_attention_mask=encoder_attention_mask,
            is_decoder=is_decoder,
            **inputs,
        )
        _decoder_cache(self, out, is_decoder, use_cache, labels, past_key_values)
        if return_logits:  # transformers returns the shifted logits alone
            return logits[:, :-1]
        head = {"loss": loss_of(labels, logits), "logits": logits}
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
        cfg = self.config
        eos = cfg.eos_token_id if eos_token_id is None else eos_token_id
        pad = cfg.pad_token_id if pad_token_id is None else pad_token_id
        return decode(self.params, cfg, ids, mask, enc, eos, pad, None, generate_kwargs)
