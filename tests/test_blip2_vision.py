"""Blip2VisionModel against transformers' golden outputs, module by module (golden/blip2_vision)."""

import pytest
from golden_utils import case_dirs, check_against_transformers, load_case, model_dir, unread_tensors

import minblip

CASES = case_dirs("blip2_vision")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_blip2_vision_matches_transformers(case):
    check_against_transformers(case)


@pytest.mark.parametrize("name", ["tiny_b2", "no_qkv_bias"])
def test_forward_reads_every_checkpoint_tensor(name):
    case = next(c for c in CASES if c.name == name)
    _, inputs, _ = load_case(case)
    model = minblip.Blip2VisionModel.from_pretrained(model_dir(case))
    unread = unread_tensors(model, lambda m: m(**inputs))
    assert unread == set(), f"never read: {sorted(unread)}"


def test_blip_and_blip2_vision_checkpoints_do_not_mix():
    blip2 = next(c for c in CASES if c.name == "tiny_b2")
    with pytest.raises(minblip.ConfigError, match="cannot be loaded as BlipVisionModel"):
        minblip.BlipVisionModel.from_pretrained(model_dir(blip2))
    blip = next(iter(case_dirs("vision")))
    with pytest.raises(minblip.ConfigError, match="cannot be loaded as Blip2VisionModel"):
        minblip.Blip2VisionModel.from_pretrained(model_dir(blip))


def test_a_missing_qkv_bias_is_named(tmp_path):
    """qkv_bias=True (the default) needs the combined bias; its absence is a missing weight."""
    import json
    import shutil

    from safetensors.numpy import load_file, save_file

    case = next(c for c in CASES if c.name == "tiny_b2")
    folder = tmp_path / "m"
    shutil.copytree(model_dir(case), folder)
    tensors = load_file(str(folder / "model.safetensors"))
    del tensors["encoder.layers.1.self_attn.qkv.bias"]
    save_file(tensors, str(folder / "model.safetensors"))
    assert json.loads((folder / "config.json").read_text())["qkv_bias"] is True
    with pytest.raises(minblip.CheckpointError, match=r"encoder\.layers\.1\.self_attn\.qkv\.bias"):
        minblip.Blip2VisionModel.from_pretrained(folder)
