"""BlipProcessor: one object that turns images and text into model inputs, as transformers' does.

Images go to BlipImageProcessor (pixel_values), text to the BERT tokenizer (input_ids,
attention_mask; BLIP has no token types, so none are returned). Keyword arguments are routed by
name: image settings (size, do_resize, ...) to the image processor, the rest (padding,
truncation, max_length, ...) to the tokenizer.
"""

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
        given both ways is refused, as transformers refuses it)."""
        if images is None and text is None:
            raise InputError("BlipProcessor needs images, text, or both")
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
        data = {}
        if text is not None:
            enc = self.tokenizer(text, return_tensors=return_tensors, **text_kwargs)
            data.update((k, v) for k, v in enc.items() if k != "token_type_ids")
        if images is not None:
            data.update(self.image_processor(images, return_tensors=return_tensors, **image_kwargs))
        return BatchFeature(**data)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)
