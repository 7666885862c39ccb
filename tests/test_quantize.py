"""int8 weight-only quantization (minblip/quantize.py): load_in_8bit on the golden BLIP-2 models
(OPT and T5), `minblip quantize` folders that load memory-mapped with the same numbers, which
Linears are quantized, the drift from float32 (a sanity bar, not a conformance bar: int8 is
never held to transformers' fp32 fixtures), and the named errors of bad folders."""

import json
import shutil

import numpy as np
import pytest
from golden_utils import case_dirs, load_case, model_dir, output_arrays, unread_tensors
from test_storage import mapped

import minblip
from minblip import quantize
from minblip.__main__ import main
from minblip.weights import load_flat

CASES = {c.name: c for c in case_dirs("blip2_generation")}
KINDS = ("opt", "t5")
# int8 vs float32 logits of the tiny golden models, relative to the largest |logit|: each
# weight rounded to 1/254 of its row's range, through every layer of both towers. Measured
# 8.1e-3 (OPT) and 4.1e-2 (T5, whose random tiny weights give a few large logits); the bar 0.1
# catches a wrong scale or a transposed weight (errors of order 1), not the rounding.
INT8_DRIFT = 0.1


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    out = {}
    for kind in KINDS:
        dst = tmp_path_factory.mktemp(f"q-{kind}") / "model"
        quantize.save_quantized(model_dir(CASES[f"{kind}_forward"]), dst)
        out[kind] = dst
    return out


def _run(model, case):
    meta, inputs, _ = load_case(case)
    call = model if meta["method"] == "forward" else getattr(model, meta["method"])
    return output_arrays(call(**inputs, **meta["kwargs"]))


def test_quantize_rows_is_symmetric_per_output_channel():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((300, 70)).astype(np.float32)
    W[5] = 0  # a row of zeros: scale 1, q 0
    q, s = quantize.quantize_rows(W, block_rows=64)
    assert q.dtype == np.int8 and s.dtype == np.float32 and s.shape == (300,)
    assert s[5] == 1 and not q[5].any()
    np.testing.assert_allclose(s[:5], np.abs(W[:5]).max(axis=1) / 127, rtol=1e-7)
    assert (np.abs(q).max(axis=1)[np.arange(300) != 5] == 127).all()  # the range is used
    # rounding to the nearest step: half a step, plus float32's rounding of W / s
    err = np.abs(q * s[:, None].astype(np.float64) - W)
    assert (err <= s[:, None] / 2 + 2 * np.spacing(np.abs(W))).all()


@pytest.mark.parametrize("kind", KINDS)
def test_which_linears_are_quantized(quantized, kind):
    flat = load_flat(quantized[kind])
    int8 = {k for k, a in flat.items() if a.dtype == np.int8}
    assert int8 and all(k.endswith(".weight") and flat[k].ndim == 2 for k in int8)
    assert any(k.startswith("language_model.") for k in int8)
    assert any(k.startswith("vision_model.") for k in int8)
    assert "language_projection.weight" in int8
    for k in int8:
        assert not k.startswith("qformer.") and "lm_head" not in k, k
        assert ".wo." not in k, k  # T5's _keep_in_fp32_modules
    if kind == "t5":
        assert any(".wi_0." in k for k in int8)
        assert flat[k + "_scale"].shape == (flat[k].shape[0],), k
    src = load_flat(model_dir(CASES[f"{kind}_forward"]))
    floats = [k for k in flat if flat[k].dtype != np.int8 and not k.endswith("_scale")]
    assert set(floats) | int8 == set(src)
    for k in floats:  # embeddings, norms, biases, Q-Former, lm_head: as they were
        np.testing.assert_array_equal(flat[k], src[k], err_msg=k)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", ["forward", "generate_beams"])
def test_load_in_8bit_equals_the_quantized_folder(quantized, kind, case):
    """Quantizing on load and loading a `minblip quantize` folder run the same int8 numbers."""
    case = CASES[f"{kind}_{case}"]
    cls = getattr(minblip, load_case(case)[0]["class"])
    on_load = cls.from_pretrained(model_dir(case), load_in_8bit=True)
    stored = cls.from_pretrained(quantized[kind])
    a, b = _run(on_load, case), _run(stored, case)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


@pytest.mark.parametrize("kind", KINDS)
def test_int8_drifts_little_from_float32(quantized, kind):
    case = CASES[f"{kind}_forward"]
    ref = _run(minblip.Blip2ForConditionalGeneration.from_pretrained(model_dir(case)), case)
    got = _run(minblip.Blip2ForConditionalGeneration.from_pretrained(quantized[kind]), case)
    a, b = ref["out.logits"], got["out.logits"]
    assert np.abs(a - b).max() / np.abs(a).max() <= INT8_DRIFT


@pytest.mark.parametrize("kind", KINDS)
def test_quantized_folder_loads_memory_mapped_and_every_tensor_is_read(quantized, kind):
    case = CASES[f"{kind}_forward"]
    meta, inputs, _ = load_case(case)
    model = minblip.Blip2ForConditionalGeneration.from_pretrained(quantized[kind])
    fc1 = model.params["vision_model"]["encoder"]["layers"][0]["mlp"]["fc1"]
    assert fc1["weight"].dtype == np.int8 and mapped(fc1["weight"]) and mapped(fc1["weight_scale"])
    unread = unread_tensors(model, lambda m: m(**inputs, **meta["kwargs"]))
    assert unread == set(), f"never read: {sorted(unread)}"


def test_quantization_config_spelled_as_bitsandbytes():
    folder = model_dir(CASES["opt_forward"])
    cls = minblip.Blip2ForConditionalGeneration
    skip = ["lm_head", "vision_model"]
    m = cls.from_pretrained(
        folder, quantization_config={"load_in_8bit": True, "llm_int8_skip_modules": skip}
    )
    p = m.params
    assert p["vision_model"]["encoder"]["layers"][0]["mlp"]["fc1"]["weight"].dtype == np.float32
    assert p["language_model"]["model"]["decoder"]["layers"][0]["fc1"]["weight"].dtype == np.int8
    # the Q-Former is one of Blip2's _keep_in_fp32_modules: never quantized, as in 5.23
    q = p["qformer"]["encoder"]["layer"][0]["attention"]["attention"]["query"]["weight"]
    assert q.dtype == np.float32
    with pytest.raises(minblip.InputError, match="load_in_4bit"):
        cls.from_pretrained(folder, quantization_config={"load_in_4bit": True})
    with pytest.raises(minblip.InputError, match="float32"):
        cls.from_pretrained(folder, load_in_8bit=True, dtype="float64")


def _copy(src, tmp_path):
    dst = tmp_path / "bad"
    shutil.copytree(src, dst)
    return dst


def _write_mixed(path, flat):
    names = {np.dtype(np.int8): "I8", np.dtype(np.float32): "F32", np.dtype(np.float64): "F64"}
    header, blobs, off = {}, [], 0
    for k, a in flat.items():
        blob = np.ascontiguousarray(a).tobytes()
        header[k] = {
            "dtype": names[a.dtype],
            "shape": list(a.shape),
            "data_offsets": [off, off + len(blob)],
        }
        blobs.append(blob)
        off += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"".join(blobs))


def _edit_folder(folder, edit):
    flat = {k: np.array(a) for k, a in load_flat(folder).items()}
    edit(flat)
    _write_mixed(folder / "model.safetensors", flat)


KEY = "language_model.model.decoder.layers.0.fc1.weight"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda f: f.pop(KEY + "_scale"), "has no scale"),
        (lambda f: f.update({KEY + "_scale": f[KEY + "_scale"][:-1]}), "expected float32"),
        (lambda f: f.update({KEY + "_scale": f[KEY + "_scale"][None]}), "expected float32"),
        (lambda f: f.update({"x.weight_scale": np.ones(3, np.float32)}), "x.weight_scale"),
    ],
)
def test_bad_quantized_folders_are_named(quantized, tmp_path, edit, message):
    folder = _copy(quantized["opt"], tmp_path)
    _edit_folder(folder, edit)
    with pytest.raises(minblip.CheckpointError, match=message):
        minblip.Blip2ForConditionalGeneration.from_pretrained(folder)


@pytest.mark.parametrize(
    "qc, message",
    [
        ({"quant_method": "minblip_int8", "format_version": 2}, "format_version 2"),
        ({"quant_method": "bitsandbytes", "load_in_8bit": True}, "bitsandbytes"),
    ],
)
def test_unknown_quantization_formats_are_named(quantized, tmp_path, qc, message):
    folder = _copy(quantized["opt"], tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = qc
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(minblip.CheckpointError, match=message):
        minblip.Blip2ForConditionalGeneration.from_pretrained(folder)


def test_an_int8_tensor_in_an_unquantized_folder_is_refused(tmp_path):
    folder = _copy(model_dir(CASES["opt_forward"]), tmp_path)
    _edit_folder(folder, lambda f: f.update({KEY: f[KEY].astype(np.int8)}))
    with pytest.raises(minblip.CheckpointError, match="int8"):
        minblip.Blip2ForConditionalGeneration.from_pretrained(folder)


def test_quantize_command_never_overwrites(tmp_path, capsys):
    src = model_dir(CASES["opt_forward"])
    dst = tmp_path / "q"
    assert main(["quantize", str(src), str(dst)]) == 0
    assert "Linear weights as int8" in capsys.readouterr().out
    before = (dst / "model.safetensors").read_bytes()
    assert main(["quantize", str(src), str(dst)]) == 2  # a checkpoint is there
    assert "--replace" in capsys.readouterr().err
    assert (dst / "model.safetensors").read_bytes() == before
    assert main(["quantize", str(src), str(dst), "--replace"]) == 0
    assert main(["quantize", str(src), str(src)]) == 2
    assert "never overwrites its source" in capsys.readouterr().err
    assert main(["quantize", str(dst), str(tmp_path / "again")]) == 2
    assert "already quantized" in capsys.readouterr().err
