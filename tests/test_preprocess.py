"""minblip.preprocess against transformers 5.23.0's BlipImageProcessor (PIL backend).

Golden cases come from tools/golden_cases/preprocess.py (see its docstring for meta.json).
Tolerance: 1e-6 absolute. Both sides run the same Pillow resize on the same uint8 pixels and
the same float64 -> float32 rescale, so the only room for difference is the float32
normalisation, which is computed elementwise in the same order; in practice the error is 0.
"""

import json
import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from minblip.errors import ConfigError, ImageError, InputError, MinblipError
from minblip.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, BlipImageProcessor

GOLDEN = pathlib.Path(__file__).resolve().parent.parent / "golden"
CASES = sorted(p.parent for p in (GOLDEN / "preprocess").glob("*/meta.json"))
ATOL = 1e-6


def _meta(case):
    return json.loads((case / "meta.json").read_text())


def _inputs(case, meta):
    arrays = np.load(case / "inputs.npz") if (case / "inputs.npz").exists() else {}
    images = []
    for spec in meta["inputs"]:
        if spec["kind"] == "array":
            images.append(arrays[spec["key"]])
        elif spec["kind"] == "path":
            images.append(str(GOLDEN / spec["file"]))
        else:
            image = Image.open(GOLDEN / spec["file"])
            image.load()
            images.append(image.convert(spec["convert"]) if spec["convert"] else image)
    return images[0] if meta["single"] else images


def _run(case, meta):
    processor = BlipImageProcessor.from_pretrained(case / "model", **meta["from_pretrained_kwargs"])
    return processor(_inputs(case, meta), return_tensors="np", **meta["kwargs"]).pixel_values


def test_golden_cases_exist():
    assert len(CASES) >= 100
    assert (GOLDEN / "images" / "SOURCES.md").is_file()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_matches_transformers(case):
    meta = _meta(case)
    assert meta["class"] == "BlipImageProcessorPil" and meta["backend"] == "pil"
    if meta["raises"]:
        with pytest.raises(MinblipError):
            _run(case, meta)
        return
    want = np.load(case / "outputs.npz")["out.pixel_values"]
    got = _run(case, meta)
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.dtype)
    err = np.abs(got.astype(np.float64) - want.astype(np.float64)).max()
    assert err <= ATOL, f"{case.name}: max abs error {err:.3g} > {ATOL}"


def test_bit_exact_everywhere():
    """Stronger than ATOL: every case is bit-identical (same Pillow, same float64 rescale, same
    float32 normalisation). A float32 rescale would still pass ATOL (errors of 4.8e-7) but not
    this, nor the all_levels_rescale_only case below."""
    inexact = []
    for case in CASES:
        meta = _meta(case)
        if not meta["raises"]:
            want = np.load(case / "outputs.npz")["out.pixel_values"]
            if not np.array_equal(_run(case, meta), want):
                inexact.append(case.name)
    assert not inexact, inexact


def test_rescale_is_float64_then_float32():
    case = GOLDEN / "preprocess" / "all_levels_rescale_only"
    want = np.load(case / "outputs.npz")["out.pixel_values"]
    np.testing.assert_array_equal(_run(case, _meta(case)), want)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_settings_match_transformers(case):
    """What from_pretrained read (defaults, int size, overrides) equals what transformers read."""
    meta = _meta(case)
    hf = meta["processor_settings"]
    ours = BlipImageProcessor.from_pretrained(case / "model", **meta["from_pretrained_kwargs"])
    for key in (
        "do_convert_rgb",
        "do_resize",
        "resample",
        "do_rescale",
        "rescale_factor",
        "do_normalize",
    ):
        assert getattr(ours, key) == hf[key], key
    assert ours.size == {k: v for k, v in hf["size"].items() if v is not None}
    assert list(ours.image_mean) == hf["image_mean"]
    assert list(ours.image_std) == hf["image_std"]


def test_class_defaults():
    meta = _meta(GOLDEN / "preprocess" / "default_astronaut")
    hf = meta["processor_settings"]
    p = BlipImageProcessor()
    assert p.size == {k: hf["size"][k] for k in ("height", "width")}
    assert list(OPENAI_CLIP_MEAN) == hf["image_mean"] and list(OPENAI_CLIP_STD) == hf["image_std"]
    assert p.resample == hf["resample"] and p.rescale_factor == hf["rescale_factor"]


def test_folder_without_config_uses_defaults(tmp_path):
    hf = _meta(GOLDEN / "preprocess" / "default_astronaut")["processor_settings"]
    p = BlipImageProcessor.from_pretrained(tmp_path)
    assert p.size == {k: hf["size"][k] for k in ("height", "width")}
    assert p.do_normalize == hf["do_normalize"]


def test_preprocess_alias_and_path_object():
    p = BlipImageProcessor(size=16)
    photo = GOLDEN / "images" / "coffee.png"
    a = p.preprocess(photo).pixel_values
    b = p(str(photo))["pixel_values"]
    assert a.shape == (1, 3, 16, 16) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- bad input -> named errors


def _processor():
    return BlipImageProcessor(size=8)


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "no_such_photo.png"
    with pytest.raises(ImageError, match="no_such_photo.png"):
        _processor()(str(missing))


def test_empty_file(tmp_path):
    f = tmp_path / "empty.png"
    f.write_bytes(b"")
    with pytest.raises(ImageError, match="empty.*empty.png"):
        _processor()(f)


def test_corrupt_file(tmp_path):
    f = tmp_path / "corrupt.png"
    f.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(ImageError, match="corrupt.png"):
        _processor()(f)


def test_truncated_file(tmp_path):
    data = (GOLDEN / "images" / "coffee.png").read_bytes()
    f = tmp_path / "truncated.png"
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated.png"):
        _processor()(f)


def test_truncated_pil_image(tmp_path):
    data = (GOLDEN / "images" / "coffee.png").read_bytes()
    f = tmp_path / "truncated.png"
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="RGB"):
        _processor()(Image.open(f))  # lazily opened: decoding fails inside the processor


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(ImageError, match="not a file"):
        _processor()(tmp_path)


@pytest.mark.parametrize("shape", [(16,), (16, 16), (1, 2, 3, 4, 5)])
def test_array_wrong_rank(shape):
    with pytest.raises(InputError, match="dims"):
        _processor()(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("shape", [(16, 16, 2), (5, 16, 16), (16, 16, 6)])
def test_array_wrong_channels(shape):
    with pytest.raises(InputError, match="channels"):
        _processor()(np.zeros(shape, np.uint8))


def test_array_wrong_channels_explicit_format():
    with pytest.raises(InputError, match="2 channels"):
        _processor()(np.zeros((2, 16, 16), np.uint8), input_data_format="channels_first")


def test_array_bad_dtype():
    with pytest.raises(InputError, match="dtype"):
        _processor()(np.zeros((16, 16, 3), np.complex64))


def test_float_array_out_of_range():
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        _processor()(np.full((16, 16, 3), 1.5, np.float32))


def test_float_rgba_out_of_range():
    with pytest.raises(InputError, match="alpha"):
        _processor()(np.full((16, 16, 4), 2.5, np.float32))


@pytest.mark.parametrize("bad", [42, None, {"image": 1}, b"bytes", [[1, 2], [3, 4]]])
def test_unsupported_type(bad):
    with pytest.raises(InputError, match="unsupported image type"):
        _processor()(bad)


@pytest.mark.parametrize("empty", [[], [[]], ()])
def test_empty_list(empty):
    with pytest.raises(InputError, match="no images"):
        _processor()(empty)


@pytest.mark.parametrize("source", ["https://example.com/cat.png", "data:image/png;base64,iVBO"])
def test_urls_are_refused(source):
    with pytest.raises(InputError, match="not supported"):
        _processor()(source)


def test_unconvertible_mode():
    image = Image.new("LA", (8, 8)).convert("La")
    with pytest.raises(ImageError, match="La"):
        _processor()(image)


def test_ragged_batch_without_resize():
    images = [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)]
    with pytest.raises(InputError, match="different shapes"):
        _processor()(images, do_resize=False)


def test_mean_std_channel_mismatch():
    with pytest.raises(InputError, match="image_mean"):
        _processor()(np.zeros((8, 8, 3), np.uint8), image_mean=[0.5, 0.5])


def test_unknown_keyword():
    with pytest.raises(InputError, match="do_sharpen"):
        _processor()(np.zeros((8, 8, 3), np.uint8), do_sharpen=True)


def test_torch_tensors_are_refused():
    with pytest.raises(InputError, match="return_tensors"):
        _processor()(np.zeros((8, 8, 3), np.uint8), return_tensors="pt")


@pytest.mark.parametrize(
    "config, field",
    [
        ("{not json", "JSON"),
        ('{"size": {"longest_edge": 224}}', "size"),  # transformers fails at call time
        ('{"size": {"shortest_edge": 224, "height": 9}}', "size"),
        ('{"size": 0}', "size"),
        ('{"do_center_crop": true, "crop_size": 224}', "do_center_crop"),
        ('{"size": {"max_height": 224}}', "size"),
        ('{"resample": "bicubic"}', "resample"),
        ("[384]", "JSON object"),
    ],
)
def test_bad_config(tmp_path, config, field):
    (tmp_path / "preprocessor_config.json").write_text(config)
    with pytest.raises(ConfigError, match=field):
        BlipImageProcessor.from_pretrained(tmp_path)


def test_config_extra_keys_are_ignored(tmp_path):
    config = {
        "image_processor_type": "BlipImageProcessor",
        "processor_class": "BlipProcessor",
        "size": 224,
        "colour_jitter": 1,
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    p = BlipImageProcessor.from_pretrained(tmp_path)
    assert p.size == {"height": 224, "width": 224}
    assert p.unused_config_keys == ("colour_jitter", "image_processor_type", "processor_class")


def test_missing_checkpoint_folder(tmp_path):
    with pytest.raises(MinblipError, match="not_there"):
        BlipImageProcessor.from_pretrained(tmp_path / "not_there")


def test_hub_ids_go_through_resolve(monkeypatch, tmp_path):
    import minblip.preprocess as preprocess

    (tmp_path / "preprocessor_config.json").write_text('{"size": {"height": 224, "width": 224}}')
    seen = []
    monkeypatch.setattr(preprocess, "resolve", lambda p: seen.append(p) or tmp_path)
    p = BlipImageProcessor.from_pretrained("Salesforce/blip2-opt-2.7b")
    assert seen == ["Salesforce/blip2-opt-2.7b"] and p.size == {"height": 224, "width": 224}


# ------------------------------------------------------------------------- properties

SIDES = st.integers(1, 48)


@settings(max_examples=50, deadline=None)
@given(data=st.data(), channels=st.sampled_from([1, 3, 4]), out=st.tuples(SIDES, SIDES))
def test_random_uint8_shape_dtype_finite(data, channels, out):
    h, w = data.draw(SIDES), data.draw(SIDES.filter(lambda v: v not in (1, 3, 4)))
    x = data.draw(arrays(np.uint8, (h, w, channels)))
    size = {"height": out[0], "width": out[1]}
    pv = BlipImageProcessor(size=size)(x, input_data_format="channels_last").pixel_values
    assert pv.shape == (1, 3, *out) and pv.dtype == np.float32
    assert np.isfinite(pv).all()
    lo = (0 - np.array(OPENAI_CLIP_MEAN)) / np.array(OPENAI_CLIP_STD)
    hi = (1 - np.array(OPENAI_CLIP_MEAN)) / np.array(OPENAI_CLIP_STD)
    assert (pv.min(axis=(0, 2, 3)) >= lo - 1e-6).all()
    assert (pv.max(axis=(0, 2, 3)) <= hi + 1e-6).all()


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_array_and_pil_paths_agree(data):
    """HWC uint8 array == CHW array == the same pixels as a PIL image (RGB and L)."""
    h, w = data.draw(st.integers(5, 40)), data.draw(st.integers(5, 40))
    gray = data.draw(st.booleans())
    x = data.draw(arrays(np.uint8, (h, w, 1 if gray else 3)))
    p = BlipImageProcessor(size={"height": 12, "width": 20})
    from_pil = p(Image.fromarray(x[..., 0] if gray else x)).pixel_values
    hwc = p(x, input_data_format="channels_last").pixel_values
    chw = p(x.transpose(2, 0, 1), input_data_format="channels_first").pixel_values
    np.testing.assert_array_equal(hwc, from_pil)
    np.testing.assert_array_equal(chw, from_pil)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_batch_equals_single(data):
    n = data.draw(st.integers(1, 4))
    xs = [data.draw(arrays(np.uint8, (data.draw(st.integers(5, 30)), 7, 3))) for _ in range(n)]
    p = BlipImageProcessor(size=10)
    batch = p(xs).pixel_values
    singles = np.concatenate([p(x).pixel_values for x in xs])
    np.testing.assert_array_equal(batch, singles)


@settings(max_examples=25, deadline=None)
@given(x=arrays(np.uint8, (9, 11, 3)))
def test_opaque_rgba_equals_rgb(x):
    """Full alpha changes nothing, on the PIL path and the array path."""
    rgba = np.dstack([x, np.full(x.shape[:2], 255, np.uint8)])
    p = BlipImageProcessor(size=6)
    want = p(x).pixel_values
    np.testing.assert_array_equal(p(rgba).pixel_values, want)
    np.testing.assert_array_equal(p(Image.fromarray(rgba, "RGBA")).pixel_values, want)


def test_channels_last_output_is_ignored_with_a_warning():
    x = np.zeros((30, 60, 3), np.uint8)
    with pytest.warns(UserWarning, match="ignored"):
        out = _processor()(x, data_format="channels_last").pixel_values
    assert out.shape[1] == 3  # as transformers 5.23: still (B, 3, H, W)
