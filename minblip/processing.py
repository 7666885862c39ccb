"""BlipProcessor: one object that turns images and text into model inputs, as transformers' does.

Images go to BlipImageProcessor (pixel_values), text to the checkpoint's tokenizer (input_ids,
attention_mask; no token types are returned). Keyword arguments are routed by name: image
settings (size, do_resize, ...) to the image processor, the rest (padding, truncation,
max_length, ...) to the tokenizer.

Blip2Processor also writes the Q-Former's place into the text: num_query_tokens `<image>`
tokens in front of every row, where BLIP-2's model scatters the projected query outputs.
"""

import numpy as np

from .errors import InputError
from .outputs import BatchFeature
from .preprocess import DEFAULTS as IMAGE_SETTINGS
from .preprocess import BlipImageProcessor


class BlipProcessor:
    """transformers.BlipProcessor: `processor(images=..., text=...)`, `batch_decode(...)`."""

    def __init__(self, image_processor, tokenizer):
        self.image_processor, self.tokenizer = image_processor, tokenizer

    @classmethod
    def from_pretrained(cls, path_or_id, **kwargs):
        from .hub import resolve
        from .tokenize import BertTokenizer

        folder = resolve(path_or_id)
        return cls(
            BlipImageProcessor.from_pretrained(folder), BertTokenizer.from_pretrained(folder)
        )

    def __call__(
        self,
        images=None,
        text=None,
        return_tensors="np",
        text_kwargs=None,
        images_kwargs=None,
        common_kwargs=None,
        **kwargs,
    ):
        """images -> pixel_values, text -> input_ids and attention_mask (no token_type_ids).

        Settings go to the image processor or the tokenizer by name, as keywords or, as in
        transformers 5.x, in text_kwargs / images_kwargs / common_kwargs dicts (one setting
        given both ways is refused, as transformers refuses it). Blip2Processor's text_inputs
        adds the `<image>` placeholders.

        Shapes:  images (B images) -> pixel_values (B, 3, H, W); text (B strings) -> input_ids,
                 attention_mask (B, T)."""
        if images is None and text is None:
            raise InputError(f"{type(self).__name__} needs images, text, or both")
        return_tensors, image_kwargs, text_kwargs = _route(
            return_tensors, text_kwargs, images_kwargs, common_kwargs, kwargs
        )
        data = self.text_inputs(text, return_tensors, text_kwargs, images is not None)
        if images is not None:
            data.update(self.image_processor(images, return_tensors=return_tensors, **image_kwargs))
        return BatchFeature(**data)

    def text_inputs(self, text, return_tensors, text_kwargs, with_images):
        """The tokenizer's input_ids and attention_mask ({} without text); BLIP's processor
        drops token_type_ids (its text models take none)."""
        if text is None:
            return {}
        enc = self.tokenizer(text, return_tensors=return_tensors, **text_kwargs)
        return {k: v for k, v in enc.items() if k != "token_type_ids"}

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)


def _route(return_tensors, text_kwargs, images_kwargs, common_kwargs, kwargs):
    """(return_tensors, image settings, text settings): keywords routed by name, merged with
    the 5.x text_kwargs / images_kwargs / common_kwargs dicts (a setting given both ways is
    refused, as transformers refuses it)."""
    for name, group in (("text_kwargs", text_kwargs), ("images_kwargs", images_kwargs)):
        twice = sorted(set(group or {}) & set(kwargs))
        if twice:
            raise InputError(
                f"{twice} passed twice: in a dictionary for {name} and as a keyword argument"
            )
    common = dict(common_kwargs or {})
    return_tensors = common.pop("return_tensors", return_tensors)
    image_kwargs = {**common, **(images_kwargs or {})}
    text_kwargs = {**common, **(text_kwargs or {})}
    image_kwargs.update((k, v) for k, v in kwargs.items() if k in IMAGE_SETTINGS)
    text_kwargs.update((k, v) for k, v in kwargs.items() if k not in IMAGE_SETTINGS)
    image_kwargs = {k: v for k, v in image_kwargs.items() if k in IMAGE_SETTINGS}
    text_kwargs = {k: v for k, v in text_kwargs.items() if k not in IMAGE_SETTINGS}
    return return_tensors, image_kwargs, text_kwargs


class Blip2Processor(BlipProcessor):
    """transformers.Blip2Processor (5.23): BlipProcessor (calls, decode) + `<image>` placeholders.

    With images and text, every row of input_ids / attention_mask gets num_query_tokens
    `<image>` ids (mask 1) in front of it, AFTER the text was tokenized, padded and truncated:
    so they come before OPT's </s> bos, and left padding sits between them and the text
    (5.23 does exactly this; the model does not care, the padded positions are masked). A
    given max_length is first reduced by num_query_tokens for the text. Without images, or with
    num_query_tokens None, the text is encoded as by the tokenizer alone. A tokenizer without an
    `image_token` gets "<image>" added as a special token, as 5.23 adds it (a new id at the end
    of the vocabulary when it is not there yet)."""

    def __init__(self, image_processor, tokenizer, num_query_tokens=None):
        self.image_processor, self.tokenizer = image_processor, tokenizer
        self.num_query_tokens = num_query_tokens
        self.image_token = getattr(tokenizer, "image_token", None)
        if self.image_token is None:
            from tokenizers import AddedToken

            self.image_token = "<image>"
            tokenizer.add_tokens(
                [AddedToken("<image>", normalized=False, special=True)], special_tokens=True
            )

    @classmethod
    def from_pretrained(cls, path_or_id, num_query_tokens=None, **kwargs):
        """A BLIP-2 checkpoint folder: the tokenizer (load_tokenizer), the image processor from
        processor_config.json's "image_processor" (as 5.x saves it) or preprocessor_config.json
        (as hub repos ship it), num_query_tokens from the argument or processor_config.json."""
        from .hub import resolve
        from .tokenize import load_tokenizer, read_tokenizer_json

        folder = resolve(path_or_id)
        config = {}
        if (folder / "processor_config.json").exists():
            config = read_tokenizer_json(folder / "processor_config.json")
        if "image_processor" in config:
            source = f"{folder / 'processor_config.json'} image_processor"
            image_processor = BlipImageProcessor.from_dict(config["image_processor"], source)
        else:
            image_processor = BlipImageProcessor.from_pretrained(folder)
        if num_query_tokens is None:
            num_query_tokens = config.get("num_query_tokens")
        return cls(image_processor, load_tokenizer(folder, **kwargs), num_query_tokens)

    def text_inputs(self, text, return_tensors, text_kwargs, with_images):
        """input_ids, attention_mask with the `<image>` placeholders in front when images are
        given too ({} without text; max_length is checked even then, as 5.23 checks it).

        Shapes:  text (B strings) -> input_ids, attention_mask (B, num_query_tokens + T)."""
        text_kwargs.setdefault("return_token_type_ids", False)
        if text_kwargs.get("max_length") is not None:
            if self.num_query_tokens is None:  # transformers fails here with a TypeError
                raise InputError("max_length needs the processor's num_query_tokens (it is None)")
            text_kwargs["max_length"] -= self.num_query_tokens
        data = {}
        if text is not None:
            if isinstance(text, str):
                text = [text]
            elif not isinstance(text, list) or not text or not isinstance(text[0], str):
                raise InputError("text must be a string or a list of strings")
            enc = dict(self.tokenizer(text, **text_kwargs))
            if with_images and self.num_query_tokens is not None:
                placeholder = self.image_token * self.num_query_tokens
                no_extras = {"add_special_tokens": False, "padding": False, "truncation": False}
                image_enc = self.tokenizer(placeholder, **{**text_kwargs, **no_extras})
                enc = {k: [image_enc[k] + row for row in rows] for k, rows in enc.items()}
            data.update(enc)
        if return_tensors == "np" and data:
            if len({len(row) for row in data["input_ids"]}) > 1:
                raise InputError(
                    "texts of different lengths cannot form one array: pass padding=True"
                )
            data = {k: np.array(v, dtype=np.int64) for k, v in data.items()}
        return data
