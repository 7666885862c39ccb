"""BlipForConditionalGeneration against transformers' golden outputs (golden/caption): every
recorded module of forward and of every decode step, loss and logits, generated ids exactly; key
coverage; the errors it raises; the KV cache against full recomputation."""

import json

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
from minblip.text_bert import lm_forward
from minblip.weights import KeyTracker

CASES = case_dirs("caption")
# every case under the default backend; the tiny forward cases and a traced greedy and a beam
# generate also with the NumPy reference alone
REFERENCE = [
    c for c in CASES if c.name.startswith("forward") or c.name in ("greedy_traced", "beam3")
]
PARAMS = [(c, "numba") for c in CASES] + [(c, "numpy") for c in REFERENCE]


def _case(name):
    return next(c for c in CASES if c.name == name)


def _model(case, dtype=None):
    meta = load_case(case)[0]
    cls = getattr(minblip.blip, meta["class"])  # BlipText* are not exported at the top yet
    return cls.from_pretrained(model_dir(case), dtype=dtype or meta["dtype"])


@pytest.mark.parametrize("case, backend", PARAMS, ids=lambda v: getattr(v, "name", v))
def test_matches_transformers(case, backend):
    meta, inputs, expected = load_case(case)
    full = (case / "weights.json").exists()
    before = {k: v.copy() for k, v in inputs.items()}
    minblip.set_backend(backend)
    try:
        model = _model(case)
        method = model if meta["method"] == "forward" else model.generate
        with trace.record() as acts:
            out = method(**inputs, **meta["kwargs"])
    finally:
        minblip.set_backend("numba")
    acts.update(output_arrays(out))
    assert_trace_close(
        expected, acts, meta["order"] + meta["outputs"], what=case.name, **for_case(meta, full)
    )
    if meta["method"] == "generate":
        assert out.dtype == np.int64
    for (
        k,
        v,
    ) in before.items():  # transformers' BLIP generate writes [DEC] into input_ids; we never do
        np.testing.assert_array_equal(inputs[k], v, err_msg=f"{k} was modified")


def _margins(case):
    return json.loads((case / "meta.json").read_text()).get("margins")


# Beam cases record margins None (no single per-step decision to guard): not generated here.
@pytest.mark.parametrize(
    "case", [c for c in CASES if _margins(c) is not None], ids=lambda c: c.name
)
def test_golden_tokens_are_not_near_ties(case):
    """A greedy golden token is only meaningful if its lead over the runner-up is far above the
    float32 error (<= 1e-5 on logits for tiny cases, 1e-4 full size)."""
    assert min(min(row) for row in _margins(case)) > 1e-3


@pytest.mark.parametrize(
    "cases",
    [
        ("forward_labels",),
        ("greedy_prompt",),
        ("text_model_encoder", "text_model_decoder"),
        ("text_lm_labels",),
        ("text_lm_generate",),
    ],
    ids=lambda c: "+".join(c),
)
def test_every_checkpoint_tensor_is_read(cases):
    """Each call (or, for BlipTextModel, its encoder-mode and decoder-mode calls together: only
    the latter runs crossattention) reads every tensor of the checkpoint. The files have no
    cls.predictions.decoder.{weight,bias}: 5.23's save_pretrained leaves the tied copies out, so
    the head reads the word embeddings and predictions.bias (both in the file). No allow-list."""
    model = _model(_case(cases[0]))
    tracked = KeyTracker(model.params)
    model.params = tracked
    for name in cases:
        meta, inputs, _ = load_case(_case(name))
        (model if meta["method"] == "forward" else model.generate)(**inputs, **meta["kwargs"])
    unread = set(flat_keys(tracked._node)) - tracked.reads
    assert not unread, f"{cases} never read {sorted(unread)}"


def test_kv_cache_steps_equal_full_recomputation():
    """Each greedy step's logits (cached keys/values, one new token) equal the logits of one
    uncached forward over the final sequence at that position (float64: no rounding slack)."""
    case = _case("greedy_batch3_prompt")
    meta, inputs, _ = load_case(case)
    model = _model(case, dtype="float64")
    with trace.record() as acts:
        ids = model.generate(**inputs, max_new_tokens=6)
    steps = [acts["text_decoder"]] + [acts[f"text_decoder#{i}"] for i in range(1, 6)]
    image_embeds = acts["vision_model"]
    full, _ = lm_forward(
        ids,
        model.params["text_decoder"],
        model.config.text_config,
        encoder_hidden_states=image_embeds,
    )
    P = ids.shape[1] - 6
    for i, step_logits in enumerate(steps):
        np.testing.assert_allclose(
            step_logits[:, 0], full[:, P - 1 + i], atol=1e-12, rtol=0, err_msg=f"step {i}"
        )


def test_batch_rows_equal_single_runs():
    case = _case("greedy_batch3_prompt")
    meta, inputs, _ = load_case(case)
    model = _model(case)
    together = model.generate(**inputs)
    for b in range(3):
        alone = model.generate(**{k: v[b : b + 1] for k, v in inputs.items()})
        np.testing.assert_array_equal(alone[0], together[b, : alone.shape[1]])
        assert (together[b, alone.shape[1] :] == 0).all()  # shorter rows are padded with [PAD]


def test_float64_is_closer_than_float32():
    """The fp32 residual is precision, not logic: float64 against float64 agrees to ~1e-14."""
    case = _case("forward_float64")
    meta, inputs, expected = load_case(case)
    out = _model(case)(**inputs)
    assert np.abs(out.logits - expected["out.logits"]).max() < 1e-10
    assert abs(float(out.loss) - float(expected["out.loss"])) < 1e-10


def test_output_fields_and_tuple():
    case = _case("forward_labels")
    meta, inputs, _ = load_case(case)
    model = _model(case)
    out = model(**inputs)
    assert list(out) == ["loss", "logits", "image_embeds", "last_hidden_state"]
    assert out.hidden_states is None and out.attentions is None
    tup = model(**inputs, return_dict=False)
    assert len(tup) == 4 and np.array_equal(tup[1], out.logits)


# ----------------------------------------------------------------------------- errors


def test_prompt_longer_than_position_table():
    case = _case("greedy_position_cap")  # max_position_embeddings 12
    meta, inputs, _ = load_case(case)
    model = _model(case)
    ids = np.tile(inputs["input_ids"][:, :1], (1, 15))
    with pytest.raises(minblip.InputError, match="max_position_embeddings=12"):
        model.generate(pixel_values=inputs["pixel_values"], input_ids=ids)


def test_generation_running_past_the_position_table():
    """transformers fails with an index error once a position passes the table; we name it."""
    case = _case("greedy_position_cap")
    meta, inputs, _ = load_case(case)
    model = _model(case)
    with pytest.raises(minblip.InputError, match="max_position_embeddings=12"):
        model.generate(**inputs, max_new_tokens=20)


def test_prompt_filling_max_length():
    case = _case("greedy_prompt")
    meta, inputs, _ = load_case(case)
    with pytest.raises(minblip.InputError, match="max_length is 4"):
        _model(case).generate(**inputs, max_length=4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_beams": 2, "num_return_sequences": 3}, "num_return_sequences"),
        ({"num_return_sequences": 2}, "greedy"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"early_stopping": "sometimes"}, "early_stopping"),
        ({"do_sample": True, "temperature": 0.0}, "temperature"),
        ({"do_sample": True, "top_p": 1.5}, "top_p"),
        ({"temperatur": 0.5}, "temperatur"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        # BLIP's generate passes sep / pad itself: transformers 5.23 raises TypeError on these
        ({"eos_token_id": 5}, "takes no eos_token_id: it always stops at text_config.sep"),
        ({"pad_token_id": 5, "eos_token_id": 5}, "eos_token_id or pad_token_id"),
    ],
)
def test_bad_generation_settings(kwargs, match):
    case = _case("greedy")
    meta, inputs, _ = load_case(case)
    with pytest.raises(minblip.InputError, match=match):
        _model(case).generate(**inputs, **kwargs)


def test_bad_inputs():
    case = _case("forward_labels")
    meta, inputs, _ = load_case(case)
    model = _model(case)
    px, ids = inputs["pixel_values"], inputs["input_ids"]
    with pytest.raises(minblip.InputError, match="vocabulary"):
        model(pixel_values=px, input_ids=ids + 200)
    with pytest.raises(minblip.InputError, match="integer"):
        model(pixel_values=px, input_ids=ids.astype(np.float32))
    three = np.concatenate([px, px[:1]])
    with pytest.raises(minblip.InputError, match="2 texts for 3 images: pass one per image"):
        model(pixel_values=three, input_ids=ids)  # torch cannot broadcast 2 against 3 either
    with pytest.raises(
        minblip.InputError, match=r"labels have shape \(1, 7\), the logits \(2, 7\)"
    ):
        model(pixel_values=px, input_ids=ids[:1], labels=ids[:1])  # 1 text read against 2 images
    with pytest.raises(minblip.InputError, match="attention_mask"):
        model(pixel_values=px, input_ids=ids, attention_mask=inputs["attention_mask"][:, :3])
    with pytest.raises(minblip.InputError, match="labels"):
        model(pixel_values=px, input_ids=ids, labels=ids[:, :2])
    with pytest.raises(minblip.InputError, match="needs pixel_values and input_ids"):
        model(pixel_values=px)
    with pytest.raises(minblip.InputError, match="channels-last"):
        model(pixel_values=px.transpose(0, 2, 3, 1), input_ids=ids)
    broken = px.copy()
    broken[1, 2, 3, 4] = np.nan
    with pytest.raises(minblip.InputError, match=r"nan or inf \(first at index \[1, 2, 3, 4\]"):
        model.generate(pixel_values=broken)  # transformers would caption the nan
    with pytest.raises(minblip.InputError, match="at least 2 tokens"):
        model.generate(pixel_values=px, input_ids=ids[:, :1])
    # one image serves several prompts only without copies; several images never share a prompt
    with pytest.raises(minblip.InputError, match="one per image"):
        model.generate(pixel_values=px[:1], input_ids=ids, num_beams=2)
    with pytest.raises(minblip.InputError, match="one per image"):
        model.generate(pixel_values=px[:1], input_ids=ids, do_sample=True, num_return_sequences=2)
    with pytest.raises(minblip.InputError, match="one per image"):
        model.generate(pixel_values=px, input_ids=ids[:1])


def test_untied_head_without_decoder_weight_is_refused(tmp_path):
    import json
    import shutil

    case = _case("forward_labels")
    src = model_dir(case)
    dst = tmp_path / "untied"
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["tie_word_embeddings"] = False
    cfg["text_config"]["tie_word_embeddings"] = False
    (dst / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(minblip.CheckpointError, match="tie_word_embeddings"):
        minblip.BlipForConditionalGeneration.from_pretrained(dst)


def test_prompt_as_python_lists():
    """transformers' BLIP generate turns a list prompt into a LongTensor; so do we."""
    case = _case("greedy_prompt")
    _, inputs, expected = load_case(case)
    out = _model(case).generate(
        pixel_values=inputs["pixel_values"],
        input_ids=inputs["input_ids"].tolist(),
        attention_mask=inputs["attention_mask"].tolist(),
    )
    np.testing.assert_array_equal(out, expected["out"])
