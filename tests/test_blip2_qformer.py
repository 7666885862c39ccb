"""Blip2QFormerModel against transformers' golden outputs, per module (golden/blip2_qformer)."""

import numpy as np
import pytest
from golden_utils import assert_trace_close, case_dirs, load_case, model_dir, output_arrays
from tolerances import for_case

import minblip
from minblip import trace
from minblip.weights import KeyTracker

CASES = case_dirs("blip2_qformer")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_qformer_matches_transformers(case):
    meta, inputs, expected = load_case(case)
    model = minblip.Blip2QFormerModel.from_pretrained(model_dir(case), dtype=meta["dtype"])
    with trace.record() as acts:
        out = model(**inputs, **meta["kwargs"])
    acts.update(output_arrays(out))
    assert_trace_close(
        expected, acts, meta["order"] + meta["outputs"], what=case.name, **for_case(meta, False)
    )


@pytest.mark.parametrize("name", ["queries_and_text", "cross_every_layer_odd_heads"])
def test_forward_reads_every_checkpoint_tensor(name):
    case = next(c for c in CASES if c.name == name)
    meta, inputs, _ = load_case(case)
    model = minblip.Blip2QFormerModel.from_pretrained(model_dir(case))
    tracked = KeyTracker(model.params)
    model.params = tracked
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


def test_bad_inputs_are_named():
    case = next(c for c in CASES if c.name == "queries_only")
    _, inputs, _ = load_case(case)
    model = minblip.Blip2QFormerModel.from_pretrained(model_dir(case))
    q, img = inputs["query_embeds"], inputs["encoder_hidden_states"]
    with pytest.raises(minblip.InputError, match="no text FFN"):
        model(query_embeds=q, encoder_hidden_states=img, query_length=2)
    with pytest.raises(minblip.InputError, match="encoder_hidden_states must be given"):
        model(query_embeds=q)
    with pytest.raises(
        minblip.InputError, match=r"encoder_hidden_states must be \(batch, tokens, 20\)"
    ):
        model(query_embeds=q, encoder_hidden_states=img[..., :5])
    with pytest.raises(minblip.InputError, match="query_embeds must be"):
        model(query_embeds=q[..., :5], encoder_hidden_states=img)
    with pytest.raises(minblip.InputError, match="attention_mask has shape"):
        model(query_embeds=q, encoder_hidden_states=img, attention_mask=np.ones((2, 3)))
