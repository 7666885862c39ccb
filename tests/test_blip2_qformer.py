"""Blip2QFormerModel against transformers' golden outputs, per module (golden/blip2_qformer)."""

import numpy as np
import pytest
from golden_utils import case_dirs, check_against_transformers, load_case, model_dir, unread_tensors

import minblip

CASES = case_dirs("blip2_qformer")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_qformer_matches_transformers(case):
    check_against_transformers(case)


@pytest.mark.parametrize("name", ["queries_and_text", "cross_every_layer_odd_heads"])
def test_forward_reads_every_checkpoint_tensor(name):
    case = next(c for c in CASES if c.name == name)
    meta, inputs, _ = load_case(case)
    model = minblip.Blip2QFormerModel.from_pretrained(model_dir(case))
    unread = unread_tensors(model, lambda m: m(**inputs, **meta["kwargs"]))
    assert unread == set(), f"never read: {sorted(unread)}"


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
