"""One-call captioning for people with a folder of photos (used by `minblip caption`).

import minblip
minblip.caption("photo.jpg")                                   # -> "a dog on a beach"
minblip.caption(["a.jpg", "b.png"], prompt="a picture of")      # -> ["...", "..."]
minblip.caption("photo.jpg", model="/models/blip2-opt-2.7b")    # a BLIP-2 checkpoint
minblip.answer("photo.jpg", "what is the man holding?", model="/models/blip2-flan-t5-xl")

The checkpoint's config.json says which model it is: model_type "blip" (BLIP: the captioning,
VQA and retrieval classes) or "blip-2" (Blip2ForConditionalGeneration with OPT or Flan-T5).
"""

import functools
import pathlib

import numpy as np

from .config import is_decoder_only
from .errors import ConfigError, InputError
from .ops import log_softmax

DEFAULT_MODEL = "Salesforce/blip-image-captioning-base"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


BLIP2_QUESTION = "Question: {} Answer:"  # the VQA prompt of BLIP-2's model cards


def checkpoint_kind(model):
    """(folder, model_type, architectures) from a checkpoint's config.json, nothing else read."""
    from .config import read_json
    from .hub import resolve

    folder = resolve(model)
    d = read_json(folder / "config.json")
    if not isinstance(d, dict):
        raise ConfigError(f"{folder / 'config.json'}: expected a JSON object at the top level")
    return folder, d.get("model_type"), list(d.get("architectures") or [])


def is_blip2(model):
    return checkpoint_kind(model)[1] == "blip-2"


@functools.lru_cache(maxsize=2)
def load_captioner(model=DEFAULT_MODEL, dtype="float32"):
    """(model, processor) for a captioning checkpoint folder or hub id, loaded once per process:
    BlipForConditionalGeneration + BlipProcessor for model_type "blip",
    Blip2ForConditionalGeneration + Blip2Processor for "blip-2"."""
    folder, model_type, architectures = checkpoint_kind(model)
    if model_type == "blip-2":
        return _load_blip2(folder, architectures, dtype)
    if model_type != "blip":
        raise ConfigError(
            f"{folder / 'config.json'}: model_type {model_type!r}; captioning takes a BLIP "
            'checkpoint (model_type "blip", BlipForConditionalGeneration) or a BLIP-2 one '
            '("blip-2", Blip2ForConditionalGeneration with OPT or Flan-T5)'
        )
    from .blip import BlipForConditionalGeneration
    from .processing import BlipProcessor

    loaded = BlipForConditionalGeneration.from_pretrained(model, dtype=dtype)
    return loaded, sized_processor(BlipProcessor.from_pretrained(model), loaded)


def _load_blip2(folder, architectures, dtype):
    """Blip2ForConditionalGeneration + Blip2Processor. A BLIP-2 checkpoint without a language
    model (blip2-itm-vit-g: Blip2ForImageTextRetrieval) cannot caption: say so by name."""
    from .blip2 import Blip2ForConditionalGeneration
    from .processing import Blip2Processor

    generative = ("Blip2ForConditionalGeneration", "Blip2Model")
    if architectures and not any(a in generative for a in architectures):
        raise ConfigError(
            f"{folder}: a {', '.join(architectures)} checkpoint has no language model to write "
            "text with; captions and answers need a Blip2ForConditionalGeneration checkpoint "
            "(blip2-opt-2.7b, blip2-flan-t5-xl, ...)"
        )
    loaded = Blip2ForConditionalGeneration.from_pretrained(folder, dtype=dtype)
    processor = Blip2Processor.from_pretrained(folder)
    if processor.num_query_tokens is None:
        # hub folders saved before the 2024 update have no processor_config.json: the model's
        # own count is the one its image_token_index placeholders must match
        processor.num_query_tokens = loaded.config.num_query_tokens
    return loaded, sized_processor(processor, loaded)


def sized_processor(processor, model):
    """A folder without preprocessor_config.json gets the class defaults (384 px), which fit
    BLIP-base but not every checkpoint: size the images to the model's own image_size then."""
    folder = model.folder
    if not any(
        (folder / f).is_file() for f in ("preprocessor_config.json", "processor_config.json")
    ):
        side = model.config.vision_config.image_size
        processor.image_processor.size = {"height": side, "width": side}
    return processor


def caption_one(image, model, processor, prompt=None, **generate_kwargs):
    """Caption one image (path, PIL image or array). Returns (caption, token_ids, mean_logprob).

    caption is the new text alone (the prompt is not repeated), special tokens skipped.
    token_ids is generate's row as transformers returns it, through the first eos: BLIP's
    [DEC] + prompt + caption; BLIP-2 OPT's image placeholders + </s> + prompt + caption; BLIP-2
    T5's decoder ids (decoder_start_token_id + caption). mean_logprob is the mean
    log-probability of the generated tokens (prompt excluded, the closing eos included) under
    the model's raw logits at each step: generate records them (output_logits), with
    beam_indices naming the beam each token came from, so no second forward pass is needed.
    """
    inputs = processor(images=image, text=prompt)
    out = model.generate(
        **inputs, **generate_kwargs, return_dict_in_generate=True, output_logits=True
    )
    ids = out.sequences[0]
    n_prompt = prompt_length(model, inputs, prompt)
    ids = trim_caption(ids, n_prompt, model)
    text = processor.decode(ids[n_prompt:], skip_special_tokens=True).strip()
    beams = out.get("beam_indices")  # (1, steps): the row of logits[step] each token came from
    chosen = []
    for step, token in enumerate(ids[n_prompt:]):
        row = out.logits[step][0 if beams is None else beams[0, step]]  # (V,)
        chosen.append(log_softmax(row)[token])
    return text, [int(t) for t in ids], float(np.mean(chosen)) if chosen else float("nan")


def prompt_length(model, inputs, prompt):
    """How many leading ids of generate's row are not generated: BLIP's [DEC] + prompt words
    (the prompt's closing [SEP] is dropped before generating); BLIP-2 OPT's whole input row
    (placeholders + </s> + prompt, or placeholders + </s> when there is none, as 5.23 builds
    it); BLIP-2 T5's decoder_start_token_id (the prompt went to the encoder)."""
    cfg = model.config
    if cfg.model_type != "blip-2":
        return 1 if prompt is None else inputs["input_ids"].shape[1] - 1
    if is_decoder_only(cfg):
        return cfg.num_query_tokens + 1 if prompt is None else inputs["input_ids"].shape[1]
    return 1


def trim_caption(ids, n_prompt, model):
    """Drop the pad fill after the first eos (the row's own caption ends there)."""
    text = model.config.text_config
    sep = text.eos_token_id if model.config.model_type == "blip-2" else text.sep_token_id
    hits = np.nonzero(ids[n_prompt:] == sep)[0]
    return ids[: n_prompt + hits[0] + 1] if hits.size else ids


def caption(images, model=DEFAULT_MODEL, prompt=None, **generate_kwargs):
    """Caption an image or a list of images (paths, PIL images or arrays) with a BLIP or BLIP-2
    checkpoint (folder or hub id; config.json's model_type says which).

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
    return loaded, sized_processor(BlipProcessor.from_pretrained(model), loaded)


def answer(image, question, model=DEFAULT_VQA_MODEL, **generate_kwargs):
    """Answer a question about an image -> (answer, token_ids).

    A BLIP VQA checkpoint reads the question in its text encoder; a BLIP-2 checkpoint
    (model_type "blip-2") continues the prompt "Question: {question} Answer:", as BLIP-2's
    model cards write it (BLIP2_QUESTION; answer_prompt gives the prompt), and the answer is
    the new text alone."""
    if is_blip2(str(model)):
        blip2, processor = load_captioner(str(model))
        text, ids, _ = caption_one(
            image, blip2, processor, answer_prompt(question), **generate_kwargs
        )
        return text, ids
    vqa, processor = load_task_model("BlipForQuestionAnswering", str(model))
    inputs = processor(images=image, text=question)
    ids = vqa.generate(**inputs, **generate_kwargs)[0]
    return processor.decode(ids, skip_special_tokens=True).strip(), [int(t) for t in ids]


def answer_prompt(question):
    """The prompt BLIP-2's model cards use for a question: "Question: {q} Answer:"."""
    return BLIP2_QUESTION.format(question.strip())


def load_itm(model=DEFAULT_ITM_MODEL):
    """(BlipForImageTextRetrieval, BlipProcessor); any other checkpoint refused by name, before
    its weights are read."""
    folder, model_type, architectures = checkpoint_kind(str(model))
    if model_type != "blip" or (architectures and "BlipForImageTextRetrieval" not in architectures):
        kind = ", ".join(architectures) or f"model_type {model_type!r}"
        raise ConfigError(
            f"{folder}: a {kind} checkpoint cannot score image-text matches; match takes a BLIP "
            'retrieval checkpoint (model_type "blip", BlipForImageTextRetrieval, e.g. '
            f"{DEFAULT_ITM_MODEL} or Salesforce/blip-itm-large-coco)"
        )
    return load_task_model("BlipForImageTextRetrieval", str(model))


def match(image, texts, model=DEFAULT_ITM_MODEL):
    """Score texts against an image with a BLIP retrieval checkpoint, best first.

    Returns [{"text", "itm_probability", "itc_cosine"}]: the image-text-matching head's
    probability of "match" (softmax over its 2 logits) and the contrastive cosine similarity.
    """
    if isinstance(texts, str):
        texts = [texts]
    itm, processor = load_itm(model)
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
