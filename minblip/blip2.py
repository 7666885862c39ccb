"""BLIP-2 models. So far the vision tower: transformers.Blip2VisionModel (EVA ViT-g/14).

Blip2VisionModel computes exactly what BlipVisionModel computes (pre-LN ViT, CLS token, learned
positions with the same bicubic interpolation, post_layernorm applied twice for the pooled
output); only its config defaults differ (1408 wide, 39 layers, 16 heads of 88, 224 px, patch
14, layer_norm_eps 1e-6) and `qkv_bias` may be off. The checkpoint stores the EVA q/v biases as
one combined `self_attn.qkv.bias` [q | k | v] whose k third was initialised to 0 and is read as
stored (../shared/spec/blip2.md §2.2).
"""

from .blip import BlipVisionModel
from .config import Blip2VisionConfig


class Blip2VisionModel(BlipVisionModel):
    """transformers.Blip2VisionModel: (B, 3, S, S) pixels -> (B, N, Dv) features + pooled (B, Dv).

    Loads a blip_2_vision_model checkpoint folder; calls and outputs as BlipVisionModel's.
    """

    config_types = (Blip2VisionConfig,)
