"""BlipModel, BlipForImageTextRetrieval and BlipForQuestionAnswering against transformers'
golden outputs (golden/blip_tasks): every recorded module, every output field, generated ids
exactly; key coverage for each class; the errors these classes raise."""

import numpy as np
import pytest
from golden_utils import (
    assert_trace_close,
    case_dirs,
    flat_keys,
    load_case,
    model_dir,
    output_arrays,
)
from tolerances import for_case

import minblip
from minblip import trace
from minblip.weights import KeyTracker

CASES = case_dirs("blip_tasks")


def _run(case, meta, inputs):
    model = getattr(minblip, meta["class"]).from_pretrained(model_dir(case), dtype=meta["dtype"])
    method = model if meta["method"] == "forward" else getattr(model, meta["method"])
    with trace.record() as acts:
        out = method(**inputs, **meta["kwargs"])
    return model, out, acts


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_matches_transformers(case):
    meta, inputs, expected = load_case(case)
    full = (case / "weights.json").exists()
    before = {k: v.copy() for k, v in inputs.items()}
    _, out, acts = _run(case, meta, inputs)
    acts.update(output_arrays(out))
    assert_trace_close(
        expected, acts, meta["order"] + meta["outputs"], what=case.name, **for_case(meta, full)
    )
    for k, v in before.items():  # transformers' BLIP generate edits input_ids in place; we never do
        np.testing.assert_array_equal(inputs[k], v, err_msg=f"{k} was modified")


@pytest.mark.parametrize(
    "name", ["model_forward_loss", "itm_head", "itc_2x3", "vqa_forward_labels"]
)
def test_every_checkpoint_tensor_is_read(name):
    """The calls of one class together read every tensor of its checkpoint, or the tensor is on
    the allow-list below."""
    case = next(c for c in CASES if c.name == name)
    meta, inputs, _ = load_case(case)
    model = getattr(minblip, meta["class"]).from_pretrained(model_dir(case))
    tracked = KeyTracker(model.params)
    model.params = tracked
    model(**inputs, **meta["kwargs"])
    if name == "model_forward_loss":  # the text tower's cross-attention serves only this call
        model.get_multimodal_features(
            inputs["input_ids"], inputs["pixel_values"], inputs["attention_mask"]
        )
    if name == "itm_head":  # ITM and ITC use disjoint heads: run the other one too
        model(**inputs, use_itm_head=False)
    if name == "itc_2x3":
        model(**{k: v[:2] for k, v in inputs.items()}, use_itm_head=True)
    unread = set(flat_keys(tracked._node)) - tracked.reads
    assert not unread, f"{meta['class']} never reads {sorted(unread)}"


def test_text_and_image_batches_that_torch_cannot_broadcast_are_refused():
    """Equal batches, or one of them 1, pair (golden cases *_one_image_* / *_two_images_one_*);
    2 texts against 3 images make torch fail inside transformers, and minblip refuse."""
    case = next(c for c in CASES if c.name == "itm_head")
    meta, inputs, _ = load_case(case)
    model = minblip.BlipForImageTextRetrieval.from_pretrained(model_dir(case))
    px = inputs["pixel_values"]
    three = np.concatenate([px, px[:1]])
    with pytest.raises(minblip.InputError, match="2 texts for 3 images: pass one per image"):
        model(input_ids=inputs["input_ids"], pixel_values=three, use_itm_head=True)
    assert model(
        input_ids=inputs["input_ids"], pixel_values=three, use_itm_head=False
    ).itm_score.shape == (3, 2)
    bm = minblip.BlipModel.from_pretrained(
        model_dir(next(c for c in CASES if c.name == "model_forward_loss"))
    )
    with pytest.raises(minblip.InputError, match="2 texts for 3 images"):
        bm.get_multimodal_features(input_ids=inputs["input_ids"], pixel_values=three)
    vqa_case = next(c for c in CASES if c.name == "vqa_forward_labels")
    _, vin, _ = load_case(vqa_case)
    vqa = minblip.BlipForQuestionAnswering.from_pretrained(model_dir(vqa_case))
    vthree = np.concatenate([vin["pixel_values"], vin["pixel_values"][:1]])
    with pytest.raises(minblip.InputError, match="2 questions for 3 images"):
        vqa.generate(input_ids=vin["input_ids"], pixel_values=vthree)
    with pytest.raises(minblip.InputError, match="takes no pad_token_id"):  # as 5.23 refuses it
        vqa.generate(input_ids=vin["input_ids"], pixel_values=vin["pixel_values"], pad_token_id=1)
    with pytest.raises(minblip.InputError, match="labels have shape"):  # 1 answer, 2 questions
        vqa(input_ids=vin["input_ids"], pixel_values=vin["pixel_values"], labels=vin["labels"][:1])


def test_vqa_refuses_unequal_vision_and_text_widths():
    case = next(c for c in CASES if c.name == "itm_head")  # vision 24 wide, text 36 wide
    with pytest.raises(minblip.ConfigError, match="hidden_size"):
        minblip.BlipForQuestionAnswering.from_pretrained(model_dir(case))


def test_vqa_forward_needs_labels_or_decoder_ids():
    case = next(c for c in CASES if c.name == "vqa_forward_labels")
    meta, inputs, _ = load_case(case)
    model = minblip.BlipForQuestionAnswering.from_pretrained(model_dir(case))
    inputs.pop("labels")
    with pytest.raises(minblip.InputError, match="labels"):
        model(**inputs)


def test_blip_model_return_dict_false_nests_tuples():
    """As transformers: with return_dict=False the towers' outputs come back as tuples too."""
    case = next(c for c in CASES if c.name == "model_forward_loss")
    _, inputs, _ = load_case(case)
    model = minblip.BlipModel.from_pretrained(model_dir(case))
    as_dict = model(**inputs, return_loss=True)
    as_tuple = model(**inputs, return_loss=True, return_dict=False)
    assert isinstance(as_tuple[-1], tuple) and isinstance(as_tuple[-2], tuple)
    np.testing.assert_array_equal(as_tuple[-2][0], as_dict.text_model_output.last_hidden_state)
    np.testing.assert_array_equal(as_tuple[-1][0], as_dict.vision_model_output.last_hidden_state)
