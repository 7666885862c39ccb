"""BlipVisionModel against transformers' golden outputs, module by module (golden/vision)."""

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
from minblip.weights import KeyTracker

CASES = case_dirs("vision")


# every case with the default (numba) backend; the tiny ones also with the NumPy reference alone
PARAMS = [(c, "numba") for c in CASES] + [
    (c, "numpy") for c in CASES if not (c / "weights.json").exists()
]


@pytest.mark.parametrize("case, backend", PARAMS, ids=lambda v: getattr(v, "name", v))
def test_vision_matches_transformers(case, backend):
    meta, inputs, expected = load_case(case)
    full = (case / "weights.json").exists()
    minblip.set_backend(backend)
    try:
        model = minblip.BlipVisionModel.from_pretrained(model_dir(case), dtype=meta["dtype"])
        with trace.record() as acts:
            out = model(**inputs, **meta["kwargs"])
    finally:
        minblip.set_backend("numba")
    acts.update(output_arrays(out))
    assert_trace_close(
        expected, acts, meta["order"] + meta["outputs"], what=case.name, **for_case(meta, full)
    )


def test_forward_reads_every_checkpoint_tensor():
    case = next(c for c in CASES if c.name == "hidden_attn")
    meta, inputs, _ = load_case(case)
    model = minblip.BlipVisionModel.from_pretrained(model_dir(case))
    tracked = KeyTracker(model.params)
    model.params = tracked
    model(**inputs)
    every = set(flat_keys(tracked._node))
    assert every - tracked.reads == set(), f"never read: {sorted(every - tracked.reads)}"


def test_vision_part_of_a_full_blip_checkpoint_loads():
    """BlipVisionModel reads the vision_model.* tensors of a BLIP task checkpoint."""
    case = next(c for c in case_dirs("blip_tasks") if c.name == "itm_head")
    meta, inputs, expected = load_case(case)
    model = minblip.BlipVisionModel.from_pretrained(model_dir(case))
    with trace.record() as acts, trace.scope("vision_model"):
        model(pixel_values=inputs["pixel_values"])
    order = [k for k in meta["order"] if k.startswith("vision_model.")]
    assert order
    assert_trace_close(expected, acts, order, atol=1e-5, rtol=0)
