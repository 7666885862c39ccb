"""One-call captioning for people with a folder of photos (used by `minblip caption`).

import minblip
minblip.caption("photo.jpg")                                   # -> "a dog on a beach"
minblip.caption(["a.jpg", "b.png"], prompt="a picture of")      # -> ["...", "..."]
"""

import functools
import pathlib

import numpy as np

from .errors import InputError
from .ops import log_softmax

DEFAULT_MODEL = "Salesforce/blip-image-captioning-base"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


@functools.lru_cache(maxsize=2)
def load_captioner(model=DEFAULT_MODEL, dtype="float32"):
    """(model, processor) for a captioning checkpoint folder or hub id, loaded once per process."""
    from .blip import BlipForConditionalGeneration
    from .processing import BlipProcessor

    loaded = BlipForConditionalGeneration.from_pretrained(model, dtype=dtype)
    return loaded, _sized_processor(BlipProcessor.from_pretrained(model), loaded)


def _sized_processor(processor, model):
    """A folder without preprocessor_config.json gets the class defaults (384 px), which fit
    BLIP-base but not every checkpoint: size the images to the model's own image_size then."""
    if not (model.folder / "preprocessor_config.json").is_file():
        side = model.config.vision_config.image_size
        processor.image_processor.size = {"height": side, "width": side}
    return processor


def caption_one(image, model, processor, prompt=None, **generate_kwargs):
    """Caption one image (path, PIL image or array). Returns (caption, token_ids, mean_logprob).

    mean_logprob is the mean log-probability of the generated tokens (prompt excluded, the
    closing [SEP] included) under the model's raw logits at each step: generate records them
    (output_logits), with beam_indices naming the beam each token came from, so no second
    forward pass is needed.
    """
    inputs = processor(images=image, text=prompt)
    out = model.generate(
        **inputs, **generate_kwargs, return_dict_in_generate=True, output_logits=True
    )
    ids = out.sequences[0]
    text = processor.decode(ids, skip_special_tokens=True).strip()
    n_prompt = 1 if prompt is None else inputs["input_ids"].shape[1] - 1  # [DEC] + prompt words
    ids = _trim(ids, n_prompt, model)
    beams = out.get("beam_indices")  # (1, steps): the row of logits[step] each token came from
    chosen = []
    for step, token in enumerate(ids[n_prompt:]):
        row = out.logits[step][0 if beams is None else beams[0, step]]  # (V,)
        chosen.append(log_softmax(row)[token])
    return text, [int(t) for t in ids], float(np.mean(chosen)) if chosen else float("nan")


def _trim(ids, n_prompt, model):
    """Drop the pad fill after the first eos (the row's own caption ends there)."""
    sep = model.config.text_config.sep_token_id
    hits = np.nonzero(ids[n_prompt:] == sep)[0]
    return ids[: n_prompt + hits[0] + 1] if hits.size else ids


def caption(images, model=DEFAULT_MODEL, prompt=None, **generate_kwargs):
    """Caption an image or a list of images (paths, PIL images or arrays) with a BLIP checkpoint.

    generate_kwargs are transformers' (num_beams, max_new_tokens, ...).
    """
    blip, processor = load_captioner(str(model))
    single = not isinstance(images, (list, tuple))
    captions = [
        caption_one(im, blip, processor, prompt, **generate_kwargs)[0]
        for im in ([images] if single else images)
    ]
    return captions[0] if single else captions


def find_images(paths):
    """Files as given; folders walked (sorted, recursively) for image files."""
    found = []
    for p in map(pathlib.Path, paths):
        if p.is_dir():
            found += sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
            )
        elif p.exists():
            found.append(p)
        else:
            raise InputError(f"{p}: no such file or folder")
    return found


DEFAULT_VQA_MODEL = "Salesforce/blip-vqa-base"
DEFAULT_ITM_MODEL = "Salesforce/blip-itm-base-coco"


@functools.lru_cache(maxsize=2)
def load_task_model(class_name, model, dtype="float32"):
    """(model, processor) for any BLIP task class by name, loaded once per process."""
    from . import blip_tasks
    from .processing import BlipProcessor

    loaded = getattr(blip_tasks, class_name).from_pretrained(model, dtype=dtype)
    return loaded, _sized_processor(BlipProcessor.from_pretrained(model), loaded)


def answer(image, question, model=DEFAULT_VQA_MODEL, **generate_kwargs):
    """Answer a question about an image with a BLIP VQA checkpoint -> (answer, token_ids)."""
    vqa, processor = load_task_model("BlipForQuestionAnswering", str(model))
    inputs = processor(images=image, text=question)
    ids = vqa.generate(**inputs, **generate_kwargs)[0]
    return processor.decode(ids, skip_special_tokens=True).strip(), [int(t) for t in ids]


def match(image, texts, model=DEFAULT_ITM_MODEL):
    """Score texts against an image with a BLIP retrieval checkpoint, best first.

    Returns [{"text", "itm_probability", "itc_cosine"}]: the image-text-matching head's
    probability of "match" (softmax over its 2 logits) and the contrastive cosine similarity.
    """
    if isinstance(texts, str):
        texts = [texts]
    itm, processor = load_task_model("BlipForImageTextRetrieval", str(model))
    text = processor(text=list(texts), padding=True)
    pixels = processor(images=image)["pixel_values"]
    # ITM reads each text against the one image (the batches broadcast): one vision forward
    logits = itm(
        input_ids=text["input_ids"],
        attention_mask=text["attention_mask"],
        pixel_values=pixels,
        use_itm_head=True,
    ).itm_score
    e = np.exp(logits - logits.max(-1, keepdims=True))
    prob = e[:, 1] / e.sum(-1)
    cosine = itm(
        input_ids=text["input_ids"],
        attention_mask=text["attention_mask"],
        pixel_values=pixels,
        use_itm_head=False,
    ).itm_score[0]
    rows = [
        {"text": t, "itm_probability": float(p), "itc_cosine": float(c)}
        for t, p, c in zip(texts, prob, cosine)
    ]
    return sorted(rows, key=lambda r: -r["itm_probability"])
