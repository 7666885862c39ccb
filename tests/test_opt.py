"""OPTForCausalLM against transformers' golden outputs (golden/opt): every recorded module of
forward, loss, logits, generate's ids (exactly) and scores; key coverage; the KV cache against
full recomputation; the errors it raises."""

import json

import numpy as np
import pytest
from golden_utils import (
    assert_trace_close,
    case_dirs,
    load_case,
    model_dir,
    output_arrays,
    unread_tensors,
)
from tolerances import FP32_WIDE_LOGITS, for_case

import minblip
from minblip import trace
from minblip.config import opt_config_from_dict
from minblip.opt import embed_tokens, opt_forward

CASES = case_dirs("opt")


def _case(name):
    return next(c for c in CASES if c.name == name)


def _model(case, dtype=None):
    meta = load_case(case)[0]
    return minblip.OPTForCausalLM.from_pretrained(model_dir(case), dtype=dtype or meta["dtype"])


def _call(model, meta, inputs):
    method = model if meta["method"] == "forward" else model.generate
    return method(**inputs, **meta["kwargs"])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_matches_transformers(case):
    meta, inputs, expected = load_case(case)
    full = (case / "weights.json").exists()
    before = {k: v.copy() for k, v in inputs.items()}
    model = _model(case)
    with trace.record() as acts:
        out = _call(model, meta, inputs)
    acts.update(output_arrays(out))
    bar = FP32_WIDE_LOGITS if case.name == "full_width_generate" else for_case(meta, full)
    assert_trace_close(expected, acts, meta["order"] + meta["outputs"], what=case.name, **bar)
    for k, v in before.items():
        np.testing.assert_array_equal(inputs[k], v, err_msg=f"{k} was modified")


def test_the_golden_cases_cover_what_they_claim():
    """The trace cases hold every module kind; the generate cases hold ids."""
    meta, _, out = load_case(_case("forward_traced"))
    for key in (
        "model.decoder.layers.1.self_attn_layer_norm",
        "model.decoder.layers.1.self_attn",
        "model.decoder.layers.1.final_layer_norm",
        "model.decoder.layers.1",
        "model.decoder.final_layer_norm",
        "model.decoder",
        "out.attentions.1",
        "out.hidden_states.2",
    ):
        assert key in out, key
    for case in CASES:
        meta = json.loads((case / "meta.json").read_text())
        if meta["method"] == "generate":
            assert any(k in meta["outputs"] for k in ("out", "out.sequences")), case.name


@pytest.mark.parametrize(
    "names",
    [
        ("forward_traced",),
        ("project_in_out",),
        ("untied_no_final_norm",),
        ("no_bias_no_affine",),
        ("post_ln",),
        ("generate_greedy",),
    ],
    ids=lambda c: "+".join(c),
)
def test_every_checkpoint_tensor_is_read(names):
    """No allow-list: the tied files hold no lm_head.weight (5.23's save_pretrained drops it)
    and the head reads embed_tokens.weight; the untied one reads its own lm_head.weight."""
    case = _case(names[0])
    meta, inputs, _ = load_case(case)
    unread = unread_tensors(_model(case), lambda m: _call(m, meta, inputs))
    assert unread == set(), f"{names} never read {sorted(unread)}"


def test_kv_cache_steps_equal_full_recomputation():
    """Each decode step's logits (cached keys/values, one new token) equal an uncached forward
    over the final sequence at that position (float64), left padding included."""
    case = _case("generate_left_padded")
    _, inputs, _ = load_case(case)
    model = _model(case, dtype="float64")
    out = model.generate(
        **inputs, max_new_tokens=5, return_dict_in_generate=True, output_logits=True
    )
    ids = out.sequences
    mask = np.concatenate([inputs["attention_mask"], np.ones((ids.shape[0], 5), int)], axis=1)
    full = opt_forward(
        model.params,
        model.config,
        embed_tokens(ids, model.params, model.config),
        attention_mask=mask,
    )["logits"]
    P = ids.shape[1] - 5
    for i, step_logits in enumerate(out.logits):
        np.testing.assert_allclose(step_logits, full[:, P - 1 + i], atol=1e-6, err_msg=f"{i}")


def test_batch_rows_equal_single_runs_with_left_padding():
    case = _case("generate_left_padded")
    _, inputs, _ = load_case(case)
    model = _model(case)
    together = model.generate(**inputs, max_new_tokens=6)
    for b in range(together.shape[0]):
        keep = inputs["attention_mask"][b] == 1
        alone = model.generate(input_ids=inputs["input_ids"][b : b + 1, keep], max_new_tokens=6)
        np.testing.assert_array_equal(alone[0, keep.sum() :], together[b, -6:])


def test_forward_fields_cache_and_logits_to_keep():
    case = _case("forward_traced")
    _, inputs, _ = load_case(case)
    model = _model(case)
    ids = inputs["input_ids"]
    whole = model(input_ids=ids)
    assert list(whole) == ["logits", "past_key_values"]
    first = model(input_ids=ids[:, :4])
    rest = model(input_ids=ids[:, 4:], past_key_values=first.past_key_values)
    np.testing.assert_allclose(rest.logits, whole.logits[:, 4:], atol=1e-5)
    np.testing.assert_array_equal(model(input_ids=ids, logits_to_keep=2).logits.shape[1], 2)
    assert model(input_ids=ids, use_cache=False, return_dict=False)[0].shape == whole.logits.shape


def test_bad_inputs_are_named():
    case = _case("forward_traced")
    _, inputs, _ = load_case(case)
    model = _model(case)
    ids = inputs["input_ids"]
    n = model.config.max_position_embeddings
    with pytest.raises(minblip.InputError, match="max_position_embeddings=32"):
        model(input_ids=np.full((1, n + 1), 5))
    with pytest.raises(minblip.InputError, match=r"inputs_embeds must be .*\(batch, tokens, 20\)"):
        model(inputs_embeds=np.zeros((1, 3, 7), np.float32))
    with pytest.raises(minblip.InputError, match="exactly one of input_ids or inputs_embeds"):
        model(input_ids=ids, inputs_embeds=np.zeros((2, 7, 20), np.float32))
    with pytest.raises(minblip.InputError, match="outside the vocabulary"):
        model(input_ids=np.array([[2, 64]]))
    with pytest.raises(minblip.InputError, match="attention_mask has shape"):
        model(input_ids=ids, attention_mask=np.ones((2, 3)))
    with pytest.raises(minblip.InputError, match="labels have shape"):
        model(input_ids=ids, labels=ids[:, :3])
    with pytest.raises(minblip.InputError, match="inputs_embeds"):
        model.generate(input_ids=ids[:, :3], inputs_embeds=np.zeros((2, 7, 20), np.float32))
    with pytest.raises(minblip.InputError, match="the prompt has"):
        model.generate(input_ids=np.full((1, n), 5))


def test_bad_configs_are_named():
    with pytest.raises(minblip.ConfigError, match="activation_function 'nope'"):
        opt_config_from_dict({"activation_function": "nope"}, "cfg.json")
    with pytest.raises(minblip.ConfigError, match="word_embed_proj_dim"):
        opt_config_from_dict({"word_embed_proj_dim": 0}, "cfg.json")
    with pytest.raises(minblip.ConfigError, match="not divisible"):
        opt_config_from_dict({"hidden_size": 20, "num_attention_heads": 3}, "cfg.json")
    cfg = opt_config_from_dict({"hidden_size": 20, "num_attention_heads": 4}, "cfg.json")
    assert cfg.word_embed_proj_dim == 20 and cfg.model_type == "opt"


def test_golden_greedy_tokens_are_not_near_ties():
    """Greedy golden ids mean something only if each step's lead over the runner-up is far above
    the float32 error (<= 1e-5 here)."""
    meta, _, out = load_case(_case("generate_greedy_scores"))
    steps = [np.sort(out[k], axis=-1) for k in meta["outputs"] if k.startswith("out.scores.")]
    assert min(float((s[:, -1] - s[:, -2]).min()) for s in steps) > 1e-3
