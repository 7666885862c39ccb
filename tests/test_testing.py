"""minblip.testing (random weights, checksum, materialize) and the golden_utils comparisons."""

import json
import re

import numpy as np
import pytest
from golden_utils import GOLDEN, assert_trace_close, case_dirs, load_case, output_arrays
from safetensors.numpy import load_file

from minblip.errors import CheckpointError
from minblip.testing import checksum, materialize, random_weights

SHAPES = {
    "vision_model.embeddings.class_embedding": (1, 1, 36),
    "vision_model.embeddings.position_embedding": (1, 17, 36),
    "vision_model.embeddings.patch_embedding.weight": (36, 3, 8, 8),
    "vision_model.embeddings.patch_embedding.bias": (36,),
    "vision_model.encoder.layers.0.layer_norm1.weight": (36,),
    "vision_model.encoder.layers.0.layer_norm1.bias": (36,),
    "vision_model.encoder.layers.0.self_attn.qkv.weight": (108, 36),
    "vision_model.encoder.layers.0.mlp.fc2.weight": (36, 400),
    "text_decoder.bert.embeddings.word_embeddings.weight": (50, 36),
    "text_decoder.bert.embeddings.LayerNorm.weight": (36,),
    "text_decoder.bert.embeddings.position_ids": (1, 40),
    "query_tokens": (1, 4, 36),
}


def test_random_weights_deterministic_per_key_and_order_free():
    a = random_weights(SHAPES, seed=3)
    b = random_weights(dict(reversed(list(SHAPES.items()))), seed=3)
    single = random_weights({"query_tokens": SHAPES["query_tokens"]}, seed=3)
    assert list(a) == list(SHAPES)
    for key in SHAPES:
        np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(a["query_tokens"], single["query_tokens"])
    c = random_weights(SHAPES, seed=4)
    assert not np.array_equal(a["query_tokens"], c["query_tokens"])


def test_random_weights_shapes_dtypes_and_distinct_keys():
    w = random_weights(SHAPES, seed=0)
    for key, shape in SHAPES.items():
        assert w[key].shape == shape
        assert w[key].dtype == (np.int64 if key.endswith("position_ids") else np.float32)
    # Two keys of one shape must not share values (each key has its own stream).
    ln_w = w["vision_model.encoder.layers.0.layer_norm1.weight"]
    assert not np.allclose(ln_w - 1, w["text_decoder.bert.embeddings.LayerNorm.weight"] - 1)
    w64 = random_weights(SHAPES, seed=0, dtype=np.float64)
    assert w64["query_tokens"].dtype == np.float64
    np.testing.assert_array_equal(w64["query_tokens"].astype(np.float32), w["query_tokens"])


def test_random_weights_scales_follow_the_documented_rules():
    big = {
        "enc.layer_norm1.weight": (20000,),
        "enc.layer_norm1.bias": (20000,),
        "embeddings.position_embedding": (1, 100, 200),
        "fc1.weight": (400, 900),
        "fc1.bias": (20000,),
        "embeddings.patch_embedding.weight": (64, 3, 16, 16),
    }
    w = random_weights(big, seed=0)
    assert abs(w["enc.layer_norm1.weight"].mean() - 1) < 0.01
    assert abs(w["enc.layer_norm1.weight"].std() - 0.1) < 0.01
    assert abs(w["enc.layer_norm1.bias"].std() - 0.1) < 0.01
    assert abs(w["embeddings.position_embedding"].std() - 0.5) < 0.01
    assert abs(w["fc1.weight"].std() - 1 / 30) < 0.001  # 1/sqrt(900)
    assert abs(w["fc1.bias"].std() - 0.1) < 0.01
    conv = w["embeddings.patch_embedding.weight"]
    assert abs(conv.std() - 1 / np.sqrt(3 * 16 * 16)) < 0.001  # conv fan_in 768


def test_random_weights_integer_buffers_are_arange():
    w = random_weights({"a.position_ids": (1, 7), "b.position_ids": (7,)}, seed=0)
    np.testing.assert_array_equal(w["a.position_ids"], np.arange(7)[None])
    np.testing.assert_array_equal(w["b.position_ids"], np.arange(7))


def test_random_weights_make_attention_and_layers_non_trivial():
    """A LN -> q/k projection -> softmax with these scales gives attention far from uniform."""
    w = random_weights(
        {
            "x.position_embedding": (1, 17, 36),
            "n.layer_norm1.weight": (36,),
            "n.layer_norm1.bias": (36,),
            "q.weight": (36, 36),
            "k.weight": (36, 36),
        },
        1,
    )
    x = w["x.position_embedding"][0]
    h = (x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True)
    h = h * w["n.layer_norm1.weight"] + w["n.layer_norm1.bias"]
    s = (
        (h @ w["q.weight"].T) @ (h @ w["k.weight"].T).T / np.sqrt(12)
    )  # one head of 12 (D 36, 3 heads)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    assert p.max(-1).mean() > 2 / 17  # at least twice uniform
    assert 0.5 < np.abs(h @ w["q.weight"].T).std() < 2  # O(1) activations


def test_checksum_sees_keys_shapes_dtypes_and_values():
    w = random_weights(SHAPES, seed=0)
    base = checksum(w)
    assert base == checksum(dict(reversed(list(w.items()))))
    assert len(base) == 64
    changed = dict(w, query_tokens=w["query_tokens"].copy())
    changed["query_tokens"][0, 0, 0] += 1e-6
    assert checksum(changed) != base
    assert checksum(dict(w, query_tokens=w["query_tokens"].reshape(1, 36, 4))) != base
    assert checksum(dict(w, query_tokens=w["query_tokens"].astype(np.float64))) != base
    renamed = {("x" + k if k == "query_tokens" else k): v for k, v in w.items()}
    assert checksum(renamed) != base


def make_full_size_case(folder, shapes, seed=5, sha256=None):
    """A synthetic full-size case folder (weights.json + model/config.json), as the generator
    writes them."""
    weights = random_weights(shapes, seed)
    spec = {
        "seed": seed,
        "numpy": np.__version__,
        "tied": {},
        "sha256": sha256 or checksum(weights),
        "tensors": {k: {"shape": list(v.shape), "dtype": v.dtype.name} for k, v in weights.items()},
    }
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "config.json").write_text(json.dumps({"model_type": "blip_vision_model"}))
    (folder / "weights.json").write_text(json.dumps(spec))
    return weights


def test_materialize_writes_safetensors_and_configs_then_reuses(tmp_path):
    weights = make_full_size_case(tmp_path / "case", SHAPES)
    out = materialize(tmp_path / "case", tmp_path / "out")
    assert out == tmp_path / "out"
    loaded = load_file(str(out / "model.safetensors"))
    assert sorted(loaded) == sorted(weights)
    for k in weights:
        np.testing.assert_array_equal(loaded[k], weights[k])
        assert loaded[k].dtype == weights[k].dtype
    assert json.loads((out / "config.json").read_text()) == {"model_type": "blip_vision_model"}
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    materialize(tmp_path / "case", tmp_path / "out")  # same checksum: not rewritten
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp


def test_materialize_names_the_case_when_weights_drift(tmp_path):
    make_full_size_case(tmp_path / "drifted_case", SHAPES, sha256="0" * 64)
    with pytest.raises(CheckpointError, match="drifted_case"):
        materialize(tmp_path / "drifted_case", tmp_path / "out")
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_materialize_refuses_a_case_without_weights_json(tmp_path):
    (tmp_path / "tiny").mkdir()
    with pytest.raises(CheckpointError, match="tiny"):
        materialize(tmp_path / "tiny", tmp_path / "out")


def full_size_cases():
    return [c for g in ("vision",) for c in case_dirs(g) if (c / "weights.json").is_file()]


@pytest.mark.parametrize("case", full_size_cases(), ids=lambda c: f"{c.parent.name}/{c.name}")
def test_committed_full_size_cases_regenerate(case):
    """Every committed weights.json still regenerates to its checksum with this NumPy."""
    spec = json.loads((case / "weights.json").read_text())
    shapes = {k: tuple(t["shape"]) for k, t in spec["tensors"].items()}
    assert checksum(random_weights(shapes, spec["seed"])) == spec["sha256"]


def test_tiny_golden_models_hold_random_weights():
    """The committed tiny models are random_weights(seed) over their own keys: the generator
    used the documented rules, not transformers' init."""
    for case in case_dirs("vision"):
        if (case / "weights.json").is_file():
            continue
        meta, _, _ = load_case(case)
        saved = load_file(str(case / "model" / "model.safetensors"))
        again = random_weights({k: v.shape for k, v in saved.items()}, meta["seed"])
        assert checksum(saved) == checksum(again), case.name


# --- golden_utils.assert_trace_close -------------------------------------------------------


def trace(**values):
    return {k.replace("__", "."): np.asarray(v, dtype=np.float32) for k, v in values.items()}


def test_trace_close_passes_within_tolerance_and_ignores_extra_taps():
    exp = trace(a=[1.0, 2.0], b=[3.0])
    act = trace(a=[1.0, 2.0 + 1e-7], b=[3.0], extra=[9.0])
    assert_trace_close(exp, act, ["a", "b"], atol=1e-6, rtol=1e-6)


def test_trace_close_reports_the_first_divergence_with_errors_and_values():
    exp = trace(embeddings=[1.0, 2.0], layer__0=[3.0, 4.0], layer__1=[5.0, 6.0])
    act = trace(embeddings=[1.0, 2.0], layer__0=[3.0, 4.5], layer__1=[0.0, 0.0])
    with pytest.raises(AssertionError) as err:
        assert_trace_close(exp, act, ["embeddings", "layer.0", "layer.1"], 1e-5, 1e-5, what="tiny")
    msg = str(err.value)
    assert msg.startswith("tiny: first divergence (#1 of 3) at layer.0:")
    assert "max abs err 0.5" in msg and "max rel err 0.125" in msg
    assert "expected [3., 4.]" in msg and "actual   [3. , 4.5]" in msg
    assert "layer.1" not in msg


def test_trace_close_fails_on_a_missing_tap_and_on_shape_or_nan():
    exp = trace(a=[1.0], b=[2.0])
    with pytest.raises(AssertionError, match="b .*not by minblip"):
        assert_trace_close(exp, trace(a=[1.0]), ["a", "b"], 1e-5, 1e-5)
    with pytest.raises(AssertionError, match=r"shape \(2,\), expected \(1,\)"):
        assert_trace_close(exp, trace(a=[1.0, 1.0], b=[2.0]), ["a", "b"], 1e-5, 1e-5)
    with pytest.raises(AssertionError, match="max abs err inf"):
        assert_trace_close(exp, trace(a=[np.nan], b=[2.0]), ["a", "b"], 1e-5, 1e-5)


def test_trace_close_compares_integer_tokens_exactly():
    exp = {"out.sequences": np.array([[1, 2, 3]])}
    with pytest.raises(AssertionError, match=r"index \(0, 2\)"):
        assert_trace_close(exp, {"out.sequences": np.array([[1, 2, 4]])}, ["out.sequences"], 1, 1)


def test_output_arrays_names_fields_like_the_generator():
    flat = output_arrays(
        {"last_hidden_state": np.zeros(2), "hidden_states": (np.ones(1), np.ones(1))}
    )
    assert sorted(flat) == ["out.hidden_states.0", "out.hidden_states.1", "out.last_hidden_state"]


def test_golden_vision_cases_are_consistent():
    """Each case's inputs are usable: float32 4-d pixels, a model folder."""
    cases = case_dirs("vision")
    assert len(cases) >= 8
    for case in cases:
        meta, inputs, outputs = load_case(case)
        assert len(set(meta["order"])) == len(meta["order"])
        assert inputs["pixel_values"].dtype == np.float32  # full-size: rebuilt from its seed
        assert inputs["pixel_values"].ndim == 4
        assert (case / "model" / "config.json").is_file()


def _pins():
    """{package: version} pinned by tools/requirements-golden.txt (the golden environment)."""
    text = (GOLDEN.parent / "tools" / "requirements-golden.txt").read_text()
    return dict(re.findall(r"^([\w-]+)==(\S+)", text, re.M))


def _npz_keys(path):
    with np.load(path) as f:
        return set(f.files)


def _model_case(case):
    """A case folder of write_case (golden/FORMAT.md): its versions and the recorded keys."""
    meta = json.loads((case / "meta.json").read_text())
    recorded = set(meta["order"]) | set(meta["outputs"])
    assert len(meta["outputs"]) == len(set(meta["outputs"])), case
    if "draws" in meta:  # golden/beam_sampling: torch.multinomial's inputs and outputs
        n = meta["draws"]
        want = {f"{k}.{i}" for i in range(n) for k in ("probs", "idx")}
        assert _npz_keys(case / "draws.npz") == want, case
    return meta["versions"], recorded, _npz_keys(case / "outputs.npz"), {"torch"}


def _preprocess_case(case):
    meta = json.loads((case / "meta.json").read_text())
    stored = _npz_keys(case / "outputs.npz") if (case / "outputs.npz").is_file() else set()
    recorded = set() if meta["output"] is None else {"out.pixel_values"}
    assert (meta["output"] is None) == bool(meta.get("raises")), case
    return meta["versions"], recorded, stored, {"torch", "pillow"}


def _golden_records(group):
    """(where, versions, recorded keys, stored keys, packages that must be named) per file of
    golden/<group> that holds outputs; every group's layout must be known here."""
    root = GOLDEN / group
    if group == "preprocess":
        return [(c, *_preprocess_case(c)) for c in case_dirs(group)]
    if group == "logits_process":
        meta = json.loads((root / "meta.json").read_text())
        recorded = set(meta["configs"]) | {"ids", "scores"}
        return [(root, meta["versions"], recorded, _npz_keys(root / "cases.npz"), {"torch"})]
    if group in ("tokenizer", "blip2_processor"):
        data = json.loads((root / "cases.json").read_text())
        return [(root, data["versions"], set(), set(), {"tokenizers"})]
    if group == "signatures":
        data = json.loads((root / "signatures.json").read_text())
        return [(root, {"transformers": data["transformers"]}, set(), set(), set())]
    cases = case_dirs(group)
    assert cases and all("class" in json.loads((c / "meta.json").read_text()) for c in cases), (
        f"golden/{group}: a layout test_every_golden_group_records_versions_and_keys does not know"
    )
    return [(c, *_model_case(c)) for c in cases]


GROUPS = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir() and p.name != "images")


@pytest.mark.parametrize("group", GROUPS)
def test_every_golden_group_records_versions_and_keys(group):
    """The versions that wrote a fixture are the pinned ones (transformers, torch where torch
    computed it, and tokenizers / pillow where they did the work), and a case's recorded output
    keys are exactly the arrays it stores. (golden/images holds source images, not outputs.)"""
    pins = _pins()
    records = _golden_records(group)
    assert records
    for where, versions, recorded, stored, needs in records:
        name = where.relative_to(GOLDEN)
        assert versions["transformers"] == pins["transformers"], name
        if "torch" in needs:
            assert versions["torch"].split("+")[0] == pins["torch"], name
        for package in needs - {"torch"}:
            assert re.fullmatch(r"\d+\.\d+\.\d+\S*", versions[package]), (name, package)
        assert recorded == stored, (name, sorted(recorded ^ stored)[:5])


def test_golden_stays_within_its_size_budget():
    # A full-size case's model.safetensors exists only while the generator writes the case.
    total = sum(
        p.stat().st_size
        for p in GOLDEN.rglob("*")
        if p.is_file() and not (p.parent.parent / "weights.json").is_file()
    )
    # 40 MB since the BLIP-2 language models (issue 7 raised it from 20 MB)
    assert total < 40e6, f"golden/ is {total / 1e6:.1f} MB, over its 40 MB budget"


def test_load_case_rebuilds_generated_inputs_and_detects_drift(tmp_path):
    from minblip.testing import array_sha256, random_pixels

    px = random_pixels(4, 1, 16, 8)
    meta = {
        "generated_inputs": {
            "pixel_values": {"seed": 4, "shape": [1, 3, 16, 8], "sha256": array_sha256(px)}
        }
    }
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    np.savez(tmp_path / "inputs.npz", input_ids=np.arange(3))
    np.savez(tmp_path / "outputs.npz", out=np.zeros(1))
    _, inputs, _ = load_case(tmp_path)
    np.testing.assert_array_equal(inputs["pixel_values"], px)
    assert sorted(inputs) == ["input_ids", "pixel_values"]
    meta["generated_inputs"]["pixel_values"]["sha256"] = "0" * 64
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(AssertionError, match="pixel_values"):
        load_case(tmp_path)


def test_model_dir_follows_a_shared_model_folder(tmp_path):
    from golden_utils import model_dir

    (tmp_path / "a" / "model").mkdir(parents=True)
    (tmp_path / "a" / "meta.json").write_text("{}")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "meta.json").write_text(json.dumps({"model_dir": "../a/model"}))
    assert model_dir(tmp_path / "a") == tmp_path / "a" / "model"
    assert model_dir(tmp_path / "b") == (tmp_path / "a" / "model").resolve()
