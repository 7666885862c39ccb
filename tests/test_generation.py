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


class ReplayDraws:
    """Stands in for numpy's Generator in beam sampling: replays transformers' recorded draws
    (golden/beam_sampling/*/draws.npz, see tools/golden_cases/beam_sampling.py). Each choice()
    is one item's draw of a step: its distribution must equal the one torch.multinomial was
    given, and it returns the indices torch drew."""

    def __init__(self, case, n):
        with np.load(case / "draws.npz") as f:
            self.probs = [f[f"probs.{i}"] for i in range(n)]
            self.idx = [f[f"idx.{i}"] for i in range(n)]
        self.call, self.row, self.name = 0, 0, case.name

    def choice(self, a, size, replace=True, p=None):
        assert self.call < len(self.probs), f"{self.name}: more draws than transformers made"
        probs, idx = self.probs[self.call][self.row], self.idx[self.call][self.row]
        # minblip draws only the tokens of nonzero probability and fills with zero-probability
        # ones itself (torch draws those too, in an order of its own): the first `size` match
        nonzero = int((probs > 0).sum())
        assert size in (idx.size, nonzero) and size <= idx.size, (size, idx.size, nonzero)
        assert not replace and a == probs.size, (a, probs.size)
        # p = softmax(acc): an error d_j in each accumulated score (bar: FP32_LOGITS, 1e-4) moves
        # p_i by p_i (d_i - sum_j p_j d_j), at most 2e-4 p_i; filtered tokens stay exactly 0
        np.testing.assert_allclose(
            p, probs, atol=0, rtol=2e-4, err_msg=f"{self.name}: draw {self.call} row {self.row}"
        )
        self.row += 1
        if self.row == len(self.probs[self.call]):
            self.call, self.row = self.call + 1, 0
        return idx[:size].copy()


@pytest.mark.parametrize("case", case_dirs("beam_sampling"), ids=lambda p: p.name)
def test_beam_sampling_matches_transformers_with_its_draws(case):
    meta, inputs, expected = load_case(case)
    model = getattr(minblip, meta["class"]).from_pretrained(model_dir(case))
    draws = ReplayDraws(case, meta["draws"])
    out = model.generate(**inputs, **meta["kwargs"], generator=draws)
    assert (draws.call, draws.row) == (meta["draws"], 0), "fewer draws than transformers made"
    assert_trace_close(expected, output_arrays(out), meta["outputs"], what=case.name, **FP32_LOGITS)
