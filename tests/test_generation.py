"""generate's options and outputs against transformers (golden/generation): per-step scores and
logits, sequences_scores, beam_indices, num_return_sequences, sampling (deterministic cases and
seeded properties), for captioning and VQA."""

import numpy as np
import pytest
from golden_utils import assert_trace_close, case_dirs, load_case, model_dir, output_arrays
from tolerances import FP32_LOGITS

import minblip

CASES = case_dirs("generation")


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_generate_outputs_match_transformers(case):
    meta, inputs, expected = load_case(case)
    model = getattr(minblip, meta["class"]).from_pretrained(model_dir(case))
    out = model.generate(**inputs, **meta["kwargs"], seed=0)
    assert_trace_close(expected, output_arrays(out), meta["outputs"], what=case.name, **FP32_LOGITS)


def _caption_case():
    case = next(c for c in CASES if c.name == "greedy_scores_logits")
    meta, inputs, _ = load_case(case)
    return minblip.BlipForConditionalGeneration.from_pretrained(model_dir(case)), inputs


def test_sampling_is_reproducible_per_seed_and_varies_across_seeds():
    model, inputs = _caption_case()
    kw = dict(do_sample=True, top_k=0, temperature=3.0, max_new_tokens=8)
    a = model.generate(**inputs, **kw, seed=1)
    b = model.generate(**inputs, **kw, generator=np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    draws = {tuple(model.generate(**inputs, **kw, seed=s)[0]) for s in range(6)}
    assert len(draws) > 1


def test_sampled_tokens_stay_inside_the_top_k():
    model, inputs = _caption_case()
    out = model.generate(
        **inputs,
        do_sample=True,
        top_k=3,
        max_new_tokens=6,
        seed=3,
        return_dict_in_generate=True,
        output_scores=True,
        output_logits=True,
    )
    for t, (scores, logits) in enumerate(zip(out.scores, out.logits)):
        tok = out.sequences[:, 1 + t]
        top3 = np.argsort(-logits, axis=-1)[:, :3]
        assert all(tok[b] in top3[b] for b in range(len(tok))), f"step {t}"
        assert (np.isfinite(scores).sum(-1) == 3).all()


def test_beam_sampling_returns_valid_beams():
    model, inputs = _caption_case()
    out = model.generate(
        **inputs,
        do_sample=True,
        num_beams=3,
        num_return_sequences=2,
        max_new_tokens=5,
        seed=0,
        return_dict_in_generate=True,
        output_scores=True,
    )
    assert out.sequences.shape[0] == 4 and out.sequences_scores.shape == (4,)
    assert (np.diff(out.sequences_scores.reshape(2, 2), axis=1) <= 0).all()  # best first per item
