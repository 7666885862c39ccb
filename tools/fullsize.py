"""Build a full-size, random-weight Salesforce/blip-image-captioning-base folder with transformers.

    python tools/fullsize.py /tmp/blip-base        # needs tools/requirements-golden.txt

The config is the hub's (see ../shared/spec/checkpoints.md §2.1: ViT-B/16 at 384 px, a 12-layer
BERT decoder with 12 heads, vocabulary 30524); the weights come from minblip.testing.random_weights
(seeded, O(1) activations), loaded into transformers' own class and written by its
save_pretrained, so the folder is in the real file format. The tokenizer is golden/tokenizer/blip
(bert-base-uncased + [DEC], [ENC]); preprocessor_config.json is BlipImageProcessor's defaults.
Used by tools/bench.py and tools/measure_load.py; never by the tests (they regenerate their own
full-size weights without torch, from golden/*/weights.json).
"""

import pathlib
import shutil
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

TEXT = dict(
    vocab_size=30524,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=512,
    hidden_act="gelu",
    layer_norm_eps=1e-12,
    bos_token_id=30522,
    eos_token_id=2,
    pad_token_id=0,
    sep_token_id=102,
    is_decoder=True,
    use_cache=True,
    tie_word_embeddings=True,
)
VISION = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    image_size=384,
    patch_size=16,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
)


def build(out_dir, seed=0):
    out_dir = pathlib.Path(out_dir)
    if (out_dir / "model.safetensors").exists():
        return out_dir
    import torch
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessor

    from minblip.testing import random_weights

    cfg = BlipConfig(text_config=TEXT, vision_config=VISION)
    cfg.architectures = ["BlipForConditionalGeneration"]
    model = BlipForConditionalGeneration(cfg).eval()
    state = model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items() if v.dtype.is_floating_point}
    weights = random_weights(shapes, seed)
    model.load_state_dict(
        {k: torch.from_numpy(weights[k]) if k in weights else v for k, v in state.items()}
    )
    model.save_pretrained(out_dir)
    BlipImageProcessor().save_pretrained(out_dir)
    tok = HERE.parent / "golden" / "tokenizer" / "blip"
    for f in tok.glob("*"):
        if f.is_file():
            shutil.copy(f, out_dir / f.name)
    return out_dir


if __name__ == "__main__":
    print(build(sys.argv[1] if len(sys.argv) > 1 else "/tmp/minblip-blip-base"))
