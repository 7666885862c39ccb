"""BlipImageProcessor: images -> pixel_values, as transformers 5.23.0's PIL backend does it.

One processor serves BLIP and BLIP-2 (only `size` differs: 384 for BLIP, 224 or 364 for BLIP-2).
Per image, in this order (transformers' `BlipImageProcessorPil`, which is what 5.23 uses when
torchvision is not installed, and the numerics 4.x always had):

    convert to RGB -> channels first (3, H, W) uint8 -> PIL BICUBIC resize to exactly H x W
    -> x * (1/255) computed in float64, stored as float32 -> (x - CLIP mean) / CLIP std in float32

Shapes:  one image (H0, W0[, C]) or (C, H0, W0) -> pixel_values (B, 3, H, W) float32.

Why each step is done the way it is:
* Bicubic through Pillow itself, not a NumPy re-implementation: Pillow's BICUBIC is a separable
  a = -0.5 cubic whose support widens with the downscale factor (antialiasing), with the
  intermediate pass stored as uint8; calling Pillow is the simplest way to be bit-exact. Ports
  that resized bilinearly (clip.cpp) or cropped first (candle) did not match the reference.
* No crop, no kept aspect ratio: the original BLIP pipeline is `Resize((S, S), BICUBIC)`. (A
  `size` of {"shortest_edge"}, {"shortest_edge", "longest_edge"} or {"max_height", "max_width"}
  keeps the aspect ratio, as transformers' PIL backend does; no BLIP checkpoint asks for it.)
* Rescale in float64 then float32: transformers upcasts before multiplying so that the result
  does not depend on NumPy's type-promotion rules; multiplying in float32 instead differs in the
  last bit for 126 of the 256 uint8 levels.
* OPENAI CLIP mean/std, not ImageNet's: the original BLIP training transforms normalise with
  CLIP's constants, so the weights expect them; they are copied here to the digit.
* Alpha is composited on white (PIL inputs and 4-channel arrays): transformers 5.x does this;
  4.x simply dropped alpha, keeping whatever colour hid under transparent pixels.
"""

import contextlib
import io
import json
import os
import pathlib
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from minblip import guards
from minblip.errors import ConfigError, ImageError, InputError
from minblip.hub import resolve
from minblip.outputs import BatchFeature

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Class defaults of transformers' BlipImageProcessorPil; preprocessor_config.json overrides them.
DEFAULTS = {
    "do_convert_rgb": True,
    "do_resize": True,
    "size": {"height": 384, "width": 384},
    "default_to_square": True,
    "resample": 3,  # PIL.Image.Resampling.BICUBIC
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": OPENAI_CLIP_MEAN,
    "image_std": OPENAI_CLIP_STD,
    "do_center_crop": None,
    "crop_size": None,
    "do_pad": None,
    "pad_size": None,
    "input_data_format": None,
    "data_format": None,
}
RESAMPLE_FILTERS = range(6)


# The most pixels an image file may declare, checked from its header before it is decoded, and
# the most an image may be resized to. Pillow's own default (89,478,485, a 9459 x 9459 image);
# raise it here, or with the MINBLIP_MAX_IMAGE_PIXELS environment variable, for larger images.
def _pixel_limit(default=89_478_485):
    value = os.environ.get("MINBLIP_MAX_IMAGE_PIXELS", "")
    if not value:
        return default
    if not value.isdigit() or int(value) <= 0:
        raise ConfigError(f"MINBLIP_MAX_IMAGE_PIXELS={value!r}: expected a positive integer")
    return int(value)


MAX_IMAGE_PIXELS = (
    _pixel_limit()
)  # Pillow: NEAREST 0, LANCZOS 1, BILINEAR 2, BICUBIC 3, BOX 4, HAMMING 5


class BlipImageProcessor:
    """Port of transformers' BlipImageProcessor (PIL backend, 5.23.0).

    Settings are attributes named as in preprocessor_config.json (do_resize, size, resample, ...);
    `size` is kept as {"height": H, "width": W}. `unused_config_keys` lists what a config file
    held besides settings (image_processor_type, processor_class, ...); like transformers, those
    are ignored.
    """

    unused_config_keys = ()

    def __init__(self, **settings):
        self._apply(DEFAULTS, settings, ConfigError, "BlipImageProcessor")

    @classmethod
    def from_pretrained(cls, path_or_id, **overrides):
        """Read `preprocessor_config.json` from a local folder or a hub id; keyword overrides win.

        Settings the file does not mention keep the class defaults; a folder without the file
        gives the class defaults (transformers would refuse it).
        """
        file = resolve(path_or_id) / "preprocessor_config.json"
        config = {}
        if file.is_file():
            try:
                config = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ConfigError(f"{file}: not readable as JSON ({e})") from None
            if not isinstance(config, dict):
                raise ConfigError(f"{file}: expected a JSON object, got {type(config).__name__}")
        return cls.from_dict(config, str(file), **overrides)

    @classmethod
    def from_dict(cls, config, source="image processor config", **overrides):
        """A processor from a preprocessor_config-style dict (5.x processors also save it as
        the "image_processor" entry of processor_config.json); `source` names it in errors."""
        processor = cls()
        processor._apply(
            DEFAULTS, {k: v for k, v in config.items() if k in DEFAULTS}, ConfigError, source
        )
        processor.unused_config_keys = tuple(sorted(set(config) - set(DEFAULTS)))
        processor._apply(processor._settings(), overrides, ConfigError, "from_pretrained keyword")
        return processor

    def __call__(self, images, return_tensors="np", **overrides):
        """Images -> BatchFeature(pixel_values=(B, 3, H, W)) float32.

        Shapes:  each image (H0, W0, C) | (C, H0, W0) | PIL (W0 x H0), batches (B, ...) or lists
                 -> pixel_values (B, 3, H, W), H and W from `size`.

        images: a PIL image, a NumPy array (H, W, C) or (C, H, W) with C in 1/3/4, a batch
        array (B, ...), a file path (str or pathlib.Path), or a (nested) list of these.
        overrides: any setting (do_resize=False, size={"height": 224, "width": 224}, ...),
        for this call only.
        """
        if return_tensors not in ("np", None):
            raise InputError(
                f"return_tensors={return_tensors!r}: minblip returns NumPy ('np') only"
            )
        call = BlipImageProcessor.__new__(BlipImageProcessor)  # this call's settings
        call._apply(self._settings(), overrides, InputError, "preprocess keyword")
        flat = _flat_list(images)
        if not flat:
            raise InputError(f"no images in {images!r}")
        arrays = [call._process(image) for image in flat]
        if len({a.shape for a in arrays}) > 1:
            shapes = sorted({a.shape for a in arrays})
            raise InputError(f"images end with different shapes {shapes}; use do_resize=True")
        return BatchFeature(pixel_values=np.stack(arrays))  # b c h w

    preprocess = __call__

    def _settings(self):
        return {k: getattr(self, k) for k in DEFAULTS}

    def _apply(self, base, settings, error, where):
        """Merge settings over base and validate; a None value means "not set"."""
        unknown = sorted(set(settings) - set(DEFAULTS))
        if unknown:
            raise error(f"{where}: unknown setting(s) {unknown}; known: {sorted(DEFAULTS)}")
        merged = dict(base)
        merged.update({k: v for k, v in settings.items() if v is not None})
        merged["size"] = _size_dict(merged["size"], merged["default_to_square"], error, where)
        for flag in ("do_center_crop", "do_pad"):
            if merged[flag]:
                raise error(f"{where}: {flag}=True is not part of BLIP preprocessing")
        if merged["data_format"] not in (None, "channels_first", "channels_last"):
            raise error(f"{where}: data_format={merged['data_format']!r}")
        if merged["data_format"] == "channels_last":  # transformers' PIL backend ignores it too
            warnings.warn(
                "data_format='channels_last' is ignored, as transformers 5.23's PIL image "
                "processor ignores it: pixel_values stay (B, 3, H, W)",
                stacklevel=4,
            )
        if merged["input_data_format"] not in (None, "channels_first", "channels_last"):
            raise error(f"{where}: input_data_format={merged['input_data_format']!r}")
        if merged["resample"] not in RESAMPLE_FILTERS:
            raise error(f"{where}: resample={merged['resample']!r}; expected a Pillow filter 0-5")
        merged["resample"] = int(merged["resample"])
        guards.check_mean_std(merged["image_mean"], merged["image_std"], where, error)
        guards.check_factor("rescale_factor", merged["rescale_factor"], where, error)
        for k, v in merged.items():
            setattr(self, k, v)

    def _process(self, image):
        """One image -> (3, H, W): transformers' PIL-backend steps, in the same order."""
        x = _to_channels_first(image, self.do_convert_rgb, self.input_data_format)
        if x.shape[1] == 0 or x.shape[2] == 0:  # an empty array would resize to a black image
            what = f"array of shape {image.shape}" if isinstance(image, np.ndarray) else "image"
            raise ImageError(f"{what}: {x.shape[2]} x {x.shape[1]} pixels, a side of 0")
        if self.do_resize:
            h, w = _target_size(x.shape[1], x.shape[2], self.size)
            check_pixels(w, h, f"resizing to size={self.size}")  # before Pillow allocates it
            x = _resize(x, h, w, self.resample)
        if self.do_rescale:
            # float64 first, then float32: transformers' rescale, independent of NumPy promotion.
            x = (x.astype(np.float64) * self.rescale_factor).astype(np.float32)
        if self.do_normalize:
            x = _normalize(x, self.image_mean, self.image_std)
        return x


SIZE_FORMS = (
    {"height", "width"},  # BLIP's own: exactly H x W
    {"shortest_edge"},  # the forms below keep the aspect ratio (transformers' PIL backend)
    {"shortest_edge", "longest_edge"},
    {"max_height", "max_width"},
)


def _size_dict(size, default_to_square, error, where):
    """Old configs say `size: 384`; new ones {"height": 384, "width": 384}; lists are (h, w).
    An int with default_to_square=False means {"shortest_edge": size}, as in transformers."""
    if isinstance(size, dict):
        if set(size) not in SIZE_FORMS:
            forms = ", ".join(str(sorted(f)) for f in SIZE_FORMS)
            raise error(f"{where}: size={size}; expected the keys of one of {forms}")
        out = dict(size)
    elif isinstance(size, int) and not isinstance(size, bool):
        out = {"height": size, "width": size} if default_to_square else {"shortest_edge": size}
    elif isinstance(size, (list, tuple)) and len(size) == 2:
        out = {"height": size[0], "width": size[1]}
    else:
        raise error(f"{where}: size={size!r}; expected an int, [height, width] or a dict")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in out.values()):
        raise error(f"{where}: size={size!r}; sizes must be positive integers")
    return out


def _target_size(h, w, size):
    """(height, width) an (h, w) image is resized to. Mirrors PilBackend.resize's choice."""
    if "height" in size:
        return size["height"], size["width"]
    if "max_height" in size:  # the largest (h, w) * scale that fits, truncated
        scale = min(size["max_height"] / h, size["max_width"] / w)
        return int(h * scale), int(w * scale)
    short, long = (w, h) if w <= h else (h, w)
    if "longest_edge" in size:  # get_size_with_aspect_ratio(max_size=longest_edge)
        s, raw = size["shortest_edge"], None
        if long / short * s > size["longest_edge"]:
            raw = size["longest_edge"] * short / long
            s = int(round(raw))
        if (h <= w and h == s) or (w <= h and w == s):
            return h, w
        if w < h:
            return (int(raw * h / w) if raw is not None else int(s * h / w)), s
        return s, (int(raw * w / h) if raw is not None else int(s * w / h))
    s = size["shortest_edge"]  # get_resize_output_image_size(default_to_square=False)
    new_long = int(s * long / short)
    return (new_long, s) if w <= h else (s, new_long)


def _flat_list(images):
    """Single image, list, nested list, or a (B, ...) array -> flat list; paths are opened."""
    if isinstance(images, (list, tuple)):
        return [image for item in images for image in _flat_list(item)]
    if isinstance(images, (str, pathlib.Path)):
        return [load_image(images)]
    if isinstance(images, Image.Image):
        return [images]
    if isinstance(images, np.ndarray):
        if images.dtype.kind not in "biuf":
            raise InputError(f"image array has dtype {images.dtype}; expected integers or floats")
        if images.ndim == 3:
            return [images]
        if images.ndim == 4:
            return list(images)  # b ... -> b x (...)
        raise InputError(
            f"image array has shape {images.shape} ({images.ndim} dims); expected "
            "(H, W, C) or (C, H, W) with C in 1/3/4, or a batch of those (4 dims)"
        )
    raise InputError(
        f"unsupported image type {type(images).__module__}.{type(images).__name__}; "
        "pass a PIL image, a NumPy array, a file path, or a list of them"
    )


def load_image(path):
    """Open an image file the way transformers' load_image does: EXIF rotation, then RGB.

    Note: this is a plain `convert("RGB")`, so an RGBA file loses its alpha here (no white
    compositing) -- unlike an RGBA PIL image handed in directly. transformers does the same.
    """
    if str(path).startswith(("http://", "https://", "data:")):
        raise InputError(
            f"{str(path)[:60]!r}: URLs and base64 data are not supported (no network "
            "access here); pass a local file path or a PIL image"
        )
    path = pathlib.Path(path)
    if not path.exists():
        raise ImageError(f"image file not found: {path}")
    if not path.is_file():
        raise ImageError(f"not a file: {path}")
    if path.stat().st_size == 0:
        raise ImageError(f"image file is empty (0 bytes): {path}")
    return _decode(path, path)


def decode_image(data, name="image bytes"):
    """load_image for a file's bytes (Ray Data's read_binary_files rows): the same checks and
    the same RGB result as load_image on the file; name is what an error calls it."""
    if len(data) == 0:
        raise ImageError(f"image file is empty (0 bytes): {name}")
    return _decode(io.BytesIO(bytes(data)), name)


def _decode(source, path):
    """Open, check the size, decode, EXIF-rotate and convert source (a path or a binary file)
    to RGB; every failure an ImageError naming path."""
    try:
        with warnings.catch_warnings():
            # Pillow warns past its own limit and raises past twice it: both become ImageError
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)  # reads the header only: the size is known, nothing decoded
            if image.size[0] * image.size[1] > MAX_IMAGE_PIXELS:
                raise _bomb(path, image.size, None)
            check_pixels(image.size[0], image.size[1], path)
            image.load()  # decode now, so a truncated file fails here and names the path
            return ImageOps.exif_transpose(image).convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _bomb(path, _declared_size(source), e) from None
    except UnidentifiedImageError:
        raise ImageError(f"not a readable image (corrupt or unknown format): {path}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"cannot decode image (truncated or corrupt): {path}: {e}") from None


def _bomb(path, size, pillow_error):
    """The ImageError of an image file whose header declares more pixels than the limits: the
    same words whether minblip's limit or Pillow's caught it (a JSONL error record names it)."""
    declared = "" if size is None else f" {size[0]}×{size[1]} = {size[0] * size[1]:,} pixels,"
    why = "" if pillow_error is None else f" (Pillow: {pillow_error})"
    return ImageError(
        f"{path}: refused as a possible decompression bomb:{declared} over the limit of "
        f"{MAX_IMAGE_PIXELS:,} (minblip.preprocess.MAX_IMAGE_PIXELS, or the environment variable "
        f"MINBLIP_MAX_IMAGE_PIXELS; Pillow's PIL.Image.MAX_IMAGE_PIXELS="
        f"{Image.MAX_IMAGE_PIXELS:,}){why}"
    )


def _declared_size(source):
    """The (width, height) an image file's header declares (source: a path or a binary file),
    read without Pillow's bomb check (which refuses the file before saying its size), or None.
    Only the header is parsed: each registered format's factory, as Image.open tries them."""
    try:
        with contextlib.ExitStack() as stack:
            if hasattr(source, "read"):
                f = source
            else:
                f = stack.enter_context(open(source, "rb"))
            f.seek(0)
            prefix = f.read(16)
            Image.preinit()
            for fmt in Image.ID:
                factory, accept = Image.OPEN[fmt]
                if accept is not None and not accept(prefix):
                    continue
                f.seek(0)
                try:
                    return factory(f, str(getattr(f, "name", ""))).size
                except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError):
                    continue
    except OSError:
        pass
    return None


def check_pixels(width, height, what):
    """Refuse an image of more than MAX_IMAGE_PIXELS pixels, or with a side of 0, by name."""
    if width <= 0 or height <= 0:
        raise ImageError(f"{what}: image is {width} x {height} pixels; a side of 0 is not an image")
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(
            f"{what}: image is {width} x {height} = {width * height:,} pixels, over the limit "
            f"of {MAX_IMAGE_PIXELS:,} (minblip.preprocess.MAX_IMAGE_PIXELS, or the environment "
            "variable MINBLIP_MAX_IMAGE_PIXELS)"
        )


def _to_channels_first(image, do_convert_rgb, input_data_format):
    """PIL image or array -> (C, H, W) in its own dtype (uint8 for PIL after RGB conversion)."""
    if isinstance(image, Image.Image):
        x = _pil_to_rgb(image) if do_convert_rgb else np.array(image)
        return x[None] if x.ndim == 2 else np.moveaxis(x, -1, 0)  # h w c -> c h w
    if not isinstance(image, np.ndarray):
        raise InputError(f"unsupported image type {type(image).__name__} inside the list")
    if image.ndim != 3:
        raise InputError(f"image array has shape {image.shape}; expected (H, W, C) or (C, H, W)")
    first = _channels_first(image, input_data_format)
    if do_convert_rgb:
        image = _array_to_rgb(image, first)
    return image if first else np.moveaxis(image, -1, 0)  # h w c -> c h w


def _channels_first(image, input_data_format):
    """Where the channels are: transformers prefers the first axis when both could be."""
    if input_data_format is not None:
        c = image.shape[0] if input_data_format == "channels_first" else image.shape[-1]
        if c not in (1, 3, 4):
            raise InputError(
                f"image array of shape {image.shape} has {c} channels "
                f"({input_data_format}); expected 1, 3 or 4"
            )
        return input_data_format == "channels_first"
    if image.shape[0] in (1, 3, 4):
        return True
    if image.shape[-1] in (1, 3, 4):
        return False
    raise InputError(
        f"image array of shape {image.shape}: no axis of 1, 3 or 4 channels first or last"
    )


def _pil_to_rgb(image):
    """Any PIL mode -> (H, W, 3) uint8; transparency is composited over opaque white."""
    try:
        has_alpha = "A" in image.getbands() or image.info.get("transparency") is not None
        if has_alpha:
            white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
        else:
            image = image.convert("RGB")
    except (OSError, ValueError) as e:
        raise ImageError(f"cannot convert a PIL image of mode {image.mode} to RGB: {e}") from None
    return np.array(image)


def _array_to_rgb(image, first):
    """1 channel -> repeated x3; 4 channels -> alpha composited on white; 3 channels as they are."""
    x = np.moveaxis(image, 0, -1) if first else image  # c h w -> h w c
    channels = x.shape[-1]
    if channels == 1:
        x = np.repeat(x, 3, axis=-1)
    elif channels == 4:
        if np.issubdtype(x.dtype, np.floating) and (x.min() < 0.0 or x.max() > 1.0):
            raise InputError(
                f"4-channel float image has values in [{x.min()}, {x.max()}]; "
                "alpha compositing expects [0, 1]"
            )
        white = 255 if np.issubdtype(x.dtype, np.integer) else 1.0
        alpha = x[..., 3:4] / white
        rgb = alpha * x[..., :3] + (1 - alpha) * white
        # Integer images are rounded back (transformers does); float ones keep the blend.
        x = np.round(rgb).astype(x.dtype) if white == 255 else rgb.astype(x.dtype)
    return np.moveaxis(x, -1, 0) if first else x  # h w c -> c h w


def _resize(x, height, width, resample):
    """(C, H0, W0) -> (C, height, width) through Pillow, as transformers' `resize` does.

    Pillow holds only uint8 here: float images in [0, 1] are scaled by 255 and truncated to
    uint8 (lossy), then scaled back by 1/255 after resizing; integer-valued images go in as is.
    """
    hwc = np.moveaxis(x, 0, -1)  # c h w -> h w c
    if hwc.shape[-1] == 1:
        hwc = hwc[..., 0]  # h w 1 -> h w (Pillow mode L)
    scaled = _needs_255_scale(hwc)
    if scaled:
        hwc = (hwc.astype(np.float64) * 255).astype(np.float32)
    pil = Image.fromarray(hwc.astype(np.uint8))
    # reducing_gap=None: one exact resampling pass, no draft shortcut.
    out = np.array(pil.resize((width, height), resample=resample, reducing_gap=None))
    out = out[..., None] if out.ndim == 2 else out
    out = np.moveaxis(out, -1, 0)  # h w c -> c h w
    if scaled:
        out = (out.astype(np.float64) * (1 / 255)).astype(np.float32)
    return out


def _needs_255_scale(x):
    """transformers' rule: uint8 and integer-valued images go to Pillow as they are; other
    float images must lie in [0, 1] and are scaled by 255."""
    if x.dtype == np.uint8:
        return False
    if np.allclose(x, x.astype(int)):
        if np.all(x >= 0) and np.all(x <= 255):
            return False
        raise InputError(
            f"integer-valued image has values in [{x.min()}, {x.max()}]; expected [0, 255]"
        )
    if np.all(x >= 0) and np.all(x <= 1):
        return True
    raise InputError(f"float image has values in [{x.min()}, {x.max()}]; expected [0, 1]")


def _normalize(x, mean, std):
    """(x - mean) / std per channel, in x's float dtype (float32 after rescaling)."""
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    channels = x.shape[0]
    mean = [mean] * channels if np.ndim(mean) == 0 else list(mean)
    std = [std] * channels if np.ndim(std) == 0 else list(std)
    if len(mean) != channels or len(std) != channels:
        raise InputError(
            f"image has {channels} channels but image_mean/image_std have "
            f"{len(mean)}/{len(std)} values"
        )
    mean = np.array(mean, dtype=x.dtype)[:, None, None]  # c -> c 1 1
    std = np.array(std, dtype=x.dtype)[:, None, None]  # c -> c 1 1
    return (x - mean) / std
