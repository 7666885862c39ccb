"""Blip2ForImageTextRetrieval (ITM, ITC) and the projection models against transformers
(golden/blip2_tasks), per module where the case records them."""

import numpy as np
import pytest
from golden_utils import assert_trace_close, case_dirs, load_case, model_dir, output_arrays
from tolerances import for_case

import minblip
from minblip import trace
from minblip.weights import KeyTracker

CASES = case_dirs("blip2_tasks")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_matches_transformers(case):
    meta, inputs, expected = load_case(case)
    model = getattr(minblip, meta["class"]).from_pretrained(model_dir(case), dtype=meta["dtype"])
    with trace.record() as acts:
        out = model(**inputs, **meta["kwargs"])
    acts.update(output_arrays(out))
    assert_trace_close(
        expected, acts, meta["order"] + meta["outputs"], what=case.name, **for_case(meta, False)
    )


def test_itm_and_itc_together_read_every_checkpoint_tensor():
    itm, itc = (next(c for c in CASES if c.name == n) for n in ("itm", "itc_2x3"))
    model = minblip.Blip2ForImageTextRetrieval.from_pretrained(model_dir(itm))
    tracked = KeyTracker(model.params)
    model.params = tracked
    for case in (itm, itc):
        meta, inputs, _ = load_case(case)
        model(**inputs, **meta["kwargs"])
    every = set(_flat_keys(tracked._node))
    assert every - tracked.reads == set(), f"never read: {sorted(every - tracked.reads)}"


def _flat_keys(node, prefix=""):
    if isinstance(node, np.ndarray):
        yield prefix[:-1]
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _flat_keys(v, f"{prefix}{k}.")
    else:
        for i, v in enumerate(node):
            yield from _flat_keys(v, f"{prefix}{i}.")


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
