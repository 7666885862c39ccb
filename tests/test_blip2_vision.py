"""Blip2VisionModel against transformers' golden outputs, module by module (golden/blip2_vision)."""

import numpy as np
import pytest
from golden_utils import assert_trace_close, case_dirs, load_case, model_dir, output_arrays
from tolerances import for_case

import minblip
from minblip import trace
from minblip.weights import KeyTracker

CASES = case_dirs("blip2_vision")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_blip2_vision_matches_transformers(case):
    meta, inputs, expected = load_case(case)
    model = minblip.Blip2VisionModel.from_pretrained(model_dir(case), dtype=meta["dtype"])
    with trace.record() as acts:
        out = model(**inputs, **meta["kwargs"])
    acts.update(output_arrays(out))
    assert_trace_close(
        expected, acts, meta["order"] + meta["outputs"], what=case.name, **for_case(meta, False)
    )


@pytest.mark.parametrize("name", ["tiny_b2", "no_qkv_bias"])
def test_forward_reads_every_checkpoint_tensor(name):
    case = next(c for c in CASES if c.name == name)
    _, inputs, _ = load_case(case)
    model = minblip.Blip2VisionModel.from_pretrained(model_dir(case))
    tracked = KeyTracker(model.params)
    model.params = tracked
    model(**inputs)
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


def test_blip_and_blip2_vision_checkpoints_do_not_mix():
    blip2 = next(c for c in CASES if c.name == "tiny_b2")
    with pytest.raises(minblip.ConfigError, match="cannot be loaded as BlipVisionModel"):
        minblip.BlipVisionModel.from_pretrained(model_dir(blip2))
    blip = next(iter(case_dirs("vision")))
    with pytest.raises(minblip.ConfigError, match="cannot be loaded as Blip2VisionModel"):
        minblip.Blip2VisionModel.from_pretrained(model_dir(blip))


def test_a_missing_qkv_bias_is_named():
    """qkv_bias=True (the default) needs the combined bias; its absence is a missing weight."""
    import json
    import shutil
    import tempfile
    from pathlib import Path

    from safetensors.numpy import load_file, save_file

    case = next(c for c in CASES if c.name == "tiny_b2")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "m"
        shutil.copytree(model_dir(case), folder)
        tensors = load_file(str(folder / "model.safetensors"))
        del tensors["encoder.layers.1.self_attn.qkv.bias"]
        save_file(tensors, str(folder / "model.safetensors"))
        assert json.loads((folder / "config.json").read_text())["qkv_bias"] is True
        with pytest.raises(
            minblip.CheckpointError, match=r"encoder\.layers\.1\.self_attn\.qkv\.bias"
        ):
            minblip.Blip2VisionModel.from_pretrained(folder)
