"""BLIP model classes: the towers composed, with transformers' call signatures and field names."""

from .config import BlipVisionConfig
from .errors import InputError
from .modeling import PreTrainedModel, as_pixel_values, select_hidden_states
from .outputs import ModelOutput
from .trace import scope
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
        self, pixel_values=None, output_attentions=None, output_hidden_states=None,
        return_dict=True, interpolate_pos_encoding=False,
    ):  # fmt: skip
        if pixel_values is None:
            raise InputError("You have to specify pixel_values")
        x = as_pixel_values(pixel_values, self.dtype)
        if min(x.shape[2:]) < self.config.patch_size:
            raise InputError(
                f"pixel_values of {x.shape[2]}x{x.shape[3]} are smaller than one "
                f"{self.config.patch_size}-pixel patch"
            )
        want_h = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        want_a = self.config.output_attentions if output_attentions is None else output_attentions
        last, pooled, hidden, attn = vision_model(x, self.params, self.config, interpolate_pos_encoding, want_a)
        out = ModelOutput(
            last_hidden_state=last,
            pooler_output=pooled,
            hidden_states=select_hidden_states(hidden, want_h),
            attentions=tuple(attn) if want_a else None,
        )
        return out if return_dict else out.to_tuple()

    forward = __call__
