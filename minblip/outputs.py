"""Output containers readable like transformers' ModelOutput / BatchFeature.

Fields are read as attributes (out.last_hidden_state) or keys (out["last_hidden_state"]);
fields that are None are left out of the mapping, as in transformers, and iteration / to_tuple()
follow field order. Each model returns one of the typed classes below: transformers' class
name, its field names in its order (so `return_dict=False` tuples come out as transformers
orders them), and each field's shape in the symbols of docs/notation.md. A field the model does
not fill reads as None, as in transformers.
"""


class ModelOutput(dict):
    """A dict whose keys are also attributes. Construct with keyword fields in their order; a
    subclass with `fields` puts them in that order and refuses other names."""

    fields = None  # a typed subclass names its fields here, in transformers' order

    def __init__(self, **values):
        if self.fields is not None:
            unknown = set(values) - set(self.fields)
            if unknown:
                raise TypeError(f"{type(self).__name__} has no field(s) {sorted(unknown)}")
            values = {k: values.get(k) for k in self.fields}
        super().__init__((k, v) for k, v in values.items() if v is not None)
        self._names = tuple(values)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self:
            return self[name]
        if name in self._names:
            return None
        raise AttributeError(f"{type(self).__name__} has no field {name!r}; fields: {list(self)}")

    def __getitem__(self, key):
        if isinstance(key, int):
            return self.to_tuple()[key]
        return super().__getitem__(key)

    def to_tuple(self):
        return tuple(self[k] for k in self._names if k in self)

    def replace(self, **values):
        """A copy of the same class with some fields changed."""
        return type(self)(**{**{k: self.get(k) for k in self._names}, **values})

    def __repr__(self):
        def brief(v):
            shape = getattr(v, "shape", None)
            return f"array{tuple(shape)} {v.dtype}" if shape is not None else type(v).__name__

        inner = ", ".join(f"{k}={brief(v)}" for k, v in self.items())
        return f"{type(self).__name__}({inner})"


def returned(output, return_dict):
    """transformers' return_dict: the output itself, or its tuple (None fields left out); nested
    outputs (a tower's output inside a model's) become tuples too, as transformers builds them."""
    if return_dict:
        return output
    return tuple(v.to_tuple() if isinstance(v, ModelOutput) else v for v in output.to_tuple())


class BatchFeature(ModelOutput):
    """What processors return: pixel_values, input_ids, attention_mask as numpy arrays."""


# ----------------------------------------------------------------------------- towers


class BaseModelOutputWithPooling(ModelOutput):
    """A vision tower (or a tower inside BlipModel): last_hidden_state (B, N, D), pooler_output
    (B, D), hidden_states L+1 x (B, N, D), attentions L x (B, H, N, N)."""

    fields = ("last_hidden_state", "pooler_output", "hidden_states", "attentions")


class BaseModelOutputWithPoolingAndCrossAttentions(ModelOutput):
    """A BERT tower or the Q-Former: last_hidden_state (B, T, D), pooler_output (B, D),
    hidden_states L+1 x (B, T, D), past_key_values {"self_attention": L x (K, V) each
    (B, H, T, Dh), "cross_attention": L x (K, V) each (B, H, N, Dh) or None}, attentions
    L x (B, H, T, T), cross_attentions L x (B, H, T, N)."""

    fields = (
        "last_hidden_state",
        "pooler_output",
        "hidden_states",
        "past_key_values",
        "attentions",
        "cross_attentions",
    )


class CausalLMOutputWithCrossAttentions(ModelOutput):
    """BlipTextLMHeadModel: loss () or (B,), logits (B, T, V), past_key_values as
    BaseModelOutputWithPoolingAndCrossAttentions', hidden_states L+1 x (B, T, Dt), attentions
    L x (B, H, T, T), cross_attentions L x (B, H, T, N)."""

    fields = (
        "loss",
        "logits",
        "past_key_values",
        "hidden_states",
        "attentions",
        "cross_attentions",
    )


# ----------------------------------------------------------------------------- BLIP


class BlipForConditionalGenerationModelOutput(ModelOutput):
    """Captioning: loss (), logits (B, T, V), image_embeds (B, N, Dv), last_hidden_state (the
    same image features), hidden_states L+1 x (B, N, Dv), attentions L x (B, H, N, N)."""

    fields = ("loss", "logits", "image_embeds", "last_hidden_state", "hidden_states", "attentions")


class BlipTextVisionModelOutput(ModelOutput):
    """VQA's forward: loss (), image_embeds (B, N, Dv), last_hidden_state (the same),
    hidden_states L+1 x (B, N, Dv), attentions L x (B, H, N, N)."""

    fields = ("loss", "image_embeds", "last_hidden_state", "hidden_states", "attentions")


class BlipImageTextMatchingModelOutput(ModelOutput):
    """Retrieval: itm_score (B, 2) (ITM) or (Bi, Bt) (ITC), last_hidden_state (B, N, Dv) of the
    image, hidden_states L+1 x (B, N, Dv), attentions L x (B, H, N, N), question_embeds
    (B, T, Dt) (the text's encoding). loss, image_embeds, vision_pooler_output: never filled,
    as in transformers 5.23."""

    fields = (
        "itm_score",
        "loss",
        "image_embeds",
        "last_hidden_state",
        "hidden_states",
        "vision_pooler_output",
        "attentions",
        "question_embeds",
    )


class BlipOutput(ModelOutput):
    """Contrastive: loss (), logits_per_image (Bi, Bt), logits_per_text (Bt, Bi), text_embeds
    (Bt, E), image_embeds (Bi, E), text_model_output and vision_model_output (the towers'
    BaseModelOutputWithPooling)."""

    fields = (
        "loss",
        "logits_per_image",
        "logits_per_text",
        "text_embeds",
        "image_embeds",
        "text_model_output",
        "vision_model_output",
    )


# ----------------------------------------------------------------------------- BLIP-2


class Blip2ImageTextMatchingModelOutput(BlipOutput):
    """Blip2ForImageTextRetrieval: the fields of BlipOutput. ITM: logits_per_image (B, 2),
    text_embeds (B, Q+T, Dq) (the Q-Former's output), image_embeds (B, N, Dv); ITC:
    logits_per_image (Bi, Bt), text_embeds (Bt, E), image_embeds (Bi, Q, E)."""


class Blip2TextModelOutput(ModelOutput):
    """Blip2TextModelWithProjection: text_embeds (B, T, E), last_hidden_state (B, T, Dq),
    hidden_states, attentions (never filled)."""

    fields = ("text_embeds", "last_hidden_state", "hidden_states", "attentions")


class Blip2VisionModelOutput(ModelOutput):
    """Blip2VisionModelWithProjection: image_embeds (B, Q, E), last_hidden_state (B, N, Dv) (the
    vision tower's), hidden_states L+1 x (B, N, Dv), attentions L x (B, H, N, N)."""

    fields = ("image_embeds", "last_hidden_state", "hidden_states", "attentions")
