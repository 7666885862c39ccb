"""`minblip trace` / `minblip compare`: a minblip trace lines up key for key with transformers'
(golden/caption/forward_labels, recorded by the same hooks tools/trace_transformers.py uses),
an injected fault (one perturbed weight in a copy of the model) is named as the first divergence,
and bad input gets named errors."""

import json
import shutil

import numpy as np
import pytest
from golden_utils import GOLDEN, load_case
from safetensors.numpy import load_file, save_file
from tolerances import FP32_TINY

from minblip.__main__ import main
from minblip.compare import (
    compare_traces,
    config_sha256,
    load_trace,
    run_trace,
    save_trace,
)
from minblip.errors import InputError

CASE = GOLDEN / "caption" / "forward_labels"


@pytest.fixture
def model_copy(tmp_path):
    return shutil.copytree(CASE / "model", tmp_path / "model")


def golden_trace(path, model_folder):
    """The golden case as a trace file: what tools/trace_transformers.py --inputs writes."""
    meta, inputs, outputs = load_case(CASE)
    order = meta["order"] + meta["outputs"]
    info = {
        "producer": "transformers (golden)",
        "model": "forward_labels",
        "class": meta["class"],
        "config_sha256": config_sha256(model_folder),
        "dtype": "float32",
    }
    save_trace(path, info, inputs, {k: outputs[k] for k in order})
    return path


def test_minblip_trace_matches_transformers_key_for_key(tmp_path, model_copy):
    _, inputs, _ = load_case(CASE)
    ours = run_trace(model_copy, inputs=inputs)
    save_trace(tmp_path / "ours.npz", *ours)
    a = load_trace(tmp_path / "ours.npz")
    b = load_trace(golden_trace(tmp_path / "ref.npz", model_copy))
    assert a[0]["order"] == b[0]["order"]  # same modules, same forward order
    rows = compare_traces(a, b, atol=FP32_TINY["atol"])
    assert len(rows) == len(b[0]["order"]) and all(r["ok"] for r in rows)


def perturb(folder, key):
    tensors = load_file(str(folder / "model.safetensors"))
    w = tensors[key].copy()
    w.flat[0] += 0.5
    tensors[key] = w
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


@pytest.mark.parametrize(
    ("weight", "module"),
    [
        ("vision_model.encoder.layers.1.mlp.fc1.weight", "vision_model.encoder.layers.1.mlp"),
        (
            "text_decoder.bert.encoder.layer.1.crossattention.self.key.weight",
            "text_decoder.bert.encoder.layer.1.crossattention.self",
        ),
        (
            "text_decoder.bert.encoder.layer.0.intermediate.dense.bias",
            "text_decoder.bert.encoder.layer.0.intermediate",
        ),
    ],
)
def test_compare_names_the_faulty_module_first(tmp_path, model_copy, weight, module, capsys):
    inputs = str(CASE / "inputs.npz")
    ref = golden_trace(tmp_path / "ref.npz", model_copy)
    faulty = shutil.copytree(model_copy, tmp_path / "faulty")
    perturb(faulty, weight)
    out = str(tmp_path / "port.npz")
    assert main(["trace", "--inputs", inputs, "--model", str(faulty), "-o", out]) == 0
    capsys.readouterr()
    assert main(["compare", out, str(ref), "--atol", "1e-5"]) == 1
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1].startswith(f"FIRST DIVERGENCE: {module} ")
    rows = compare_traces(load_trace(out), load_trace(ref), atol=1e-5)
    assert rows[-1]["key"] == module and not rows[-1]["ok"]
    assert all(r["ok"] for r in rows[:-1])


def test_trace_from_a_photo_through_the_cli(tmp_path, capsys):
    """IMAGE + --text through the checkpoint's processor (a tiny vision tower: pixels only)."""
    folder = shutil.copytree(GOLDEN / "vision" / "tiny_b1" / "model", tmp_path / "vision")
    photo = str(GOLDEN / "images" / "coffee.png")
    out = tmp_path / "t.npz"
    assert main(["trace", photo, "--model", str(folder), "-o", str(out)]) == 0
    meta, inputs, modules = load_trace(out)
    assert meta["class"] == "BlipVisionModel" and list(inputs) == ["pixel_values"]
    side = json.loads((folder / "config.json").read_text())["image_size"]
    assert inputs["pixel_values"].shape == (1, 3, side, side)  # sized to the model
    assert meta["order"][0] == "embeddings" and "out.last_hidden_state" in modules
    # again without --overwrite: refused, the file kept
    before = out.read_bytes()
    assert main(["trace", photo, "--model", str(folder), "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == before


def test_not_a_trace_file(tmp_path, capsys):
    junk = tmp_path / "junk.npz"
    junk.write_text("hello")
    for path, says in [
        (junk, "is not a trace file"),
        (CASE / "inputs.npz", "no __meta__"),
        (tmp_path / "missing.npz", "no such trace file"),
    ]:
        with pytest.raises(InputError, match=says):
            load_trace(path)
    assert main(["compare", str(junk), str(junk)]) == 2
    assert "minblip trace" in capsys.readouterr().err  # says what was expected


def test_traces_of_different_models_or_inputs_are_refused(tmp_path, model_copy):
    ref = load_trace(golden_trace(tmp_path / "ref.npz", model_copy))
    meta, inputs, modules = ref
    other_model = ({**meta, "class": "BlipVisionModel"}, inputs, modules)
    with pytest.raises(InputError, match="different models.*BlipVisionModel"):
        compare_traces(other_model, ref)
    other_config = ({**meta, "config_sha256": "0" * 64}, inputs, modules)
    with pytest.raises(InputError, match="different models.*config.json"):
        compare_traces(other_config, ref)
    moved = dict(inputs, pixel_values=inputs["pixel_values"] + 0.1)
    with pytest.raises(InputError, match="different inputs: pixel_values differs by up to 0.1"):
        compare_traces((meta, moved, modules), ref)
    fewer = {k: v for k, v in inputs.items() if k != "labels"}
    with pytest.raises(InputError, match="different inputs"):
        compare_traces((meta, fewer, modules), ref)
    ids = dict(inputs, input_ids=inputs["input_ids"][:, :3])
    with pytest.raises(InputError, match=r"input_ids is \(2, 3\)"):
        compare_traces((meta, ids, modules), ref)


def test_a_module_missing_from_b_is_the_divergence(tmp_path, model_copy):
    meta, inputs, modules = load_trace(golden_trace(tmp_path / "ref.npz", model_copy))
    key = meta["order"][3]
    b = (meta, inputs, {k: v for k, v in modules.items() if k != key})
    rows = compare_traces((meta, inputs, modules), b)
    assert rows[-1] == {"key": key, "shape": modules[key].shape, "missing": True, "ok": False}
    nan = dict(modules, **{key: np.full_like(modules[key], np.nan)})
    assert compare_traces((meta, inputs, nan), (meta, inputs, modules))[-1]["key"] == key
