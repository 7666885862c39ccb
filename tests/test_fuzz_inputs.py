"""Property-based fuzzing of the files minblip reads (issue 12): random mutations of valid
safetensors headers, shard indexes, config.json and tokenizer files must each load correctly or
raise a minblip error -- never another exception, never a hang, never a large allocation.

CI runs the profile's example count (HYPOTHESIS_PROFILE=ci: 50 per property, derandomized).
A longer run on demand (see docs/security.md for the last result):

    MINBLIP_FUZZ_EXAMPLES=5000 /work/venv/bin/python -m pytest -q tests/test_fuzz_inputs.py
"""

import json
import os
import resource
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import GOLDEN, TINY_VISION, tiny_vision_tensors, write_checkpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

import minblip
from minblip.errors import MinblipError
from minblip.tokenize import BertTokenizer
from minblip.weights import load_flat, load_safetensors

_N = int(os.environ.get("MINBLIP_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    deadline=10_000,  # a hang is a failure
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    **({"max_examples": _N} if _N else {}),
)
MAX_GROWTH_MIB = 512  # peak RSS a whole fuzz test may add

# JSON values of every kind, including the hostile ones: huge and negative ints, floats, deep nests
LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 2**64, 10**12]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["F32", "F16", "BF16", "I64", "U16", "../x", "/abs", "", "sub/a.safetensors"]),
)
JSON = st.recursive(
    LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=8,
)


@pytest.fixture(autouse=True)
def bounded_memory():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown < MAX_GROWTH_MIB, f"peak memory grew by {grown:.0f} MiB"


def _valid_header():
    rng = np.random.default_rng(0)
    tensors = {
        "a": rng.standard_normal((2, 3)).astype(np.float32),
        "b": np.arange(4, dtype=np.int64),
        "c": rng.standard_normal(5).astype(np.float16),
    }
    path = Path(tempfile.mkdtemp()) / "v.safetensors"
    save_file(tensors, str(path))
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]), data[8 + n :]


HEADER, DATA = _valid_header()


def _mutated_header(draw):
    """A JSON-level mutation of the valid header: a field replaced, swapped, removed, or a key
    duplicated, then (sometimes) byte-level damage."""
    h = json.loads(json.dumps(HEADER))
    keys = [k for k in h if k != "__metadata__"]
    kind = draw(st.sampled_from(["replace", "swap", "drop", "dup", "meta", "top"]))
    key = draw(st.sampled_from(keys))
    field = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
    if kind == "replace":
        h[key][field] = draw(JSON)
    elif kind == "swap":
        other = draw(st.sampled_from(keys))
        h[key][field], h[other][field] = h[other][field], h[key][field]
    elif kind == "drop":
        del h[key][field]
    elif kind == "meta":
        h["__metadata__"] = draw(JSON)
    elif kind == "top":
        h[draw(st.text(max_size=4))] = draw(JSON)
    text = json.dumps(h)
    if kind == "dup":  # a second copy of an entry, pointing at a neighbour's bytes
        other = json.dumps(h[draw(st.sampled_from(keys))])
        text = text[:-1] + f', "{key}": {other}' + "}"
    raw = text.encode()
    for _ in range(draw(st.integers(0, 2))):  # byte flips
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([draw(st.integers(0, 255))]) + raw[i + 1 :]
    return raw


@FUZZ
@given(data=st.data())
def test_fuzzed_safetensors_header(tmp_path, data):
    raw = _mutated_header(data.draw)
    body = DATA
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(DATA) + 8)))
    length = len(raw)
    if data.draw(st.booleans()):
        length = data.draw(st.sampled_from([0, 1, len(raw) - 1, len(raw) + 1, 2**63, 2**64 - 1]))
    content = length.to_bytes(8, "little") + raw + body
    if cut is not None:
        content = content[: 8 + len(raw) + cut]
    path = tmp_path / "f.safetensors"
    path.write_bytes(content)
    try:
        ours = load_safetensors(path)
    except MinblipError:
        return
    # accepted: safetensors itself accepts the file and reads the same tensors
    theirs = load_file(str(path))
    assert ours.keys() == theirs.keys()
    for k in theirs:
        want = theirs[k].astype(np.float32) if theirs[k].dtype.kind == "f" else theirs[k]
        assert ours[k].shape == theirs[k].shape and np.array_equal(ours[k], want), k


@pytest.fixture(scope="module")
def shard_folder():
    tensors = tiny_vision_tensors()
    keys = sorted(tensors)
    folder = Path(tempfile.mkdtemp()) / "sharded"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(TINY_VISION))
    save_file({k: tensors[k] for k in keys[::2]}, str(folder / "a.safetensors"))
    save_file({k: tensors[k] for k in keys[1::2]}, str(folder / "sub" / "b.safetensors"))
    good = {k: ("a.safetensors" if i % 2 == 0 else "sub/b.safetensors") for i, k in enumerate(keys)}
    return folder, good


@FUZZ
@given(data=st.data())
def test_fuzzed_shard_index(shard_folder, data):
    folder, good = shard_folder
    wm = dict(good)
    kind = data.draw(st.sampled_from(["value", "key", "map", "index", "bytes"]))
    key = data.draw(st.sampled_from(sorted(wm)))
    index = {"metadata": {"total_size": 1}, "weight_map": wm}
    if kind == "value":
        wm[key] = data.draw(JSON)
    elif kind == "key":
        wm[data.draw(st.text(max_size=8))] = data.draw(st.sampled_from(["a.safetensors", "x"]))
    elif kind == "map":
        index["weight_map"] = data.draw(JSON)
    elif kind == "index":
        index = data.draw(JSON)
    raw = json.dumps(index).encode()
    if kind == "bytes":
        i = data.draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([data.draw(st.integers(0, 255))]) + raw[i + 1 :]
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    (folder / "model.safetensors.index.json").write_bytes(raw)
    try:
        minblip.BlipVisionModel.from_pretrained(folder)  # the index, the shards, the shapes
    except MinblipError:
        return
    flat = load_flat(folder)
    ref = tiny_vision_tensors()
    assert flat.keys() == ref.keys() and all(np.array_equal(flat[k], ref[k]) for k in ref)


@pytest.fixture(scope="module")
def vision_folder():
    return write_checkpoint(Path(tempfile.mkdtemp()) / "v", TINY_VISION, tiny_vision_tensors())


@FUZZ
@given(data=st.data())
def test_fuzzed_config(vision_folder, data):
    cfg = dict(TINY_VISION)
    kind = data.draw(st.sampled_from(["value", "add", "drop", "bytes"]))
    key = data.draw(st.sampled_from(sorted(cfg)))
    if kind == "value":
        cfg[key] = data.draw(JSON)
    elif kind == "add":
        cfg[data.draw(st.sampled_from(["layer_norm_eps", "hidden_act", "projection_dim"]))] = (
            data.draw(JSON)
        )
    elif kind == "drop":
        del cfg[key]
    raw = json.dumps(cfg).encode()
    if kind == "bytes":
        i = data.draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([data.draw(st.integers(0, 255))]) + raw[i + 1 :]
    (vision_folder / "config.json").write_bytes(raw)
    try:
        model = minblip.BlipVisionModel.from_pretrained(vision_folder)
    except MinblipError:
        return
    model(np.zeros((1, 3, 16, 16), np.float32))  # what loads, runs


TOKENIZER = GOLDEN / "tokenizer" / "blip"
TOK_CONFIG = json.loads((TOKENIZER / "tokenizer_config.json").read_text())
TOK_JSON = (TOKENIZER / "tokenizer.json").read_bytes()


@FUZZ
@given(data=st.data())
def test_fuzzed_tokenizer_files(tmp_path, data):
    folder = tmp_path / "tok"
    folder.mkdir(exist_ok=True)
    cfg = dict(TOK_CONFIG)
    names = sorted(
        {*cfg, "model_max_length", "pad_token", "padding_side", "truncation_side", "unk_token"}
    )
    for _ in range(data.draw(st.integers(1, 3))):
        cfg[data.draw(st.sampled_from(names))] = data.draw(JSON)
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    tj = TOK_JSON
    kind = data.draw(st.sampled_from(["intact", "truncate", "flip", "model"]))
    if kind == "truncate":
        tj = tj[: data.draw(st.integers(0, len(tj)))]
    elif kind == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(tj) - 1))
            tj = tj[:i] + bytes([data.draw(st.integers(0, 255))]) + tj[i + 1 :]
    elif kind == "model":
        d = json.loads(tj)
        d["model"][data.draw(st.sampled_from(sorted(d["model"])))] = data.draw(JSON)
        tj = json.dumps(d).encode()
    (folder / "tokenizer.json").write_bytes(tj)
    try:
        tok = BertTokenizer.from_pretrained(folder)
        enc = tok(["a photo of a dog", "two"], padding=True, truncation=True, return_tensors="np")
        tok.batch_decode(enc["input_ids"], skip_special_tokens=True)
    except MinblipError:
        return
    finally:
        shutil.rmtree(folder)
