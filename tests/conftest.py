"""Shared fixtures. Tests never import torch or transformers: golden/ holds what they produced."""

import json
import os
import pathlib

import numpy as np
import pytest
from hypothesis import settings
from safetensors.numpy import save_file

from minblip.config import BlipVisionConfig
from minblip.vision import vision_shapes

# JIT compilation on first call spoils per-example deadlines; 50 examples keep the suite fast.
# Locally each run draws new examples (that is how hypothesis finds things); CI sets
# HYPOTHESIS_PROFILE=ci for the same examples on every run, so a red CI is a change, not luck.
settings.register_profile("minblip", max_examples=50, deadline=None)
settings.register_profile("ci", max_examples=50, deadline=None, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "minblip"))

ROOT = pathlib.Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "golden"

TINY_VISION = {
    "model_type": "blip_vision_model",
    "hidden_size": 12,
    "intermediate_size": 20,
    "num_hidden_layers": 1,
    "num_attention_heads": 3,
    "image_size": 16,
    "patch_size": 8,
}


def write_checkpoint(folder, config, tensors):
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def tiny_vision_tensors(seed=0, dtype=np.float32):
    """Random tensors with the exact keys and shapes of a TINY_VISION checkpoint (not golden data:
    used only where a test needs a well-formed file to break)."""
    rng = np.random.default_rng(seed)
    shapes = vision_shapes(
        BlipVisionConfig(**{k: v for k, v in TINY_VISION.items() if k != "model_type"})
    )
    return {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}


@pytest.fixture
def tiny_vision_dir(tmp_path):
    return write_checkpoint(tmp_path / "tiny", TINY_VISION, tiny_vision_tensors())
