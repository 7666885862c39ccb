"""golden/pipeline/: the whole path a user takes, from photo files to words, in transformers 5.23.0.

Real photos (golden/images) go through transformers' BlipProcessor (PIL image processor + the
BLIP BERT tokenizer of golden/tokenizer/blip), then random-weight BLIP models generate or score,
and the tokenizer decodes. meta.json "pipeline" records the image files, the text, the generate
settings and the decoded strings; outputs.npz the ids / scores. pixel_values and input_ids are
not stored: the test recomputes them with minblip's own processor (itself golden-tested bit for
bit), so a failure here points at the composition, not at the parts.

One case runs at full size, caption_greedy (blip-image-captioning-base dimensions, 384-px
class-default preprocessing): one photo's file to words at the hub's shapes (one photo keeps the
suite fast; batches of photos are the tiny cases'). The others, tiny_*, are
tiny models whose vocabulary is the real BLIP tokenizer's (30524 ids, [DEC] = 30522, [SEP] = 102,
[PAD] = 0, as the hub configs), 32-px images (model/preprocessor_config.json, written by
transformers' BlipImageProcessor.save_pretrained): the same composition, one class and setting
per case, at a fraction of the cost (full-size shapes of each class are golden-tested in
golden/caption and golden/blip_tasks). The vocabulary makes the embeddings MBs, so every model's
weights are regenerated from their seed (weights.json), as golden/blip2_pipeline does.
(The tiny cases' names differ from every earlier full-size case's, so a materialized folder in
the shared cache, named after its case, is never rebuilt under a process reading it.)
"""

import json
import shutil
from pathlib import Path

import golden_common as gc
import numpy as np
from PIL import Image

from golden_cases.blip_tasks import TEXT_BASE
from golden_cases.vision import BASE as VISION_BASE

BASE = dict(text_config=TEXT_BASE, vision_config=VISION_BASE)
TINY_SIDE = 32
# BLIP VQA needs equal vision and text widths (see golden_cases/blip_tasks.py): 32 and 32
TINY = dict(
    text_config=dict(
        TEXT_BASE,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
    ),
    vision_config=dict(
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=TINY_SIDE,
        patch_size=8,
    ),
    projection_dim=16,
    image_text_hidden_size=16,
)
PHOTOS = ["astronaut.png", "coffee.png", "camera.png"]


def _processor(root, side=None):
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(root / "tokenizer" / "blip")
    if side is None:  # the class defaults: 384 px, what a hub folder's config also says
        return transformers.BlipProcessor(transformers.BlipImageProcessor(), tok)
    images = transformers.BlipImageProcessor(size={"height": side, "width": side})
    return transformers.BlipProcessor(images, tok)


def cases():
    """(name, class, size "base" / "tiny", processor inputs, generate / forward kwargs)."""
    itm_texts = ["an astronaut in a suit", "a cup of coffee", "a man"]
    questions = ["what is in the picture?", "how many cups are there?"]
    gen = "BlipForConditionalGeneration"
    return [
        ("caption_greedy", gen, "base", dict(images=PHOTOS[:1], text=None), {}),
        ("tiny_caption_greedy", gen, "tiny", dict(images=PHOTOS, text=None), {}),
        ("tiny_caption_prompt", gen, "tiny", dict(images=PHOTOS, text=["a picture of"] * 3), {}),
        (
            "tiny_caption_beams3",
            gen,
            "tiny",
            dict(images=PHOTOS[:2], text=None),
            {"num_beams": 3, "max_new_tokens": 12},
        ),
        (
            "tiny_vqa_greedy",
            "BlipForQuestionAnswering",
            "tiny",
            dict(images=PHOTOS[:2], text=questions),
            {},
        ),
        (
            "tiny_itm",
            "BlipForImageTextRetrieval",
            "tiny",
            dict(images=[PHOTOS[0]] * 3, text=itm_texts),
            {"use_itm_head": True},
        ),
        (
            "tiny_itc",
            "BlipForImageTextRetrieval",
            "tiny",
            dict(images=PHOTOS[:2], text=itm_texts),
            {"use_itm_head": False},
        ),
    ]


def build(root: Path):
    group = root / "pipeline"
    if group.exists():
        shutil.rmtree(group)
    seeds = {  # per (class, size): base keeps the seeds of the first full-size group
        ("BlipForConditionalGeneration", "base"): 300,
        ("BlipForConditionalGeneration", "tiny"): 310,
        ("BlipForQuestionAnswering", "tiny"): 311,
        ("BlipForImageTextRetrieval", "tiny"): 312,
    }
    first = {}  # (class, size) -> the case whose weights the later cases of that kind reuse
    with gc.quiet():
        for name, cls, size, spec, kwargs in cases():
            print(" ", name, flush=True)
            processor = _processor(root, None if size == "base" else TINY_SIDE)
            images = [Image.open(root / "images" / f) for f in spec["images"]]
            enc = processor(images=images, text=spec["text"], padding=True, return_tensors="np")
            inputs = {k: np.asarray(v) for k, v in enc.items()}
            method = "forward" if cls == "BlipForImageTextRetrieval" else "generate"
            meta = gc.write_case(
                group / name,
                cls,
                BASE if size == "base" else TINY,
                seed=seeds[cls, size],
                inputs=inputs,
                kwargs=kwargs,
                method=method,
                full_size=True,
                record=(),
            )
            case = group / name
            outs = dict(np.load(case / "outputs.npz"))
            keep = {k: v for k, v in outs.items() if k in ("out", "out.itm_score")}
            np.savez_compressed(case / "outputs.npz", **keep)
            np.savez_compressed(case / "inputs.npz")  # recomputed by the test from the photos
            meta["outputs"] = list(keep)
            meta["pipeline"] = {
                "images": spec["images"],
                "text": spec["text"],
                "processor_kwargs": {"padding": True},
                "decoded": processor.batch_decode(keep["out"], skip_special_tokens=True)
                if method == "generate"
                else None,
            }
            if (cls, size) in first:  # same class, config and seed: one weights.json serves all
                (case / "weights.json").unlink()
                shutil.rmtree(case / "model")
                meta["model_dir"] = f"../{first[cls, size]}/model"
            elif size == "tiny":  # its 32-px preprocessing travels with the folder
                processor.image_processor.save_pretrained(case / "model")
            first.setdefault((cls, size), name)
            (case / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"  golden/pipeline: {gc.dir_size(group) / 2**20:.2f} MB")
