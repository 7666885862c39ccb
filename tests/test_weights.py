"""The checkpoint loader: safetensors reading, dtypes, shards, tree, read-only, and bad files."""

import json
import shutil

import numpy as np
import pytest
from conftest import TINY_VISION, tiny_vision_tensors, write_checkpoint
from safetensors.numpy import load_file, save_file

import minblip
from minblip.errors import CheckpointError, ConfigError, InputError, MinblipError
from minblip.weights import KeyTracker, load_flat, load_safetensors, release, to_tree


def test_reader_equals_safetensors_library(tiny_vision_dir):
    ours = load_safetensors(tiny_vision_dir / "model.safetensors")
    theirs = load_file(str(tiny_vision_dir / "model.safetensors"))
    assert ours.keys() == theirs.keys()
    for k in theirs:
        assert ours[k].dtype == theirs[k].dtype and np.array_equal(ours[k], theirs[k]), k


def test_arrays_are_read_only(tiny_vision_dir):
    model = minblip.BlipVisionModel.from_pretrained(tiny_vision_dir)
    w = model.params["encoder"]["layers"][0]["mlp"]["fc1"]["weight"]
    with pytest.raises(ValueError):
        w[0, 0] = 1.0


@pytest.mark.parametrize("dtype", ["F16", "BF16", "F64"])
def test_half_bf16_and_double_files_load_as_float32(tmp_path, dtype):
    ref = tiny_vision_tensors()
    if dtype == "F16":
        stored = {k: v.astype(np.float16) for k, v in ref.items()}
        expect = {k: v.astype(np.float32) for k, v in stored.items()}
    elif dtype == "F64":
        stored = {k: v.astype(np.float64) for k, v in ref.items()}
        expect = ref
    else:  # bf16 = top 16 bits of float32 (truncation here; the reader must invert it exactly)
        bits = {k: (v.view(np.uint32) >> 16).astype(np.uint16) for k, v in ref.items()}
        expect = {k: (b.astype(np.uint32) << 16).view(np.float32) for k, b in bits.items()}
        stored = None
    path = tmp_path / "m.safetensors"
    if stored is not None:
        save_file(stored, str(path))
    else:
        _write_raw(path, {k: ("BF16", b.shape, b.tobytes()) for k, b in bits.items()})
    got = load_safetensors(path)
    for k in ref:
        assert got[k].dtype == np.float32 and np.array_equal(got[k], expect[k]), k


def _write_raw(path, entries, header_extra=b""):
    header, blobs, off = {}, [], 0
    for k, (dt, shape, blob) in entries.items():
        header[k] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(len(h).to_bytes(8, "little") + h + b"".join(blobs))


def test_sharded_checkpoint_loads_like_single_file(tmp_path, tiny_vision_dir):
    tensors = tiny_vision_tensors()
    keys = sorted(tensors)
    folder = tmp_path / "sharded"
    folder.mkdir()
    shutil.copy(tiny_vision_dir / "config.json", folder)
    halves = {
        "model-00001-of-00002.safetensors": keys[::2],
        "model-00002-of-00002.safetensors": keys[1::2],
    }
    for name, ks in halves.items():
        save_file({k: tensors[k] for k in ks}, str(folder / name))
    weight_map = {k: name for name, ks in halves.items() for k in ks}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    a = load_flat(folder)
    b = load_flat(tiny_vision_dir)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00002"):
        load_flat(folder)


def test_position_ids_buffers_are_accepted(tmp_path):
    tensors = tiny_vision_tensors() | {
        "embeddings.position_ids": np.arange(5, dtype=np.int64)[None]
    }
    folder = write_checkpoint(tmp_path / "m", TINY_VISION, tensors)
    minblip.BlipVisionModel.from_pretrained(folder)


def test_tree_nests_numbered_children_as_lists():
    x = np.zeros(1)
    tree = to_tree({"a.layers.1.w": x, "a.layers.0.w": x, "b": x})
    assert isinstance(tree["a"]["layers"], list) and len(tree["a"]["layers"]) == 2
    tracker = KeyTracker(tree)
    tracker["a"]["layers"][1]["w"]
    assert tracker.reads == {"a.layers.1.w"}


def test_tree_refuses_layer_numbers_with_a_gap():
    x = np.zeros(1)
    with pytest.raises(CheckpointError, match=r"not 0..n-1: \[0, 2\]"):
        to_tree({"a.layers.0.w": x, "a.layers.2.w": x})


def test_float64_compute(tiny_vision_dir):
    model = minblip.BlipVisionModel.from_pretrained(tiny_vision_dir, dtype="float64")
    out = model(np.zeros((1, 3, 16, 16)))
    assert model.dtype == np.float64 and out.last_hidden_state.dtype == np.float64


# ----------------------------------------------------------------------------- bad checkpoints


def _expect(exc, match, fn, *args, **kwargs):
    with pytest.raises(exc, match=match) as info:
        fn(*args, **kwargs)
    assert isinstance(info.value, MinblipError)
    return info.value


def test_missing_folder(tmp_path):
    _expect(
        CheckpointError, "not found", minblip.BlipVisionModel.from_pretrained, tmp_path / "nope"
    )


def test_missing_weights_file(tiny_vision_dir):
    (tiny_vision_dir / "model.safetensors").unlink()
    _expect(
        CheckpointError,
        "no model.safetensors",
        minblip.BlipVisionModel.from_pretrained,
        tiny_vision_dir,
    )


def test_pickle_only_folder_is_refused(tiny_vision_dir):
    (tiny_vision_dir / "model.safetensors").rename(tiny_vision_dir / "pytorch_model.bin")
    _expect(CheckpointError, "pickle", minblip.BlipVisionModel.from_pretrained, tiny_vision_dir)


def test_truncated_weights_file(tiny_vision_dir):
    path = tiny_vision_dir / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    err = _expect(
        CheckpointError, "truncated", minblip.BlipVisionModel.from_pretrained, tiny_vision_dir
    )
    assert "model.safetensors" in str(err)


@pytest.mark.parametrize(
    "content",
    [b"", b"\x01\x02", b"\xff" * 64, (40).to_bytes(8, "little") + b"{not json" + b" " * 31],
)
def test_garbage_weights_file(tiny_vision_dir, content):
    (tiny_vision_dir / "model.safetensors").write_bytes(content)
    err = _expect(
        CheckpointError, "safetensors", minblip.BlipVisionModel.from_pretrained, tiny_vision_dir
    )
    assert "model.safetensors" in str(err)


def test_missing_weight(tmp_path):
    tensors = tiny_vision_tensors()
    del tensors["encoder.layers.0.mlp.fc2.bias"]
    folder = write_checkpoint(tmp_path / "m", TINY_VISION, tensors)
    _expect(
        CheckpointError,
        r"missing weight.*encoder\.layers\.0\.mlp\.fc2\.bias",
        minblip.BlipVisionModel.from_pretrained,
        folder,
    )


def test_unexpected_weight(tmp_path):
    tensors = tiny_vision_tensors() | {
        "encoder.layers.0.mlp.fc3.weight": np.zeros((2, 2), np.float32)
    }
    folder = write_checkpoint(tmp_path / "m", TINY_VISION, tensors)
    _expect(
        CheckpointError, r"unexpected weight.*fc3", minblip.BlipVisionModel.from_pretrained, folder
    )


def test_wrong_shape(tmp_path):
    tensors = tiny_vision_tensors()
    tensors["post_layernorm.weight"] = np.ones(13, np.float32)
    folder = write_checkpoint(tmp_path / "m", TINY_VISION, tensors)
    _expect(
        CheckpointError,
        r"post_layernorm\.weight.*\(13,\).*\(12,\)",
        minblip.BlipVisionModel.from_pretrained,
        folder,
    )


def test_wrong_dtype(tmp_path):
    tensors = tiny_vision_tensors()
    tensors["post_layernorm.weight"] = np.ones(12, np.int32)
    folder = write_checkpoint(tmp_path / "m", TINY_VISION, tensors)
    _expect(
        CheckpointError,
        r"post_layernorm\.weight.*int32",
        minblip.BlipVisionModel.from_pretrained,
        folder,
    )


def test_config_not_json(tiny_vision_dir):
    (tiny_vision_dir / "config.json").write_text("{'model_type': blip")
    err = _expect(
        ConfigError, "not valid JSON", minblip.BlipVisionModel.from_pretrained, tiny_vision_dir
    )
    assert "config.json" in str(err)


def test_unknown_model_type(tiny_vision_dir):
    (tiny_vision_dir / "config.json").write_text(json.dumps(TINY_VISION | {"model_type": "llama"}))
    _expect(
        ConfigError,
        "unknown model_type 'llama'",
        minblip.BlipVisionModel.from_pretrained,
        tiny_vision_dir,
    )


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("num_attention_heads", 5, "not divisible"),
        ("hidden_size", "12", "must be int"),
        ("hidden_act", "mish2", "not supported"),
        ("patch_size", 0, "positive"),
    ],
)
def test_invalid_config_values(tiny_vision_dir, field, value, match):
    (tiny_vision_dir / "config.json").write_text(json.dumps(TINY_VISION | {field: value}))
    err = _expect(ConfigError, match, minblip.BlipVisionModel.from_pretrained, tiny_vision_dir)
    assert field in str(err)


@pytest.mark.parametrize(
    "shape, match",
    [
        ((3, 16, 16), "shape"),
        ((1, 4, 16, 16), "shape"),
        ((1, 16, 16, 3), "channels-last"),
        ((1, 3, 4, 4), "smaller than one"),
        ((1, 3, 32, 32), "position table"),
    ],
)
def test_bad_pixel_values(tiny_vision_dir, shape, match):
    model = minblip.BlipVisionModel.from_pretrained(tiny_vision_dir)
    _expect(InputError, match, model, np.zeros(shape, np.float32))


def test_output_hidden_states_selects_by_index(tiny_vision_dir):
    model = minblip.BlipVisionModel.from_pretrained(tiny_vision_dir)
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    every = model(x, output_hidden_states=True).hidden_states
    some = model(x, output_hidden_states=[0, -1]).hidden_states
    assert len(every) == len(some) == 2
    np.testing.assert_array_equal(some[0], every[0])
    np.testing.assert_array_equal(some[-1], every[-1])
    one = model(x, output_hidden_states=-1).hidden_states
    assert one[0] is None and np.array_equal(one[1], every[1])
    assert model(x).hidden_states is None


def test_subfolder_and_attn_implementation(tmp_path):
    """from_pretrained(..., subfolder=...) reads the files there; attn_implementation is accepted
    (every implementation computes the same function); a missing subfolder is named."""
    write_checkpoint(tmp_path / "inner", TINY_VISION, tiny_vision_tensors())
    model = minblip.BlipVisionModel.from_pretrained(
        tmp_path, subfolder="inner", attn_implementation="eager"
    )
    direct = minblip.BlipVisionModel.from_pretrained(tmp_path / "inner")
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(model(x).last_hidden_state, direct(x).last_hidden_state)
    with pytest.raises(CheckpointError, match="no such subfolder"):
        minblip.BlipVisionModel.from_pretrained(tmp_path, subfolder="nope")


def test_release_drops_mapped_pages_and_keeps_values(tmp_path):
    """weights.release: a memory-mapped tensor reads the same after its pages are released
    (they map back from the file), and a widened copy is never touched (MADV_DONTNEED would
    zero process-owned memory)."""
    import mmap

    rng = np.random.default_rng(0)
    big = rng.standard_normal((64, 1024)).astype(np.float32)  # 256 KiB: whole pages inside
    half = rng.standard_normal((8, 512)).astype(np.float16)  # widened to float32 on load
    save_file({"big": big, "half": half}, tmp_path / "model.safetensors")
    flat = load_safetensors(tmp_path / "model.safetensors")
    tree = {"a": {"big": flat["big"]}, "b": [flat["half"]]}
    widened = flat["half"].copy()
    n = release(tree)
    assert 0 < n <= big.nbytes and n % mmap.PAGESIZE == 0
    np.testing.assert_array_equal(flat["big"], big)
    np.testing.assert_array_equal(flat["half"], widened)
    assert release({"x": np.ones(4096, np.float32)}) == 0  # not a view of a mapped file
