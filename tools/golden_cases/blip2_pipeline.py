"""golden/blip2_pipeline/: BLIP-2 from a photo file to words in transformers 5.23.0, through the
checkpoint's own tokenizer: what `minblip caption --model BLIP2_FOLDER` and `minblip ask` do.

Tiny Blip2ForConditionalGeneration models (golden/blip2_generation's towers, 28-px images, 4
queries) whose language model's vocabulary is the real tokenizer's: OPT's byte-level BPE of
golden/blip2_processor/opt (50260 tokens + `<image>` = 50261) and the T5 Unigram of
golden/blip2_processor/t5 (2100 + `<image>`), image_token_index = the id transformers'
Blip2Processor gives `<image>`. The vocabulary makes the OPT embedding 6 MB, so the weights are
regenerated from their seed (weights.json, as golden/pipeline does); model/ holds config.json,
generation_config.json and processor_config.json (28 px, num_query_tokens 4, written by
transformers' Blip2Processor.save_pretrained). The tokenizer files are not copied again: the
test puts golden/blip2_processor/<kind>/tokenizer*.json beside them.

Per case: one photo, no prompt (caption) or the model-card VQA prompt "Question: {q} Answer:"
(ask), greedy or 3 beams. meta.json "pipeline" records the photo, the prompt, the generate
settings, the decoded full rows and the decoded new ids alone (OPT returns prompt + new ids, T5
decoder ids); outputs.npz the ids. pixel_values and input_ids are not stored: the test
recomputes them with minblip's Blip2Processor from the photo.
"""

import json
import shutil
import tempfile
from pathlib import Path

import golden_common as gc
import numpy as np
from PIL import Image

from golden_cases.blip2_generation import OPT, QFORMER, T5, VISION

Q = 4
QUESTION = "Question: what is on the table? Answer:"  # BLIP-2's model-card VQA format
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def _processor(root, kind):
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(root / "blip2_processor" / kind)
    side = VISION["image_size"]
    images = transformers.BlipImageProcessor(
        size={"height": side, "width": side}, image_mean=CLIP_MEAN, image_std=CLIP_STD
    )
    return transformers.Blip2Processor(images, tok, num_query_tokens=Q)


def _config(processor, kind):
    image_token = processor.tokenizer.convert_tokens_to_ids(str(processor.image_token))
    vocab = len(processor.tokenizer)
    if kind == "opt":  # OPT's real ids: </s> is bos (2), "\n" (50118) eos as in blip2-opt-2.7b
        text = dict(OPT, vocab_size=vocab, bos_token_id=2, eos_token_id=50118, pad_token_id=1)
    else:  # T5's: pad 0 (also decoder_start), </s> 1
        text = dict(T5, vocab_size=vocab)
    return dict(
        vision_config=VISION,
        qformer_config=QFORMER,
        text_config=text,
        num_query_tokens=Q,
        image_token_index=image_token,
    )


def cases():
    out = []
    for kind in ("opt", "t5"):
        out += [
            (f"{kind}_caption", kind, "astronaut.png", None, {"max_new_tokens": 8}),
            (f"{kind}_ask", kind, "coffee.png", QUESTION, {"max_new_tokens": 8}),
            (
                f"{kind}_ask_beams",
                kind,
                "coffee.png",
                QUESTION,
                {"num_beams": 3, "max_new_tokens": 6},
            ),
        ]
    return out


def build(root: Path):
    group = root / "blip2_pipeline"
    if group.exists():
        shutil.rmtree(group)
    seeds = {"opt": 700, "t5": 701}
    first = {}  # kind -> the case whose model folder the later cases of that kind reuse
    with gc.quiet():
        for name, kind, photo, prompt, kwargs in cases():
            print(" ", name, flush=True)
            processor = _processor(root, kind)
            image = Image.open(root / "images" / photo)
            enc = processor(images=image, text=prompt, return_tensors="np")
            inputs = {k: np.asarray(v) for k, v in enc.items()}
            case = group / name
            meta = gc.write_case(
                case,
                "Blip2ForConditionalGeneration",
                _config(processor, kind),
                seed=seeds[kind],
                inputs=inputs,
                kwargs=kwargs,
                method="generate",
                full_size=True,
                record=(),
            )
            ids = np.load(case / "outputs.npz")["out"]
            # OPT returns the whole input row (placeholders + </s> + prompt) before the new ids;
            # T5 its decoder ids, decoder_start_token_id first
            if kind == "t5":
                n_prompt = 1
            else:
                n_prompt = inputs["input_ids"].shape[1] if prompt else Q + 1
            np.savez_compressed(case / "outputs.npz", out=ids)
            np.savez_compressed(case / "inputs.npz")  # recomputed by the test from the photo
            meta["outputs"] = ["out"]
            meta["pipeline"] = {
                "kind": kind,
                "image": photo,
                "prompt": prompt,
                "generated_from": n_prompt,
                "decoded": processor.batch_decode(ids, skip_special_tokens=True),
                "decoded_new": processor.batch_decode(ids[:, n_prompt:], skip_special_tokens=True),
            }
            if kind in first:  # same config and seed: one weights.json serves every case
                (case / "weights.json").unlink()
                shutil.rmtree(case / "model")
                meta["model_dir"] = f"../{first[kind]}/model"
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    processor.save_pretrained(tmp)
                    shutil.copy(Path(tmp) / "processor_config.json", case / "model")
            first.setdefault(kind, name)
            (case / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"  golden/blip2_pipeline: {gc.dir_size(group) / 2**20:.2f} MB")
