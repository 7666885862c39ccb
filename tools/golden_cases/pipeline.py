"""golden/pipeline/: the whole path a user takes, from photo files to words, in transformers 5.23.0.

Real photos (golden/images) go through transformers' BlipProcessor (PIL image processor + the
BLIP BERT tokenizer of golden/tokenizer/blip), then full-size random-weight BLIP models
(blip-image-captioning-base, blip-vqa-base, blip-itm-base-coco dimensions) generate or score,
and the tokenizer decodes. meta.json "pipeline" records the image files, the text, the generate
settings and the decoded strings; outputs.npz the ids / scores. pixel_values and input_ids are
not stored: the test recomputes them with minblip's own processor (itself golden-tested bit for
bit), so a failure here points at the composition, not at the parts.
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
PHOTOS = ["astronaut.png", "coffee.png", "camera.png"]


def _processor(root):
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(root / "tokenizer" / "blip")
    return transformers.BlipProcessor(transformers.BlipImageProcessor(), tok)


def cases():
    return [
        ("caption_greedy", "BlipForConditionalGeneration", dict(images=PHOTOS, text=None), {}),
        (
            "caption_prompt",
            "BlipForConditionalGeneration",
            dict(images=PHOTOS, text=["a picture of"] * 3),
            {},
        ),
        (
            "caption_beams3",
            "BlipForConditionalGeneration",
            dict(images=PHOTOS[:2], text=None),
            {"num_beams": 3, "max_new_tokens": 12},
        ),
        (
            "vqa_greedy",
            "BlipForQuestionAnswering",
            dict(images=PHOTOS[:2], text=["what is in the picture?", "how many cups are there?"]),
            {},
        ),
        (
            "itm",
            "BlipForImageTextRetrieval",
            dict(
                images=[PHOTOS[0]] * 3, text=["an astronaut in a suit", "a cup of coffee", "a man"]
            ),
            {"use_itm_head": True},
        ),
        (
            "itc",
            "BlipForImageTextRetrieval",
            dict(images=PHOTOS[:2], text=["an astronaut in a suit", "a cup of coffee", "a man"]),
            {"use_itm_head": False},
        ),
    ]


def build(root: Path):
    group = root / "pipeline"
    processor = _processor(root)
    seeds = {
        "BlipForConditionalGeneration": 300,
        "BlipForQuestionAnswering": 301,
        "BlipForImageTextRetrieval": 302,
    }
    first = {}  # class -> the case whose weights the later cases of that class reuse
    with gc.quiet():
        for name, cls, spec, kwargs in cases():
            print(" ", name, flush=True)
            images = [Image.open(root / "images" / f) for f in spec["images"]]
            enc = processor(images=images, text=spec["text"], padding=True, return_tensors="np")
            inputs = {k: np.asarray(v) for k, v in enc.items()}
            method = "forward" if cls == "BlipForImageTextRetrieval" else "generate"
            meta = gc.write_case(
                group / name,
                cls,
                BASE,
                seed=seeds[cls],
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
            if cls in first:  # same class, config and seed: one weights.json serves all
                (case / "weights.json").unlink()
                shutil.rmtree(case / "model")
                meta["model_dir"] = f"../{first[cls]}/model"
            first.setdefault(cls, name)
            (case / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"  golden/pipeline: {gc.dir_size(group) / 2**20:.2f} MB")
