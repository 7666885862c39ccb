"""golden/blip2_vision/: Blip2VisionModel (EVA ViT-g/14 layout) cases, tiny configs.

The computation is BlipVisionModel's with BLIP-2's defaults (layer_norm_eps 1e-6, patch 14) and
an optional qkv bias. Head widths that are not powers of two (8 of 40, 11 of 44) take the
attention path that scales the scores rather than the queries; qkv_bias=False drops the bias;
the minimal config leaves eps, patch size and activation to Blip2VisionConfig's defaults. The
full-size EVA ViT-g (1B parameters) is not a golden case: its tiny relatives pin every formula.
"""

from functools import partial
from pathlib import Path

import golden_common as gc

from golden_cases.vision import MINIMAL, images

TINY = dict(
    hidden_size=40,
    intermediate_size=70,
    num_hidden_layers=2,
    num_attention_heads=5,
    image_size=28,
    patch_size=7,
)


def cases():
    tiny = partial(gc.case, config=TINY)
    return [
        tiny("tiny_b2", images(101, 2, 28, 28)),
        gc.case(
            "no_qkv_bias",
            images(102, 1, 28, 28),
            config=dict(TINY, qkv_bias=False, layer_norm_eps=1e-3),
            notes="qkv without bias; eps 1e-3 so an ignored eps shows",
        ),
        gc.case(
            "head_dim_11_interpolate",
            images(103, 2, 35, 21),
            config=dict(TINY, hidden_size=44, num_attention_heads=4),
            kwargs={"interpolate_pos_encoding": True},
            notes="4 heads of 11 (scale 11^-0.5); 4x4 position grid resized to 5x3",
        ),
        tiny(
            "hidden_attn",
            images(104, 2, 28, 28),
            kwargs={"output_hidden_states": True, "output_attentions": True},
        ),
        tiny("float64", images(105, 2, 28, 28), dtype="float64"),
        gc.case(
            "minimal_config",
            images(106, 1, 28, 28),
            **gc.minimal_config("blip_2_vision_model", **MINIMAL, image_size=28),
            record=(),
            notes="patch_size 14, layer_norm_eps 1e-6, qkv_bias True, gelu from the defaults",
        ),
    ]


def build(root: Path):
    gc.build_shared_group(Path(root) / "blip2_vision", cases(), "Blip2VisionModel", seed=200)
