"""golden/vision/: BlipVisionModel cases (tiny configs, one full-size config without weights).

Each case is built by golden_common.write_case from the dict below; the pixel inputs are random
8-bit images normalised with the OPENAI CLIP mean/std, i.e. the value range the processor
produces (about -1.8 .. 2.1), without claiming to be photos (golden/images has the real ones).

Odd head counts (3, 5) and hidden sizes that are not powers of two (36, 60) catch head-split
bugs that 2 or 4 heads of a power-of-two width hide; a large layer_norm_eps (0.01) makes an
ignored or hard-coded eps visible well above float32 noise.
"""

from pathlib import Path

import golden_common as gc

from minblip.testing import random_pixels as pixels

TINY = dict(
    hidden_size=36,
    intermediate_size=72,
    num_hidden_layers=2,
    num_attention_heads=3,
    image_size=32,
    patch_size=8,
)
WIDE = dict(
    hidden_size=60,
    intermediate_size=100,
    num_hidden_layers=3,
    num_attention_heads=5,
    image_size=48,
    patch_size=16,
    layer_norm_eps=1e-2,
)
FULL_PIXEL_SEED = 9
# The vision tower of Salesforce/blip-image-captioning-base (checkpoints.md §2.1), ViT-B/16.
BASE = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    image_size=384,
    patch_size=16,
    num_channels=3,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
    attention_dropout=0.0,
    initializer_range=0.02,
    projection_dim=512,
)


def cases():
    """(name, write_case keyword arguments) for every case of the group."""
    return [
        (
            "tiny_b1",
            dict(
                config=TINY,
                inputs={"pixel_values": pixels(1, 1, 32, 32)},
                notes="3 heads of 12, 4x4 patch grid, batch 1",
            ),
        ),
        (
            "wide_b2",
            dict(
                config=WIDE,
                inputs={"pixel_values": pixels(2, 2, 48, 48)},
                notes="5 heads of 12, 3 layers, layer_norm_eps 1e-2, batch 2",
            ),
        ),
        (
            "p16_b3",
            dict(
                config=dict(
                    hidden_size=60,
                    intermediate_size=90,
                    num_hidden_layers=2,
                    num_attention_heads=3,
                    image_size=64,
                    patch_size=16,
                ),
                inputs={"pixel_values": pixels(3, 3, 64, 64)},
                notes="3 heads of 20, 4x4 grid of 16-px patches, batch 3",
            ),
        ),
        (
            "interpolate",
            dict(
                config=TINY,
                inputs={"pixel_values": pixels(4, 2, 50, 36)},
                kwargs={"interpolate_pos_encoding": True},
                notes="position grid 4x4 resized bicubically to 6x4 for a 50x36 input"
                " (remainder rows/columns beyond the last full patch dropped)",
            ),
        ),
        (
            "smaller_input",
            dict(
                config=TINY,
                inputs={"pixel_values": pixels(5, 2, 24, 16)},
                notes="24x16 input without interpolation: the first 1+3*2 position"
                " rows are used as they are",
            ),
        ),
        (
            "hidden_attn",
            dict(
                config=TINY,
                inputs={"pixel_values": pixels(6, 2, 32, 32)},
                kwargs={"output_hidden_states": True, "output_attentions": True},
                notes="hidden_states = embeddings + every layer output (the last one"
                " before post_layernorm); attentions = softmax probabilities",
            ),
        ),
        (
            "float64",
            dict(
                config=TINY,
                inputs={"pixel_values": pixels(7, 2, 32, 32)},
                dtype="float64",
                notes="transformers run in float64 (model.double()); weights saved float32",
            ),
        ),
        (
            "minimal_config",
            dict(
                config=dict(
                    hidden_size=36,
                    intermediate_size=48,
                    num_hidden_layers=2,
                    num_attention_heads=3,
                    image_size=48,
                ),
                saved_config={
                    "model_type": "blip_vision_model",
                    "hidden_size": 36,
                    "intermediate_size": 48,
                    "num_hidden_layers": 2,
                    "num_attention_heads": 3,
                    "image_size": 48,
                },
                inputs={"pixel_values": pixels(8, 1, 48, 48)},
                notes="config.json names only the sizes: patch_size 16, layer_norm_eps 1e-5,"
                " hidden_act gelu come from BlipVisionConfig's defaults",
            ),
        ),
        (
            "base_384",
            dict(
                config=BASE,
                inputs={"pixel_values": pixels(FULL_PIXEL_SEED, 1, 384, 384)},
                full_size=True,
                record=(),
                notes="blip-image-captioning-base vision dims; weights regenerated by"
                " minblip.testing.materialize; no module outputs are recorded"
                " (each is 1.8 MB): the tiny cases localise a divergence",
            ),
        ),
        (
            "interpolate_same_count",
            dict(
                config=TINY,
                inputs={"pixel_values": pixels(9, 1, 64, 16)},
                kwargs={"interpolate_pos_encoding": True},
                notes="8x2 patches: as many as the 4x4 table holds, but not square, so the grid"
                " is still resized (transformers skips the resize only for square inputs)",
            ),
        ),
    ]


def build(root: Path):
    out = Path(root) / "vision"
    with gc.quiet():
        for seed, (name, spec) in enumerate(cases()):
            spec = dict(spec)
            config = spec.pop("config")
            gc.write_case(out / name, "BlipVisionModel", config, seed=seed, **spec)
            if spec.get("full_size"):
                # 1.8 MB of pixels rebuilt from their seed instead of stored (FORMAT.md).
                gc.use_generated_pixels(out / name, FULL_PIXEL_SEED)
            print(f"  {name}: {gc.dir_size(out / name) / 1e3:.0f} kB", flush=True)
