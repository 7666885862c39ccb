"""Blip2ForConditionalGeneration and Blip2Model (OPT and T5 language models) against
transformers' golden outputs (golden/blip2_generation): every recorded module of forward, the
loss, generate's ids (exactly) and scores, the feature helpers; key coverage; named errors."""

import json
import shutil

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
from tolerances import FP32_LOGITS, for_case

import minblip
from minblip import trace

CASES = case_dirs("blip2_generation")
KINDS = sorted({c.name.split("_")[0] for c in CASES if not c.name.startswith("model_")})


def is_logits(key):
    """The LM head's output: the language model's module output and the logits fields."""
    return key == "language_model" or key.endswith("logits") or key.endswith(".lm_head")


def _case(name):
    return next(c for c in CASES if c.name == name)


def _load(case):
    meta, inputs, expected = load_case(case)
    cls = getattr(minblip, meta["class"])
    return meta, inputs, expected, cls.from_pretrained(model_dir(case), dtype=meta["dtype"])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_matches_transformers(case):
    meta, inputs, expected, model = _load(case)
    before = {k: v.copy() for k, v in inputs.items()}
    call = model if meta["method"] == "forward" else getattr(model, meta["method"])
    with trace.record() as acts:
        out = call(**inputs, **meta["kwargs"])
    acts.update(output_arrays(out))
    keys = meta["order"] + meta["outputs"]
    bar = for_case(meta, False)
    if meta["dtype"] == "float32":
        # logits (and generate's scores, on the logits' scale) at the logits bar of
        # tests/tolerances.py; every other module at the tiny-model bar
        logits = [k for k in keys if is_logits(k) or meta["method"] == "generate"]
        assert_trace_close(expected, acts, logits, what=case.name, **FP32_LOGITS)
        keys = [k for k in keys if k not in logits]
    assert_trace_close(expected, acts, keys, what=case.name, **bar)
    for k, v in before.items():
        np.testing.assert_array_equal(inputs[k], v, err_msg=f"{k} was modified")


@pytest.mark.parametrize("kind", KINDS)
def test_the_image_reaches_the_golden_logits(kind):
    """Two images, the same (empty) prompt: the recorded first-step logits differ between them
    by far more than the bar, so a prefix that never reached the language model would fail."""
    _, _, out = load_case(_case(f"{kind}_generate_no_prompt"))
    first = out["out.logits.0"]
    assert np.abs(first[0] - first[1]).max() > 1e-2


@pytest.mark.parametrize("kind", KINDS)
def test_every_checkpoint_tensor_is_read(kind):
    case = _case(f"{kind}_forward")
    meta, inputs, _, model = _load(case)

    def run(m):
        m(**inputs, **meta["kwargs"])

    unread = unread_tensors(model, run)
    assert unread == set(), f"never read: {sorted(unread)}"


@pytest.mark.parametrize("kind", KINDS)
def test_placeholder_count_and_config_errors_are_named(kind):
    meta, inputs, _, model = _load(_case(f"{kind}_forward"))
    px, ids = inputs["pixel_values"], inputs["input_ids"]
    with pytest.raises(minblip.InputError, match="exactly num_query_tokens=4 image placeholder"):
        model(pixel_values=px, input_ids=ids[:, 1:])  # one placeholder short
    with pytest.raises(minblip.InputError, match="placeholder"):
        model.generate(pixel_values=px[:1], input_ids=ids)  # 2 prompts for 1 image
    with pytest.raises(minblip.InputError, match="needs pixel_values"):
        model.generate(input_ids=ids)


def test_a_prompt_beyond_the_position_table_is_named():
    """OPT's learned positions end at max_position_embeddings (64 here): Q placeholders + a long
    prompt past it gets a named error, in forward and in generate."""
    meta, inputs, _, model = _load(_case("opt_forward"))
    n = model.config.text_config.max_position_embeddings
    ids = np.concatenate([inputs["input_ids"], np.full((2, n), 7)], axis=1)
    with pytest.raises(minblip.InputError, match="max_position_embeddings"):
        model(pixel_values=inputs["pixel_values"], input_ids=ids)
    with pytest.raises(minblip.InputError, match="max_position_embeddings|max_length"):
        model.generate(pixel_values=inputs["pixel_values"], input_ids=ids)


def test_unsupported_language_model_is_refused_by_name(tmp_path):
    src = model_dir(_case("opt_forward"))
    shutil.copytree(src, tmp_path / "m")
    cfg = json.loads((tmp_path / "m/config.json").read_text())
    cfg["text_config"]["model_type"] = "llama"
    (tmp_path / "m/config.json").write_text(json.dumps(cfg))
    with pytest.raises(minblip.ConfigError, match="'llama' is not supported.*opt, t5"):
        minblip.Blip2ForConditionalGeneration.from_pretrained(tmp_path / "m")


def test_an_empty_prompt_without_bos_token_id_is_refused(tmp_path):
    """A T5 text_config without bos_token_id (T5Config has none by default): generate without
    input_ids has no start token (5.23 fails with an AttributeError); minblip names the key.
    Found by tools/fuzz_conformance.py."""
    folder = shutil.copytree(model_dir(_case("t5_forward")), tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    del config["text_config"]["bos_token_id"]
    (folder / "config.json").write_text(json.dumps(config))
    meta, inputs, _ = load_case(_case("t5_forward"))
    model = minblip.Blip2ForConditionalGeneration.from_pretrained(folder)
    with pytest.raises(minblip.ConfigError, match="bos_token_id"):
        model.generate(pixel_values=inputs["pixel_values"], max_new_tokens=2)


@pytest.mark.parametrize("kind", KINDS)
def test_mm_encoder_outputs_stand_for_the_pixels(kind):
    """5.23's forward takes get_image_features' output instead of pixel_values (not both)."""
    meta, inputs, expected, model = _load(_case(f"{kind}_forward"))
    px = inputs.pop("pixel_values")
    image = model.get_image_features(px)
    out = model(**inputs, mm_encoder_outputs={"image": image})
    np.testing.assert_allclose(out.logits, expected["out.logits"], atol=1e-4, rtol=0)
    with pytest.raises(minblip.InputError, match="not both"):
        model(pixel_values=px, **inputs, mm_encoder_outputs={"image": image})
