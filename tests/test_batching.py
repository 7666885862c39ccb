"""A batch gives each item what it gets alone, wherever transformers 5.23 does too: padded texts
through the text encoder (ITM, ITC, BlipModel text features), captioning without a prompt and
with equal-length prompts, VQA with equal-length questions.

Not covered, because transformers itself is not batch-consistent there and minblip reproduces
it (docs/deviations.md): VQA with padded questions (5.23 never masks the decoder's
cross-attention, so it reads the pads) and captioning with prompts of unequal length (the
`[:, :-1]` slice cuts a pad instead of [SEP] from the shorter ones)."""

import numpy as np
import pytest
from golden_utils import case_dirs, load_case, model_dir

import minblip

TASKS = {c.name: c for c in case_dirs("blip_tasks")}
CAPTION = {c.name: c for c in case_dirs("caption")}


def _alone(inputs, b):
    """Item b on its own, its padding removed."""
    n = int(inputs["attention_mask"][b].sum())
    return {
        "input_ids": inputs["input_ids"][b : b + 1, :n],
        "attention_mask": inputs["attention_mask"][b : b + 1, :n],
        "pixel_values": inputs["pixel_values"][b : b + 1],
    }


@pytest.mark.parametrize("use_itm_head", [True, False])
def test_retrieval_rows_equal_items_alone(use_itm_head):
    case = TASKS["itm_head"]
    _, inputs, _ = load_case(case)
    model = minblip.BlipForImageTextRetrieval.from_pretrained(model_dir(case))
    assert inputs["attention_mask"].min() == 0  # the batch really is padded
    batch = model(**inputs, use_itm_head=use_itm_head).itm_score
    for b in range(len(inputs["input_ids"])):
        alone = model(**_alone(inputs, b), use_itm_head=use_itm_head).itm_score
        row = batch[b : b + 1] if use_itm_head else batch[b : b + 1, b : b + 1]
        np.testing.assert_allclose(alone, row, atol=1e-5, rtol=0)


def test_text_features_rows_equal_items_alone():
    case = TASKS["model_text_features"]
    _, inputs, _ = load_case(case)
    model = minblip.BlipModel.from_pretrained(model_dir(case))
    batch = model.get_text_features(**inputs).pooler_output
    for b in range(len(inputs["input_ids"])):
        n = int(inputs["attention_mask"][b].sum())
        alone = model.get_text_features(input_ids=inputs["input_ids"][b : b + 1, :n]).pooler_output
        np.testing.assert_allclose(alone, batch[b : b + 1], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("greedy_batch3", {}),
        ("greedy_batch3_prompt", {}),
        ("greedy_batch3", {"num_beams": 3, "max_new_tokens": 6}),
    ],
)
def test_caption_rows_equal_items_alone(name, kwargs):
    case = CAPTION[name]
    meta, inputs, _ = load_case(case)
    model = minblip.BlipForConditionalGeneration.from_pretrained(model_dir(case))
    batch = model.generate(**inputs, **{**meta["kwargs"], **kwargs})
    for b in range(len(inputs["pixel_values"])):
        alone = model.generate(
            **{k: v[b : b + 1] for k, v in inputs.items()}, **{**meta["kwargs"], **kwargs}
        )
        n = alone.shape[1]
        np.testing.assert_array_equal(alone[0], batch[b, :n])
        if "num_beams" not in kwargs:  # greedy pads a finished row; beams fill it with eos
            assert (batch[b, n:] == model.config.text_config.pad_token_id).all()


def test_vqa_rows_equal_items_alone_for_equal_length_questions():
    case = TASKS["vqa_generate_greedy"]
    _, inputs, _ = load_case(case)
    model = minblip.BlipForQuestionAnswering.from_pretrained(model_dir(case))
    ids = inputs["input_ids"].copy()
    ids[1] = ids[0][::-1].copy()  # two questions of the same length, no padding
    ids[1, 0], ids[1, -1] = ids[0, 0], ids[0, -1]
    px = inputs["pixel_values"]
    batch = model.generate(input_ids=ids, pixel_values=px)
    for b in range(2):
        alone = model.generate(input_ids=ids[b : b + 1], pixel_values=px[b : b + 1])
        np.testing.assert_array_equal(alone[0], batch[b, : alone.shape[1]])
