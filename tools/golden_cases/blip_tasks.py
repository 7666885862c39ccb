"""golden/blip_tasks/: BlipModel (contrastive), BlipForImageTextRetrieval (ITM, ITC) and
BlipForQuestionAnswering (forward with labels, generate) from transformers 5.23.0.

Tiny configs use a 99-word vocabulary with [DEC] = 30 (bos), [SEP] = 3, [PAD] = 0, so generation
stops and pads inside the table; texts start with 1 (the tiny [CLS]) and end with [SEP], padded
on the right as the BERT tokenizer pads. Vision and text widths differ (24 vs 36), so every
cross-attention key/value projection is rectangular. Full-size cases use the hub dimensions of
blip-itm-base-coco and blip-vqa-base with weights regenerated from their seed.
"""

from functools import partial
from pathlib import Path

import golden_common as gc

from golden_cases.caption import TEXT_BASE, TEXT_TINY, VISION_TINY, texts  # noqa: F401 (texts: re-exported)
from golden_cases.vision import BASE as VISION_BASE
from minblip.testing import random_pixels as pixels

TINY = dict(
    text_config=TEXT_TINY, vision_config=VISION_TINY, projection_dim=16, image_text_hidden_size=12
)
# VQA's answer decoder cross-attends to the question encoding through key/value projections sized
# for the *vision* width (BlipConfig sets encoder_hidden_size = vision hidden_size), so BLIP VQA
# only runs when the two widths are equal (768 and 768 on the hub); transformers fails otherwise.
VQA_TINY = dict(TINY, vision_config=dict(VISION_TINY, hidden_size=36, num_attention_heads=4))
# blip-itm-base-coco and blip-vqa-base have the text config of blip-image-captioning-base
BASE = dict(text_config=TEXT_BASE, vision_config=VISION_BASE)


FULL_PIXEL_SEED = 24


def cases():
    ids2, mask2 = texts(11, [7, 5])
    ids3, mask3 = texts(12, [6, 8, 4])
    px2, px1 = pixels(21, 2, 32, 32), pixels(22, 1, 32, 32)
    ans_ids, ans_mask = texts(13, [4, 3], cls=30)  # answers start with [DEC] as in BLIP training
    pair2 = {"input_ids": ids2, "attention_mask": mask2, "pixel_values": px2}  # text b, image b
    texts3 = {"input_ids": ids3, "attention_mask": mask3}
    all3 = {**texts3, "pixel_values": px2}  # every image with every text
    one_image = {**texts3, "pixel_values": px1}  # 3 texts x 1 image
    one_text = {"input_ids": ids2[:1], "attention_mask": mask2[:1], "pixel_values": px2}
    itm, itc = {"use_itm_head": True}, {"use_itm_head": False}
    model = partial(gc.case, cls="BlipModel", config=TINY)
    ret = partial(gc.case, cls="BlipForImageTextRetrieval", config=TINY)
    vqa = partial(gc.case, cls="BlipForQuestionAnswering", config=VQA_TINY)
    beams = {"method": "generate", "kwargs": {"num_beams": 3, "max_new_tokens": 6}}
    # --- BlipModel (no public checkpoint holds its text tower; random weights are all there is)
    out = [
        model(
            "model_forward_loss",
            pair2,
            kwargs={"return_loss": True},
            notes="2 texts x 2 images, contrastive loss",
        ),
        model(
            "model_forward_3x1",
            one_image,
            kwargs={"output_hidden_states": True},
            notes="3 padded texts x 1 image",
        ),
        model("model_text_features", texts3, method="get_text_features"),
        model("model_image_features", {"pixel_values": px2}, method="get_image_features"),
        model("model_multimodal_features", pair2, method="get_multimodal_features"),
        model("model_float64", pair2, dtype="float64", kwargs={"return_loss": True}),
    ]
    # --- BlipForImageTextRetrieval
    out += [
        ret("itm_head", pair2, kwargs=itm, notes="image b paired with text b"),
        ret("itc_2x3", all3, kwargs=itc, notes="cosine of every image with every text"),
        ret("itm_float64", pair2, dtype="float64", kwargs=itm),
        ret("itc_float64", all3, dtype="float64", kwargs=itc),
    ]
    # --- BlipForQuestionAnswering
    decoder_ids = {"decoder_input_ids": ans_ids, "decoder_attention_mask": ans_mask}
    px3 = pixels(23, 3, 32, 32)
    out += [
        vqa(
            "vqa_forward_labels",
            {**pair2, "labels": ans_ids},
            notes="decoder_input_ids = labels (no shift in the wrapper); loss only",
        ),
        vqa(
            "vqa_forward_decoder_ids",
            {**pair2, **decoder_ids},
            notes="no labels: only vision outputs are returned; the decoder trace holds logits",
        ),
        vqa(
            "vqa_generate_greedy",
            pair2,
            method="generate",
            notes="question padding is NOT masked in the decoder's cross-attention (all ones)",
        ),
        vqa("vqa_generate_beams3", pair2, **beams),
        vqa(
            "vqa_generate_float64",
            {**texts3, "pixel_values": px3},
            method="generate",
            dtype="float64",
            kwargs={"max_new_tokens": 8},
        ),
    ]
    # --- one image for several texts, one text for several images: torch broadcasts the batches
    # of the cross-attention as transformers passes them; outputs only (size budget)
    ans3, _ = texts(15, [4, 3, 5], cls=30)
    out += [
        ret(
            "itm_one_image_three_texts",
            one_image,
            record=(),
            kwargs=itm,
            notes="3 padded texts scored against one image: itm_score (3, 2)",
        ),
        ret("itm_two_images_one_text", one_text, record=(), kwargs=itm),
        model(
            "multimodal_one_image_three_texts",
            one_image,
            record=(),
            method="get_multimodal_features",
        ),
        vqa("vqa_forward_one_image_three_questions", {**one_image, "labels": ans3}, record=()),
        vqa(
            "vqa_generate_one_image_three_questions_beams2",
            one_image,
            method="generate",
            kwargs={"num_beams": 2, "max_new_tokens": 6},
        ),
        vqa(
            "vqa_generate_two_images_one_question",
            one_text,
            method="generate",
            kwargs={"max_new_tokens": 6},
        ),
    ]
    # --- full size: weights regenerated from the seed; few modules recorded (size budget)
    bid, bmask = texts(14, [9], vocab=30522, cls=101, sep=102, low=1000)
    base = {"input_ids": bid, "attention_mask": bmask}
    base["pixel_values"] = pixels(FULL_PIXEL_SEED, 1, 384, 384)
    full = {"config": BASE, "full_size": True, "record": ()}
    out += [
        ret("itm_base_coco", base, **full, kwargs=itm, notes="blip-itm-base-coco dims"),
        ret("itc_base_coco", base, **full, kwargs=itc, notes="blip-itm-base-coco dims"),
        vqa(
            "vqa_base",
            base,
            **full,
            method="generate",
            notes="blip-vqa-base dims, greedy, 20 new tokens at most",
        ),
    ]
    return out


# Seeds per model: cases of one class and config share the weights, so they share one model
# folder on disk (meta.json "model_dir" points at it) -- golden/ must stay under 20 MB.
SEEDS = {"BlipModel": 100, "BlipForImageTextRetrieval": 101, "BlipForQuestionAnswering": 102}
# Full-size cases keep only the small outputs (the 577x768 feature maps are 1.7 MB each; the
# tiny cases localise a divergence module by module).
KEEP_FULL = ("out", "out.itm_score")


def build(root: Path):
    gc.build_group(
        Path(root) / "blip_tasks",
        cases(),
        SEEDS,
        full_pixel_seed=FULL_PIXEL_SEED,
        keep_full=KEEP_FULL,
    )
