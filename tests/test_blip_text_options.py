"""The BLIP text tower's and captioner's forward options against transformers
(golden/blip_text_options): inputs_embeds, encoder_embeds, logits_to_keep, and past_key_values +
use_cache continuing a call as transformers' cache does."""

import numpy as np
import pytest
from golden_utils import case_dirs, check_against_transformers, load_case, model_dir
from tolerances import for_case

import minblip

CASES = case_dirs("blip_text_options")


def _case(name):
    return next(c for c in CASES if c.name == name)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_matches_transformers(case):
    check_against_transformers(case)


def _two_calls(past_as_list=False):
    """text_lm_cache's first call, then its continuation with the returned past_key_values."""
    case = _case("text_lm_cache")
    meta, inputs, expected = load_case(case)
    model = minblip.BlipTextLMHeadModel.from_pretrained(model_dir(case))
    first = model(**inputs, **meta["kwargs"])
    with np.load(case / "continuation.npz") as f:
        second = {k: f[k] for k in f.files}
    past = first.past_key_values
    if past_as_list:  # a bare self-attention cache, as transformers wraps a DynamicCache
        past = past["self_attention"]
    out = model(
        input_ids=second["inputs.input_ids"],
        attention_mask=second["inputs.attention_mask"],
        encoder_hidden_states=inputs["encoder_hidden_states"],
        past_key_values=past,
        use_cache=True,
    )
    return meta, first, out, second


@pytest.mark.parametrize("past_as_list", [False, True])
def test_cache_continues_as_transformers(past_as_list):
    """The second call, on the remaining tokens with the first call's cache, gives transformers'
    logits, and the cache it returns holds transformers' keys and values (self-attention over
    all 7 tokens; cross-attention computed once from the encoder states)."""
    meta, first, out, second = _two_calls(past_as_list)
    tol = for_case(meta, False)
    np.testing.assert_allclose(out.logits, second["out.logits"], **tol)
    cache = out.past_key_values
    for part, name in (("self", "self_attention"), ("cross", "cross_attention")):
        for i, (k, v) in enumerate(cache[name]):
            np.testing.assert_allclose(k, second[f"cache.{part}.{i}.key"], **tol)
            np.testing.assert_allclose(v, second[f"cache.{part}.{i}.value"], **tol)


def test_use_cache_off_and_labels_return_no_cache():
    case = _case("text_lm_cache")
    meta, inputs, _ = load_case(case)
    model = minblip.BlipTextLMHeadModel.from_pretrained(model_dir(case))
    assert model(**inputs).past_key_values is not None  # the config's use_cache=True
    assert model(**inputs, use_cache=False).past_key_values is None
    labels = inputs["input_ids"]
    assert model(**inputs, labels=labels, use_cache=True).past_key_values is None
    # a continued call returns the cache it extended, as transformers returns the one it was given
    first = model(**inputs)
    with np.load(case / "continuation.npz") as f:
        rest, full_mask = f["inputs.input_ids"], f["inputs.attention_mask"]
    later = model(
        input_ids=rest,
        attention_mask=full_mask,
        past_key_values=first.past_key_values,
        use_cache=False,
    )
    assert later.past_key_values["self_attention"][0][0].shape[2] == full_mask.shape[1]
    text = minblip.BlipTextModel.from_pretrained(model_dir(_case("text_model_inputs_embeds")))
    # the encoder mode keeps no cache, whatever use_cache says (transformers sets it False)
    assert text(input_ids=inputs["input_ids"], use_cache=True).past_key_values is None


def test_bad_inputs_are_named():
    case = _case("text_model_inputs_embeds")
    _, inputs, _ = load_case(case)
    model = minblip.BlipTextModel.from_pretrained(model_dir(case))
    ids = np.ones(inputs["attention_mask"].shape, np.int64)
    with pytest.raises(minblip.InputError, match="both input_ids and inputs_embeds"):
        model(input_ids=ids, inputs_embeds=inputs["inputs_embeds"])
    with pytest.raises(minblip.InputError, match=r"inputs_embeds must be \(batch, tokens, 36\)"):
        model(inputs_embeds=inputs["inputs_embeds"][..., :5])
    with pytest.raises(minblip.InputError, match=r"encoder_embeds must be"):
        model(encoder_embeds=inputs["inputs_embeds"][0])
    with pytest.raises(minblip.InputError, match="input_ids"):
        model()
    _, first, _, second = _two_calls()
    lm = minblip.BlipTextLMHeadModel.from_pretrained(model_dir(_case("text_lm_cache")))
    with pytest.raises(minblip.InputError, match="the past and new tokens"):
        lm(
            input_ids=second["inputs.input_ids"],
            attention_mask=second["inputs.attention_mask"][:, 4:],
            past_key_values=first.past_key_values,
        )
