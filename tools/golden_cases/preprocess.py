"""Golden cases for minblip.preprocess: transformers' BlipImageProcessor on real photos.

Writes
    root/images/            small public-domain / CC0 photos from scikit-image + SOURCES.md
                            (shared: other fixtures reuse these photos)
    root/preprocess/inputs/ the same photos in every PIL mode a user can hand in (PNG/JPEG/TIFF)
    root/preprocess/<case>/ model/preprocessor_config.json, inputs.npz (array inputs),
                            outputs.npz (out.pixel_values), meta.json

meta.json "inputs" lists the call's images in order, each one of
    {"kind": "pil",   "file": <path under golden/>, "convert": <mode or null>}
        -> Image.open(file); .load(); .convert(mode) if given; the PIL image is passed in
    {"kind": "path",  "file": <path under golden/>}  -> the file path string is passed in
    {"kind": "array", "key": <key in inputs.npz>}    -> the NumPy array is passed in
and "single": true when the one image was passed bare rather than in a list.
The processor is always built as
    AutoImageProcessor.from_pretrained(case/model, **from_pretrained_kwargs)
and called as processor(images, return_tensors="np", **kwargs); "raises" records the exception
when transformers refuses the input (minblip must refuse it too).
"""

import json
import pathlib
import shutil
import tempfile

import numpy as np
import PIL
import skimage
import skimage.data
import torch
import transformers
from PIL import Image
from transformers import AutoImageProcessor, BlipImageProcessor

SMALL = {"height": 40, "width": 56}  # non-square, downscaling for every variant
PHOTOS = {
    # name: (skimage loader, committed (height, width), licence note from scikit-image's docs)
    "astronaut": (
        skimage.data.astronaut,
        (192, 192),
        "Eileen Collins, NASA Great Images database; 'No known copyright restrictions, "
        "released into the public domain.'",
    ),
    "coffee": (
        skimage.data.coffee,
        (128, 192),
        "Coffee cup, courtesy of Pikolo Espresso Bar; 'No copyright restrictions. CC0 by "
        "the photographer (Rachel Michetti).'",
    ),
    "camera": (
        skimage.data.camera,
        (160, 160),
        "Gray-level camera image (replaced in scikit-image 0.18 for copyright reasons); "
        "'No copyright restrictions. CC0 by the photographer (Lav Varshney).'",
    ),
}


def build(root):
    root = pathlib.Path(root)
    _check_backend()
    images, inputs_dir, out = root / "images", root / "preprocess" / "inputs", root / "preprocess"
    for d in (images, out):
        if d.exists():
            shutil.rmtree(d)
    images.mkdir(parents=True)
    inputs_dir.mkdir(parents=True)
    photos = _write_photos(images)
    variants = {name: _write_variants(inputs_dir, name, arr) for name, arr in photos.items()}
    (inputs_dir / "VARIANTS.md").write_text(_VARIANTS_MD)
    cases = _cases(root, photos, variants)
    for name, case in cases.items():
        _write_case(root, out / name, **case)
    print(f"   {len(cases)} cases, {_size(images) + _size(out)} bytes")


def _check_backend():
    # The reference is the PIL backend: without torchvision, 5.23 resolves both names to it.
    assert not transformers.utils.is_torchvision_available(), "run without torchvision"
    assert transformers.__version__ == "5.23.0", transformers.__version__
    assert BlipImageProcessor.__name__ == "BlipImageProcessorPil", BlipImageProcessor


def _write_photos(images):
    """The committed photos: downscaled with Pillow LANCZOS, lossless PNG, no metadata."""
    photos, lines = {}, []
    for name, (loader, (h, w), licence) in PHOTOS.items():
        full = loader()
        small = np.array(Image.fromarray(full).resize((w, h), Image.Resampling.LANCZOS))
        Image.fromarray(small).save(images / f"{name}.png", optimize=True)
        photos[name] = small
        lines.append(
            f"| `{name}.png` | `skimage.data.{name}()` {full.shape} | {licence} | "
            f"resized to {h}x{w} (HxW) with Pillow LANCZOS |"
        )
    # The RGBA photo: astronaut with a radial alpha ramp and a fully transparent band; the colour
    # under transparent pixels stays the photo's, so dropping alpha != compositing on white.
    rgba = np.dstack([photos["astronaut"], _alpha(photos["astronaut"].shape[:2])])
    Image.fromarray(rgba, "RGBA").save(images / "astronaut_rgba.png", optimize=True)
    lines.append(
        "| `astronaut_rgba.png` | `astronaut.png` above | as astronaut | alpha added: "
        "radial ramp 255 (centre) -> 0 (corners), rows 8-23 fully transparent |"
    )
    (images / "SOURCES.md").write_text(
        _SOURCES.format(skimage=skimage.__version__, pillow=PIL.__version__, rows="\n".join(lines))
    )
    return photos


_SOURCES = """# Test photos

Written by `tools/golden_cases/preprocess.py` (`python tools/make_golden.py preprocess`); do not
edit by hand. Sources: scikit-image {skimage} `skimage.data`; the licence text quoted is from each
loader's docstring in scikit-image. Resized with Pillow {pillow}.

| file | source | licence | derivation |
|---|---|---|---|
{rows}

Mode variants of these photos (RGBA, LA, L, P, P with transparency, CMYK, I;16, I, F, 1, ...)
used by the preprocessing fixtures live in `golden/preprocess/inputs/`, derived from these files
at half size (Pillow `Image.reduce(2)`); see `golden/preprocess/inputs/VARIANTS.md`.
"""


def _alpha(shape):
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2)) / np.sqrt(2)
    a = np.clip(255 * (1.2 - 1.4 * r), 0, 255).astype(np.uint8)
    a[h // 24 : h // 8] = 0
    return a


def _write_variants(inputs_dir, name, rgb_or_l):
    """One file per PIL mode; returns {variant: (file, convert-on-open or None)}."""
    base = Image.fromarray(rgb_or_l).reduce(2)
    rgb, gray = base.convert("RGB"), base.convert("L")
    alpha = Image.fromarray(_alpha((base.height, base.width)))
    g = np.array(gray)
    pal = rgb.quantize(64)
    common = int(np.bincount(np.array(pal).ravel()).argmax())
    files = {}

    def save(variant, image, ext="png", **kw):
        f = inputs_dir / f"{name}_{variant}.{ext}"
        image.save(f, **kw)
        files[variant] = (f, None)

    save("rgb", rgb)
    save("rgba", Image.merge("RGBA", (*rgb.split(), alpha)))
    save("la", Image.merge("LA", (gray, alpha)))
    save("l", gray)
    save("p", pal)
    save("p_trns", pal, transparency=common)
    # PNG8 with a per-entry palette alpha: info["transparency"] is bytes, not one index.
    save("p_alpha", pal, transparency=bytes(range(0, 256, 4)))
    save("gif", pal, "gif", transparency=common)
    pal_rgb = pal.convert("RGB")
    save("rgb_trns", pal_rgb, transparency=pal_rgb.getpixel((0, 0)))
    save("l_trns", gray, transparency=int(np.bincount(g.ravel()).argmax()))
    save("cmyk", rgb.convert("CMYK"), "jpg", quality=92)
    save("i16", Image.fromarray(g.astype(np.uint16) * 257))
    save(
        "i", Image.fromarray(g.astype(np.int32) * 3 - 200), "tif", compression="tiff_adobe_deflate"
    )
    save(
        "f",
        Image.fromarray(g.astype(np.float32) * 0.9 + 13.37),
        "tif",
        compression="tiff_adobe_deflate",
    )
    save("1", gray.convert("1"))
    # In-memory-only modes: the fixture opens a file above and converts on load.
    files["pa"] = (files["p_trns"][0], "PA")
    files["rgba_premultiplied"] = (files["rgba"][0], "RGBa")
    files["la_premultiplied"] = (files["la"][0], "La")
    files["hsv"] = (files["rgb"][0], "HSV")
    files["ycbcr"] = (files["rgb"][0], "YCbCr")
    return files


_VARIANTS_MD = """# Mode variants

Written by `tools/golden_cases/preprocess.py`; do not edit. Each `<photo>_<variant>` file is the
photo from `golden/images/` reduced 2x (Pillow `Image.reduce(2)`), then:

| variant | mode on open | how |
|---|---|---|
| rgb | RGB | `convert("RGB")` (camera: gray replicated) |
| rgba | RGBA | RGB + radial alpha ramp with a fully transparent band |
| la | LA | `convert("L")` + the same alpha |
| l | L | `convert("L")` |
| p | P | `quantize(64)` |
| p_trns | P | the same, PNG tRNS on the most frequent palette index |
| p_alpha | P | the same, PNG tRNS giving palette entry i the alpha 4*i |
| gif | P | the same as GIF, transparent index = the most frequent one |
| rgb_trns | RGB | the P image as RGB, PNG tRNS on the colour of pixel (0, 0) |
| l_trns | L | gray, PNG tRNS on the most frequent gray level |
| cmyk | CMYK | `convert("CMYK")`, JPEG quality 92 |
| i16 | I;16 | gray * 257 as uint16 PNG |
| i | I | gray * 3 - 200 as int32 TIFF (values outside 0..255) |
| f | F | gray * 0.9 + 13.37 as float32 TIFF |
| 1 | 1 | `convert("1")` (dithered) |
| exif (coffee only) | RGB | JPEG with EXIF Orientation = 6 |

In-memory modes are made on open: PA (`p_trns` -> `convert("PA")`), RGBa (`rgba`), La (`la`),
HSV and YCbCr (`rgb`).
"""


def _cases(root, photos, variants):
    rel = lambda f: f.relative_to(root).as_posix()  # noqa: E731
    pil = lambda f, convert=None: {"kind": "pil", "file": rel(f), "convert": convert}  # noqa: E731
    path = lambda f: {"kind": "path", "file": rel(f)}  # noqa: E731
    img = root / "images"
    small_cfg = {"size": SMALL}
    cases = {}

    def case(
        name,
        inputs,
        config=None,
        kwargs=None,
        fp_kwargs=None,
        raw_config=None,
        single=False,
        arrays=None,
        notes="",
    ):
        cases[name] = dict(
            inputs=inputs,
            config=config or {},
            kwargs=kwargs or {},
            fp_kwargs=fp_kwargs or {},
            raw_config=raw_config,
            single=single,
            arrays=arrays or {},
            notes=notes,
        )

    # Committed photos at the class defaults (384) and at BLIP-2's 224 (old-style int size).
    case(
        "default_astronaut",
        [pil(img / "astronaut.png")],
        single=True,
        notes="class defaults: 384x384 bicubic, CLIP mean/std",
    )
    case(
        "size_int_224_coffee",
        [pil(img / "coffee.png")],
        raw_config={"image_processor_type": "BlipImageProcessor", "size": 224},
        notes="old-style int size in preprocessor_config.json (BLIP-2's 224)",
    )
    case(
        "size_int_not_square_coffee",
        [pil(img / "coffee.png")],
        raw_config={
            "image_processor_type": "BlipImageProcessor",
            "size": 24,
            "default_to_square": False,
        },
        notes="an int size with default_to_square false means {shortest_edge: 24}",
    )
    case(
        "size_list_camera",
        [pil(img / "camera.png")],
        raw_config={"image_processor_type": "BlipImageProcessor", "size": [48, 32]},
        notes="size as [height, width] list",
    )
    case("rgba_photo", [pil(img / "astronaut_rgba.png")], small_cfg)
    for name in PHOTOS:
        case(f"photo_{name}", [pil(img / f"{name}.png")], small_cfg)
        case(f"path_{name}", [path(img / f"{name}.png")], small_cfg)
    case(
        "path_rgba_photo",
        [path(img / "astronaut_rgba.png")],
        small_cfg,
        notes="file path: load_image does convert('RGB'), alpha dropped, not composited",
    )

    # Every PIL mode of every photo, as a PIL image; a few also as file paths.
    for name, files in variants.items():
        for variant, (f, convert) in files.items():
            case(f"mode_{name}_{variant}", [pil(f, convert)], small_cfg)
        for variant in ("rgba", "p_trns", "p_alpha", "gif", "rgb_trns", "l_trns", "i16", "cmyk"):
            case(f"path_{name}_{variant}", [path(files[variant][0])], small_cfg)
    exif = _write_exif_jpeg(root / "preprocess" / "inputs", photos["coffee"])
    case("exif_pil", [pil(exif)], small_cfg, notes="PIL input: no EXIF rotation")
    case("exif_path", [path(exif)], small_cfg, notes="file path: EXIF rotation applied")

    # NumPy inputs.
    rgb = np.array(Image.open(variants["coffee"]["rgb"][0]))  # (64, 96, 3)
    rgba = np.array(Image.open(variants["coffee"]["rgba"][0]))
    gray = np.array(Image.open(variants["coffee"]["l"][0]))[..., None]
    rng = np.random.default_rng(0)
    arrays = {
        "np_hwc_uint8": rgb,
        "np_chw_uint8": rgb.transpose(2, 0, 1),
        "np_hwc_float32_unit": rgb.astype(np.float32) / 255,
        "np_chw_float64_unit": rgb.transpose(2, 0, 1).astype(np.float64) / 255,
        "np_hwc_float32_255": rgb.astype(np.float32),
        "np_hwc_int64": rgb.astype(np.int64),
        "np_hwc_gray1": gray,
        "np_chw_gray1": gray.transpose(2, 0, 1),
        "np_hwc_rgba_uint8": rgba,
        "np_chw_rgba_float32": rgba.transpose(2, 0, 1).astype(np.float32) / 255,
        "np_hwc_rgba_float64": rgba.astype(np.float64) / 255,
        "np_ambiguous_4x10x3": rng.integers(0, 256, (4, 10, 3), dtype=np.uint8),
        "np_ambiguous_3x7x1": rng.integers(0, 256, (3, 7, 1), dtype=np.uint8),
        "np_batch4d_uint8": np.stack([rgb, rgb[::-1, ::-1]]),
    }
    for key, a in arrays.items():
        case(key, [{"kind": "array", "key": key}], small_cfg, single=True, arrays={key: a})

    # A mixed batch, and settings off the defaults.
    case(
        "batch_mixed",
        [
            pil(img / "astronaut.png"),
            path(img / "coffee.png"),
            pil(img / "camera.png"),
            {"kind": "array", "key": "a"},
            pil(variants["astronaut"]["rgba"][0]),
        ],
        small_cfg,
        arrays={"a": arrays["np_hwc_float32_unit"]},
    )
    case("no_normalize", [pil(img / "coffee.png")], {**small_cfg, "do_normalize": False})
    case("no_rescale", [pil(img / "coffee.png")], {**small_cfg, "do_rescale": False})
    case(
        "no_rescale_no_normalize",
        [pil(img / "coffee.png")],
        {**small_cfg, "do_rescale": False, "do_normalize": False},
        notes="uint8 pixel_values",
    )
    # Every uint8 level, unresized: pins the float64 -> float32 rescale bit for bit.
    levels = np.repeat(np.arange(256, dtype=np.uint8).reshape(16, 16, 1), 3, axis=2)
    case(
        "all_levels_rescale_only",
        [{"kind": "array", "key": "a"}],
        {"do_resize": False, "do_normalize": False},
        single=True,
        arrays={"a": levels},
    )
    case(
        "all_levels",
        [{"kind": "array", "key": "a"}],
        {"do_resize": False},
        single=True,
        arrays={"a": levels},
    )
    case("no_resize", [pil(variants["camera"]["rgb"][0])], {"do_resize": False})
    case(
        "no_resize_float",
        [{"kind": "array", "key": "a"}],
        {"do_resize": False},
        single=True,
        arrays={"a": arrays["np_chw_float64_unit"]},
    )
    case(
        "no_convert_rgb",
        [pil(variants["coffee"]["rgb"][0])],
        {**small_cfg, "do_convert_rgb": False},
    )
    case(
        "no_convert_rgba_no_normalize",
        [pil(variants["coffee"]["rgba"][0])],
        {**small_cfg, "do_convert_rgb": False, "do_normalize": False},
        notes="4 channels out",
    )
    case(
        "no_convert_l",
        [pil(variants["coffee"]["l"][0])],
        {**small_cfg, "do_convert_rgb": False},
        notes="1 channel vs 3 means: transformers refuses",
    )
    case(
        "no_convert_l_no_normalize",
        [pil(variants["coffee"]["l"][0])],
        {**small_cfg, "do_convert_rgb": False, "do_normalize": False},
        notes="1 channel out",
    )
    case(
        "no_convert_i16_no_normalize",
        [pil(variants["coffee"]["i16"][0])],
        {**small_cfg, "do_convert_rgb": False, "do_normalize": False},
        notes="uint16 values above 255 cannot go to Pillow as uint8: transformers refuses",
    )
    case(
        "call_overrides",
        [pil(img / "coffee.png")],
        small_cfg,
        kwargs={
            "size": {"height": 24, "width": 40},
            "resample": 2,
            "image_mean": 0.5,
            "image_std": [0.5, 0.5, 0.5],
            "rescale_factor": 0.00784313725490196,
        },
    )
    case(
        "from_pretrained_overrides",
        [pil(img / "astronaut.png")],
        small_cfg,
        fp_kwargs={"size": {"height": 30, "width": 30}, "do_normalize": False},
    )
    case(
        "upscale_nonsquare",
        [pil(variants["coffee"]["rgba"][0])],
        {"size": {"height": 100, "width": 72}},
    )
    # the PIL backend's aspect-keeping size forms (the coffee photo is 64 x 96, landscape)
    coffee = [pil(variants["coffee"]["rgb"][0])]
    case("size_shortest_edge", coffee, {"size": {"shortest_edge": 40}})
    case("size_shortest_longest_edge", coffee, {"size": {"shortest_edge": 40, "longest_edge": 50}})
    # 55 * 64 / 96 = 36.67: the short edge is rounded (37), not truncated
    case(
        "size_shortest_longest_edge_rounds",
        coffee,
        {"size": {"shortest_edge": 40, "longest_edge": 55}},
    )
    case("size_max_height_width", coffee, {"size": {"max_height": 30, "max_width": 70}})
    case(
        "size_shortest_edge_exif_portrait",
        [path(exif)],
        {"size": {"shortest_edge": 36}},
    )
    case(
        "data_format_channels_last_ignored",
        coffee,
        {"size": {"height": 20, "width": 20}, "data_format": "channels_last"},
    )
    return cases


def _write_exif_jpeg(inputs_dir, coffee):
    f = inputs_dir / "coffee_exif.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    Image.fromarray(coffee).reduce(2).save(f, quality=92, exif=exif)
    return f


def _write_case(
    root, case_dir, inputs, config, kwargs, fp_kwargs, raw_config, single, arrays, notes
):
    model = case_dir / "model"
    model.mkdir(parents=True)
    if raw_config is not None:
        (model / "preprocessor_config.json").write_text(json.dumps(raw_config, indent=2) + "\n")
    else:
        BlipImageProcessor(**config).save_pretrained(model)
    processor = AutoImageProcessor.from_pretrained(model, **fp_kwargs)
    assert processor.backend == "pil", processor.backend
    images = [_load_input(root, spec, arrays) for spec in inputs]
    try:
        pixel_values = processor(images[0] if single else images, return_tensors="np", **kwargs)[
            "pixel_values"
        ]
        raises = None
        np.savez_compressed(case_dir / "outputs.npz", **{"out.pixel_values": pixel_values})
    except Exception as e:  # transformers refuses this input: minblip must refuse it too
        pixel_values, raises = None, f"{type(e).__name__}: {e}"
    if arrays:
        np.savez_compressed(case_dir / "inputs.npz", **arrays)
    settings = {k: v for k, v in processor.to_dict().items() if not k.startswith("_")}
    meta = {
        "class": type(processor).__name__,
        "auto_class": "AutoImageProcessor",
        "backend": processor.backend,
        "inputs": inputs,
        "single": single,
        "kwargs": kwargs,
        "from_pretrained_kwargs": fp_kwargs,
        "processor_settings": json.loads(json.dumps(settings, default=_jsonable)),
        "raises": raises,
        "output": None
        if raises
        else {"shape": list(pixel_values.shape), "dtype": str(pixel_values.dtype)},
        "dtype": None if raises else str(pixel_values.dtype),
        "order": [],
        "seed": 0,
        "versions": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "pillow": PIL.__version__,
        },
        "notes": "BlipImageProcessor resolves to BlipImageProcessorPil (no torchvision). " + notes,
    }
    (case_dir / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


def _load_input(root, spec, arrays):
    if spec["kind"] == "array":
        return arrays[spec["key"]]
    f = root / spec["file"]
    if spec["kind"] == "path":
        return str(f)
    image = Image.open(f)
    image.load()
    return image.convert(spec["convert"]) if spec["convert"] else image


def _jsonable(v):
    if isinstance(v, (tuple, set)):
        return list(v)
    if hasattr(v, "item"):
        return v.item()
    return str(v)


def _size(d):
    return sum(f.stat().st_size for f in pathlib.Path(d).rglob("*") if f.is_file())


if __name__ == "__main__":
    build(pathlib.Path(tempfile.mkdtemp()))
