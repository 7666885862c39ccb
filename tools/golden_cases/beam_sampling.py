"""golden/beam_sampling/: beam sampling (do_sample with num_beams > 1), draws fixed, from 5.23.0.

Beam sampling cannot be made deterministic through its options the way golden/generation's
sampling cases are (top_k=1): multinomial without replacement must find 2K tokens of nonzero
probability per item, and the order of the draws decides which finished beams are kept. So the
generator records the draws instead: torch.multinomial is wrapped while transformers generates,
and every call's input (the distribution over an item's K*V continuations) and output (the
indices drawn) go to draws.npz as probs.<n> (B, K*V) and idx.<n> (B, 2K), n counting the calls.
The test replays them (tests/test_generation.py: a stand-in for numpy's Generator whose choice()
checks minblip's distribution against probs.<n> row by row and returns idx.<n>'s row), so the
processed distributions and the ids are both compared, with the same draws on both sides.
Every draw must find 2K tokens of nonzero probability (checked here): past that, torch fills the
draw with zero-probability tokens in the tie order of its topk, which nothing else reproduces --
except in FILLED cases, one step long, where the fillers' order cannot reach any output.

The model runs twice in write_case (then reloaded); the wrapped multinomial draws from its own
torch.Generator, reseeded before each run, and the two runs' draws must agree.
"""

from functools import partial
from pathlib import Path

import golden_common as gc
import numpy as np
import torch

from golden_cases.blip_tasks import texts
from golden_cases.caption import TINY
from minblip.testing import random_pixels as pixels

DICT = {"return_dict_in_generate": True, "output_scores": True}
DRAW_SEED = 7


def cases():
    px2 = pixels(61, 2, 32, 32)
    prompt, _ = texts(62, [3, 3])
    # beam sampling, the three cases' settings: scores returned
    sample = partial(gc.case, cls="BlipForConditionalGeneration", config=TINY, method="generate")
    sampled = {**DICT, "do_sample": True}
    return [
        sample(
            "beam3_temperature_top_k",
            {"pixel_values": px2},
            kwargs={
                **sampled,
                "num_beams": 3,
                "temperature": 0.7,
                "top_k": 20,
                "num_return_sequences": 2,
                "max_new_tokens": 6,
            },
        ),
        sample(
            "beam2_prompt_penalties",
            {"pixel_values": px2, "input_ids": prompt},
            kwargs={
                **sampled,
                "num_beams": 2,
                "temperature": 1.6,
                "top_k": 0,
                "top_p": 0.95,
                "repetition_penalty": 1.3,
                "no_repeat_ngram_size": 2,
                "length_penalty": 0.6,
                "min_new_tokens": 2,
                "max_new_tokens": 7,
            },
        ),
        sample(
            "beam3_top_k1_one_step",
            {"pixel_values": px2},
            kwargs={
                **sampled,
                "num_beams": 3,
                "top_k": 1,
                "max_new_tokens": 1,
            },
            notes="top_k=1 keeps 1 + len(eos) = 2 tokens a beam, and only beam 0 is live: 2 "
            "tokens of nonzero probability for 6 candidates; torch fills the draw with "
            "zero-probability ones (one step: no later step depends on which)",
        ),
    ]


FILLED = {"beam3_top_k1_one_step"}  # cases whose draws may hold zero-probability fillers


class Draws:
    """torch.multinomial, drawn from a generator of its own and recorded per call."""

    def __init__(self):
        self.real = torch.multinomial
        self.gen = torch.Generator().manual_seed(DRAW_SEED)
        self.runs, self.calls = [], None

    def __call__(self, probs, num_samples, replacement=False, *, generator=None, out=None):
        idx = self.real(probs, num_samples, replacement, generator=self.gen)
        self.calls.append((probs.detach().numpy().copy(), idx.numpy().copy()))
        return idx

    def start_run(self):
        self.gen.manual_seed(DRAW_SEED)
        self.calls = []
        self.runs.append(self.calls)


def build(root: Path):
    draws, real_run, real_multinomial = Draws(), gc.run, torch.multinomial

    def run(*args, **kwargs):
        draws.start_run()
        return real_run(*args, **kwargs)

    def after_case(case_dir, meta, cls, spec):
        first, again = draws.runs[-2:]
        assert len(first) == len(again) and all(
            np.array_equal(a[1], b[1]) for a, b in zip(first, again)
        ), f"{case_dir.name}: the reloaded model drew other tokens"
        for probs, idx in first:  # torch fills with zero-probability picks in its topk's tie
            # order, which no other implementation reproduces: a case must not depend on them
            enough = ((probs > 0).sum(-1) >= idx.shape[-1]).all()
            assert enough or case_dir.name in FILLED, f"{case_dir.name}: too few"
        arrays = {}
        for n, (probs, idx) in enumerate(first):
            arrays[f"probs.{n}"], arrays[f"idx.{n}"] = probs, idx
        np.savez_compressed(Path(case_dir) / "draws.npz", **arrays)
        meta["draws"] = len(first)
        meta["notes"] = "draws.npz: torch.multinomial's inputs and outputs (module docstring)"

    gc.run, torch.multinomial = run, draws
    try:
        gc.build_group(Path(root) / "beam_sampling", cases(), 600, after_case=after_case)
    finally:
        gc.run, torch.multinomial = real_run, real_multinomial
