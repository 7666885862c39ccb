"""Blip2ForImageTextRetrieval (ITM, ITC) and the projection models against transformers
(golden/blip2_tasks), per module where the case records them."""

import pytest
from golden_utils import case_dirs, check_against_transformers, load_case, model_dir, unread_tensors

import minblip

CASES = case_dirs("blip2_tasks")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_matches_transformers(case):
    check_against_transformers(case)


def test_itm_and_itc_together_read_every_checkpoint_tensor():
    itm, itc = (next(c for c in CASES if c.name == n) for n in ("itm", "itc_2x3"))
    model = minblip.Blip2ForImageTextRetrieval.from_pretrained(model_dir(itm))

    def both(m):
        for case in (itm, itc):
            meta, inputs, _ = load_case(case)
            m(**inputs, **meta["kwargs"])

    unread = unread_tensors(model, both)
    assert unread == set(), f"never read: {sorted(unread)}"


def test_itm_refuses_what_transformers_cannot_run():
    case = next(c for c in CASES if c.name == "itm")
    _, inputs, _ = load_case(case)
    model = minblip.Blip2ForImageTextRetrieval.from_pretrained(model_dir(case))
    px, ids, mask = inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"]
    with pytest.raises(minblip.InputError, match="ITM needs attention_mask"):
        model(pixel_values=px, input_ids=ids, use_image_text_matching_head=True)
    with pytest.raises(minblip.InputError, match="1 texts for 2 images"):
        model(
            pixel_values=px,
            input_ids=ids[:1],
            attention_mask=mask[:1],
            use_image_text_matching_head=True,
        )
    with pytest.raises(minblip.InputError, match="vocabulary"):
        model(pixel_values=px, input_ids=ids + 200, attention_mask=mask)
