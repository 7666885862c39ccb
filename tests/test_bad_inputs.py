# ruff: noqa: E501  (the catalogue is a table: one bad input per line, read across)
"""The catalogue of hostile inputs (issue 12): each row one bad input, the minblip error it must
raise and a substring of the message a user needs (the file, the key, the option, the value).

Rows read left to right: family, name, how the bad input is built and used, error, substring.
`ctx` gives each row a fresh folder (ctx.tmp), monkeypatch, and the shared tiny models. A CLI
row expects exit status 2 (or 1 for a skipped image) with the substring on stderr, no traceback.
"""

import json
import shutil
import struct
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import GOLDEN, TINY_VISION, tiny_vision_tensors, write_checkpoint
from golden_utils import load_case, model_dir
from PIL import Image

import minblip
from minblip import preprocess
from minblip.__main__ import main
from minblip.errors import (
    CheckpointError,
    ConfigError,
    ImageError,
    InputError,
    MinblipError,
    TokenizerError,
)
from minblip.preprocess import BlipImageProcessor, load_image
from minblip.processing import BlipProcessor
from minblip.tokenize import BertTokenizer

CAPTION = GOLDEN / "caption" / "greedy"
TOKENIZER = GOLDEN / "tokenizer" / "blip"
Vision = minblip.BlipVisionModel


# ----------------------------------------------------------------------------- builders


def F32(shape, begin, end):
    return {"dtype": "F32", "shape": shape, "data_offsets": [begin, end]}


def st(ctx, header, data=b"\0" * 8, config=TINY_VISION):
    """A checkpoint folder whose model.safetensors has this header (dict or raw JSON text)."""
    folder = ctx.tmp / "ckpt"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    h = (
        header
        if isinstance(header, bytes)
        else header
        if isinstance(header, str)
        else json.dumps(header)
    )
    h = h.encode() if isinstance(h, str) else h
    (folder / "model.safetensors").write_bytes(len(h).to_bytes(8, "little") + h + data)
    return folder


def raw(ctx, content):
    """A checkpoint folder whose model.safetensors holds exactly these bytes."""
    folder = st(ctx, {})
    (folder / "model.safetensors").write_bytes(content)
    return folder


def load(ctx, header, data=b"\0" * 8):
    return Vision.from_pretrained(st(ctx, header, data))


def sharded(ctx, weight_map, index=None):
    """A two-shard copy of the tiny vision checkpoint with this weight_map (or raw index)."""
    tensors = tiny_vision_tensors()
    keys = sorted(tensors)
    folder = ctx.tmp / "sharded"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(TINY_VISION))
    from safetensors.numpy import save_file

    save_file({k: tensors[k] for k in keys[::2]}, str(folder / "a.safetensors"))
    save_file({k: tensors[k] for k in keys[1::2]}, str(folder / "sub" / "b.safetensors"))
    good = {k: ("a.safetensors" if i % 2 == 0 else "sub/b.safetensors") for i, k in enumerate(keys)}
    wm = weight_map(good) if callable(weight_map) else weight_map
    text = index if index is not None else json.dumps({"weight_map": wm})
    (folder / "model.safetensors.index.json").write_text(text)
    return folder


def config(ctx, **changes):
    cfg = {**TINY_VISION, **changes}
    cfg = {k: v for k, v in cfg.items() if v is not DROP}
    return Vision.from_pretrained(write_checkpoint(ctx.tmp / "c", cfg, tiny_vision_tensors()))


DROP = object()


def config_text(ctx, text):
    folder = write_checkpoint(ctx.tmp / "c", TINY_VISION, tiny_vision_tensors())
    (folder / "config.json").write_text(text)
    return Vision.from_pretrained(folder)


def tokenizer(ctx, **files):
    """The golden BLIP tokenizer folder with some files replaced (None deletes one)."""
    folder = ctx.tmp / "tok"
    shutil.copytree(TOKENIZER, folder)
    for name, text in files.items():
        path = folder / name.replace("__", ".")
        path.unlink(missing_ok=True)
        if text is not None:
            path.write_text(text) if isinstance(text, str) else path.write_bytes(text)
    return BertTokenizer.from_pretrained(folder)


def png(width, height):
    """A PNG that declares width x height in its header, with one tiny IDAT chunk."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def image_file(ctx, content, name="x.png"):
    path = ctx.tmp / name
    path.write_bytes(content)
    return path


def small_png_bytes():
    path_like = __import__("io").BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(path_like, "PNG")
    return path_like.getvalue()


def gen(ctx, **kwargs):
    return ctx.caption.generate(pixel_values=ctx.pixels, **kwargs)


def cli(ctx, *argv):
    return ("cli", list(argv))


def caption_folder(ctx):
    """The golden greedy caption model plus the golden tokenizer: a folder `caption` accepts."""
    folder = ctx.tmp / "captioner"
    shutil.copytree(model_dir(CAPTION), folder)
    for f in TOKENIZER.iterdir():
        shutil.copy(f, folder)
    return folder


IMG = np.zeros((8, 8, 3), np.uint8)
ONE = [1.0]  # a 4-byte f32 tensor

# ----------------------------------------------------------------------------- the catalogue
# (family, name, action(ctx), error class, message substring)

CASES = [
    # --- safetensors header: every rule safetensors enforces, each refused before any read
    ("checkpoint", "two tensors on the same bytes", lambda c: load(c, {"a": F32([2], 0, 8), "b": F32([2], 0, 8)}), CheckpointError, "overlaps"),
    ("checkpoint", "tensor overlapping its neighbour", lambda c: load(c, {"a": F32([2], 0, 8), "b": F32([2], 4, 12)}, b"\0" * 12), CheckpointError, "'b'"),
    ("checkpoint", "duplicate key (last copy aliases)", lambda c: load(c, '{"a":%s,"b":%s,"a":%s}' % (json.dumps(F32([1], 0, 4)), json.dumps(F32([1], 4, 8)), json.dumps(F32([1], 4, 8)))), CheckpointError, "key 'a' twice"),
    ("checkpoint", "gap between tensors", lambda c: load(c, {"a": F32([1], 0, 4), "b": F32([1], 8, 12)}, b"\0" * 12), CheckpointError, "gap at byte 4"),
    ("checkpoint", "trailing bytes after last tensor", lambda c: load(c, {"a": F32([1], 0, 4)}), CheckpointError, "4 trailing bytes"),
    ("checkpoint", "negative shape entry", lambda c: load(c, {"a": F32([-2], 0, 8)}), CheckpointError, "shape must be a list of integers >= 0"),
    ("checkpoint", "float shape entry", lambda c: load(c, {"a": F32([2.0], 0, 8)}), CheckpointError, "[2.0]"),
    ("checkpoint", "bool shape entry", lambda c: load(c, {"a": F32([True, 2], 0, 8)}), CheckpointError, "'a'"),
    ("checkpoint", "shape not a list", lambda c: load(c, {"a": F32("2", 0, 8)}), CheckpointError, "shape must be a list"),
    ("checkpoint", "shape bytes overflow 64 bits", lambda c: load(c, {"a": F32([2**40, 2**40], 0, 8)}), CheckpointError, "overflow"),
    ("checkpoint", "65 dimensions", lambda c: load(c, {"a": F32([1] * 65, 0, 4)}, b"\0" * 4), CheckpointError, "65 dimensions"),
    ("checkpoint", "string offsets", lambda c: load(c, {"a": F32([2], "0", "8")}), CheckpointError, "data_offsets must be two integers"),
    ("checkpoint", "three offsets", lambda c: load(c, {"a": {**F32([2], 0, 8), "data_offsets": [0, 8, 8]}}), CheckpointError, "data_offsets"),
    ("checkpoint", "begin after end", lambda c: load(c, {"a": F32([0], 8, 0)}), CheckpointError, "end before they begin"),
    ("checkpoint", "offsets span wrong byte count", lambda c: load(c, {"a": F32([3], 0, 8)}), CheckpointError, "needs 12 bytes"),
    ("checkpoint", "offsets span more bytes than the shape", lambda c: load(c, {"a": F32([1], 0, 8)}), CheckpointError, "needs 4 bytes"),
    ("checkpoint", "end past end of file", lambda c: load(c, {"a": F32([4], 0, 16)}), CheckpointError, "truncated"),
    ("checkpoint", "unknown dtype", lambda c: load(c, {"a": {**F32([2], 0, 8), "dtype": "F33"}}), CheckpointError, "unsupported dtype 'F33'"),
    ("checkpoint", "dtype safetensors knows, minblip does not", lambda c: load(c, {"a": {**F32([4], 0, 8), "dtype": "U16"}}), CheckpointError, "'U16'"),
    ("checkpoint", "entry missing data_offsets", lambda c: load(c, {"a": {"dtype": "F32", "shape": [2]}}), CheckpointError, "dtype, shape and data_offsets"),
    ("checkpoint", "entry not an object", lambda c: load(c, {"a": [1, 2]}), CheckpointError, "'a'"),
    ("checkpoint", "__metadata__ with a number", lambda c: load(c, {"__metadata__": {"format": 1}, "a": F32([2], 0, 8)}), CheckpointError, "__metadata__"),
    ("checkpoint", "__metadata__ a list", lambda c: load(c, {"__metadata__": ["pt"], "a": F32([2], 0, 8)}), CheckpointError, "__metadata__"),
    ("checkpoint", "header a JSON list", lambda c: load(c, "[1, 2, 3]"), CheckpointError, "not a JSON object"),
    ("checkpoint", "header not UTF-8", lambda c: load(c, b'{"\xff": 1}'), CheckpointError, "not valid JSON"),
    ("checkpoint", "header nested 100000 deep", lambda c: load(c, "[" * 100_000 + "]" * 100_000), CheckpointError, "model.safetensors"),
    ("checkpoint", "header int of 5000 digits", lambda c: load(c, '{"a": %s}' % ("9" * 5000)), CheckpointError, "not valid JSON"),
    ("checkpoint", "header length past the file", lambda c: Vision.from_pretrained(raw(c, (10**6).to_bytes(8, "little") + b"{}")), CheckpointError, "header length field 1000000"),
    ("checkpoint", "header length over 100 MiB", lambda c: Vision.from_pretrained(raw(c, (2**40).to_bytes(8, "little") + b"{}")), CheckpointError, "the limit is"),
    ("checkpoint", "model.safetensors is a folder", lambda c: Vision.from_pretrained(c.tmp) if (c.tmp / "model.safetensors").mkdir() or (c.tmp / "config.json").write_text(json.dumps(TINY_VISION)) else None, CheckpointError, "is a folder"),
    ("checkpoint", "valid file, key both tensor and module", lambda c: minblip.weights.to_tree({"a.b": np.zeros(1), "a": np.zeros(1)}), CheckpointError, "'a'"),
    # --- shard indexes
    ("shards", "weight_map a list", lambda c: Vision.from_pretrained(sharded(c, ["a.safetensors"])), CheckpointError, "weight_map must be an object"),
    ("shards", "weight_map value a number", lambda c: Vision.from_pretrained(sharded(c, lambda g: {**g, next(iter(g)): 3})), CheckpointError, "must be a shard file name, got 3"),
    ("shards", "shard path with ..", lambda c: Vision.from_pretrained(sharded(c, lambda g: {**g, next(iter(g)): "../a.safetensors"})), CheckpointError, "'../a.safetensors' is not a file inside"),
    ("shards", "absolute shard path", lambda c: Vision.from_pretrained(sharded(c, lambda g: {**g, next(iter(g)): "/etc/passwd"})), CheckpointError, "'/etc/passwd'"),
    ("shards", "empty shard name", lambda c: Vision.from_pretrained(sharded(c, lambda g: {**g, next(iter(g)): ""})), CheckpointError, "not a file inside"),
    ("shards", "index without weight_map", lambda c: Vision.from_pretrained(sharded(c, None, index='{"metadata": {}}')), CheckpointError, "weight_map"),
    ("shards", "index not JSON", lambda c: Vision.from_pretrained(sharded(c, None, index="{weight_map")), CheckpointError, "shard index is not valid JSON"),
    ("shards", "index with a duplicate tensor", lambda c: Vision.from_pretrained(sharded(c, None, index='{"weight_map": {"x": "a.safetensors", "x": "a.safetensors"}}')), CheckpointError, "'x' twice"),
    ("shards", "shard missing", lambda c: Vision.from_pretrained(sharded(c, lambda g: {**g, next(iter(g)): "c.safetensors"})), CheckpointError, "missing"),
    ("shards", "tensor in the wrong shard", lambda c: Vision.from_pretrained(sharded(c, lambda g: {**g, next(iter(g)): "sub/b.safetensors"})), CheckpointError, "that the index puts elsewhere"),
    ("shards", "index lists a tensor no shard holds", lambda c: Vision.from_pretrained(sharded(c, lambda g: {**g, "ghost.weight": "a.safetensors"})), CheckpointError, "ghost.weight"),
    ("shards", "shard path is a folder", lambda c: Vision.from_pretrained(sharded(c, lambda g: {**g, next(iter(g)): "sub"})), CheckpointError, "missing"),
    # --- config.json
    ("config", "num_hidden_layers 10**9", lambda c: config(c, num_hidden_layers=10**9), ConfigError, "num_hidden_layers=1000000000"),
    ("config", "hidden_size a string", lambda c: config(c, hidden_size="12"), ConfigError, "hidden_size must be int"),
    ("config", "hidden_size negative", lambda c: config(c, hidden_size=-12), ConfigError, "hidden_size must be positive"),
    ("config", "image_size 2**40", lambda c: config(c, image_size=2**40), ConfigError, "image_size"),
    ("config", "layer_norm_eps NaN", lambda c: config_text(c, json.dumps(TINY_VISION)[:-1] + ', "layer_norm_eps": NaN}'), ConfigError, "layer_norm_eps must be a finite number"),
    ("config", "layer_norm_eps 1e400 (inf)", lambda c: config_text(c, json.dumps(TINY_VISION)[:-1] + ', "layer_norm_eps": 1e400}'), ConfigError, "layer_norm_eps"),
    ("config", "hidden_act unknown", lambda c: config(c, hidden_act="rm -rf"), ConfigError, "hidden_act 'rm -rf'"),
    ("config", "model_type missing", lambda c: config(c, model_type=DROP), ConfigError, "unknown model_type None"),
    ("config", "config a JSON list", lambda c: config_text(c, "[]"), ConfigError, "JSON object"),
    ("config", "config nested 100000 deep", lambda c: config_text(c, "[" * 100_000 + "]" * 100_000), ConfigError, "config.json"),
    ("config", "config int of 5000 digits", lambda c: config_text(c, '{"hidden_size": %s}' % ("9" * 5000)), ConfigError, "not valid JSON"),
    ("config", "config not UTF-8", lambda c: (write_checkpoint(c.tmp / "c", TINY_VISION, {}) / "config.json").write_bytes(b"\xff\xfe{}") and Vision.from_pretrained(c.tmp / "c"), ConfigError, "config.json"),
    # --- tokenizer files and calls
    ("tokenizer", "tokenizer.json not JSON", lambda c: tokenizer(c, tokenizer__json="{"), TokenizerError, "tokenizer.json"),
    ("tokenizer", "tokenizer.json wrong model type", lambda c: tokenizer(c, tokenizer__json='{"model": {"type": "Nope"}}'), TokenizerError, "tokenizer.json"),
    ("tokenizer", "no tokenizer files", lambda c: tokenizer(c, tokenizer__json=None, vocab__txt=None), TokenizerError, "no tokenizer.json or vocab.txt"),
    ("tokenizer", "tokenizer_config not JSON", lambda c: tokenizer(c, tokenizer_config__json="{"), TokenizerError, "tokenizer_config.json"),
    ("tokenizer", "vocab.txt without [UNK]", lambda c: tokenizer(c, tokenizer__json=None, vocab__txt="[PAD]\nhello\n"), TokenizerError, "vocab.txt"),
    ("tokenizer", "empty text list", lambda c: c.tok([], return_tensors="np"), InputError, "text is an empty list"),
    ("tokenizer", "pad to 10**12 tokens", lambda c: c.tok(["a"], padding="max_length", max_length=10**12), InputError, "max_length=1000000000000"),
    ("tokenizer", "pad_to_multiple_of 0", lambda c: c.tok(["a"], padding=True, pad_to_multiple_of=0), InputError, "pad_to_multiple_of=0"),
    ("tokenizer", "tokenizer max_length a string", lambda c: c.tok(["a"], truncation=True, max_length="5"), InputError, "max_length must be an int"),
    ("tokenizer", "decode a negative id", lambda c: c.tok.decode([5, -1]), InputError, "token id -1"),
    ("tokenizer", "decode an id over 2**32", lambda c: c.tok.decode([2**40]), InputError, "token id 1099511627776"),
    ("tokenizer", "decode strings", lambda c: c.tok.decode(["a"]), InputError, "must be integers"),
    # --- image files and arrays
    ("image", "decompression bomb", lambda c: load_image(image_file(c, png(100_000, 100_000))), ImageError, "x.png: refused as a possible decompression bomb"),
    ("image", "bomb past Pillow's limit (Pillow error)", lambda c: c.mp.setattr(preprocess, "MAX_IMAGE_PIXELS", 10**12) or load_image(image_file(c, png(20_000, 20_000))), ImageError, "PIL.Image.MAX_IMAGE_PIXELS"),
    ("image", "bomb past Pillow's warning", lambda c: c.mp.setattr(preprocess, "MAX_IMAGE_PIXELS", 10**12) or load_image(image_file(c, png(10_000, 10_000))), ImageError, "decompression bomb"),
    ("image", "limit lowered by the user", lambda c: c.mp.setattr(preprocess, "MAX_IMAGE_PIXELS", 100) or load_image(image_file(c, small_png_bytes())), ImageError, "over the limit of 100"),
    ("image", "truncated PNG", lambda c: load_image(image_file(c, small_png_bytes()[:60])), ImageError, "x.png"),
    ("image", "unidentified bytes", lambda c: load_image(image_file(c, b"GIF? no" * 20)), ImageError, "not a readable image"),
    ("image", "zero-byte file", lambda c: load_image(image_file(c, b"")), ImageError, "empty (0 bytes)"),
    ("image", "0 x 0 array", lambda c: BlipImageProcessor()(np.zeros((0, 0, 3), np.uint8)), ImageError, "a side of 0"),
    ("image", "0-wide PIL image", lambda c: BlipImageProcessor()(Image.new("RGB", (0, 5))), ImageError, "0 x 5"),
    ("image", "PNG header declaring 0 x 0", lambda c: load_image(image_file(c, png(0, 0))), ImageError, "x.png"),
    # --- processor options
    ("processor", "resize to 10**6 x 10**6", lambda c: BlipImageProcessor()(IMG, size={"height": 10**6, "width": 10**6}), ImageError, "1,000,000,000,000 pixels"),
    ("processor", "shortest_edge on a 1 x 4000 strip", lambda c: BlipImageProcessor()(np.zeros((1, 4000, 3), np.uint8), size={"shortest_edge": 384}), ImageError, "shortest_edge"),
    ("processor", "image_std zero", lambda c: BlipImageProcessor()(IMG, image_std=[0, 0, 0]), InputError, "image_std=[0, 0, 0] holds 0"),
    ("processor", "image_mean a string", lambda c: BlipImageProcessor()(IMG, image_mean="abc"), InputError, "image_mean='abc'"),
    ("processor", "rescale_factor a string", lambda c: BlipImageProcessor()(IMG, rescale_factor="x"), InputError, "rescale_factor='x'"),
    ("processor", "size 0", lambda c: BlipImageProcessor()(IMG, size=0), InputError, "size=0"),
    ("processor", "no images", lambda c: BlipImageProcessor()([]), InputError, "no images"),
    ("processor", "empty text list via BlipProcessor", lambda c: BlipProcessor(BlipImageProcessor(), c.tok)(text=[]), InputError, "text is an empty list"),
    ("processor", "preprocessor_config size 10**9", lambda c: (c.tmp / "preprocessor_config.json").write_text('{"size": 1000000000}') and BlipImageProcessor.from_pretrained(c.tmp)(IMG), ImageError, "1000000000 x 1000000000"),
    ("processor", "MINBLIP_MAX_IMAGE_PIXELS not a number", lambda c: c.mp.setenv("MINBLIP_MAX_IMAGE_PIXELS", "lots") or preprocess._pixel_limit(), ConfigError, "MINBLIP_MAX_IMAGE_PIXELS='lots'"),
    # --- generate options
    ("generate", "num_return_sequences 0 with beams", lambda c: gen(c, num_beams=2, num_return_sequences=0), InputError, "num_return_sequences must be >= 1, got 0"),
    ("generate", "length_penalty a string", lambda c: gen(c, num_beams=2, length_penalty="long"), InputError, "length_penalty must be a finite number, got 'long'"),
    ("generate", "length_penalty nan", lambda c: gen(c, num_beams=2, length_penalty=float("nan")), InputError, "length_penalty"),
    ("generate", "num_beams 0", lambda c: gen(c, num_beams=0), InputError, "num_beams must be >= 1, got 0"),
    ("generate", "num_beams 2.0", lambda c: gen(c, num_beams=2.0), InputError, "num_beams must be an int >= 1, got 2.0"),
    ("generate", "max_new_tokens -5", lambda c: gen(c, max_new_tokens=-5), InputError, "max_new_tokens must be >= 1, got -5"),
    ("generate", "generate max_length a string", lambda c: gen(c, max_length="20"), InputError, "max_length must be an int"),
    ("generate", "min_new_tokens -1", lambda c: gen(c, min_new_tokens=-1), InputError, "min_new_tokens must be >= 0"),
    ("generate", "top_p 1.5", lambda c: gen(c, do_sample=True, top_p=1.5), InputError, "top_p must be in [0, 1], got 1.5"),
    ("generate", "top_k -1", lambda c: gen(c, do_sample=True, top_k=-1), InputError, "top_k must be >= 0, got -1"),
    ("generate", "temperature 0", lambda c: gen(c, do_sample=True, temperature=0), InputError, "temperature must be > 0, got 0"),
    ("generate", "typical_p 0", lambda c: gen(c, do_sample=True, typical_p=0), InputError, "typical_p must be in (0, 1], got 0"),
    ("generate", "min_p a string", lambda c: gen(c, do_sample=True, min_p="0.1"), InputError, "min_p must be a finite number, got '0.1'"),
    ("generate", "repetition_penalty -1", lambda c: gen(c, repetition_penalty=-1.0), InputError, "repetition_penalty must be > 0"),
    ("generate", "max_time -1", lambda c: gen(c, max_time=-1), InputError, "max_time must be >= 0, got -1"),
    ("generate", "do_sample 'yes'", lambda c: gen(c, do_sample="yes"), InputError, "do_sample must be True or False"),
    ("generate", "forced_bos_token_id past vocab", lambda c: gen(c, forced_bos_token_id=10**9), InputError, "forced token id(s) [1000000000]"),
    ("generate", "begin_suppress_tokens a string", lambda c: gen(c, begin_suppress_tokens="ab"), InputError, "begin_suppress_tokens must be an int >= 0, got 'ab'"),
    ("generate", "suppress_tokens holding a float", lambda c: gen(c, suppress_tokens=[1, 2.5]), InputError, "suppress_tokens entry must be an int >= 0, got 2.5"),
    ("generate", "exponential decay with a string", lambda c: gen(c, exponential_decay_length_penalty=("a", 1.0)), InputError, "start_index must be an int"),
    ("generate", "seed a string", lambda c: gen(c, do_sample=True, seed="x"), InputError, "seed must be an int or None, got 'x'"),
    ("generate", "max_new_tokens 10**9 with beams", lambda c: gen(c, num_beams=3, max_new_tokens=10**9, min_new_tokens=10**8), InputError, "max_position_embeddings=40"),
    # --- the command line
    ("cli", "info on a negative shape", lambda c: cli(c, "info", str(st(c, {"a": F32([-2], 0, 8)}))), CheckpointError, "shape must be a list of integers >= 0"),
    ("cli", "info on aliased tensors", lambda c: cli(c, "info", str(st(c, {"a": F32([2], 0, 8), "b": F32([2], 0, 8)}))), CheckpointError, "overlaps"),
    ("cli", "info on a weight_map list", lambda c: cli(c, "info", str(sharded(c, ["x"]))), CheckpointError, "weight_map must be an object"),
    ("cli", "info on a bad config", lambda c: cli(c, "info", str(st(c, {}, b"", {**TINY_VISION, "patch_size": 0}))), ConfigError, "patch_size must be positive"),
    ("cli", "caption with --num-beams 0", lambda c: cli(c, "caption", "x.png", "--num-beams", "0"), InputError, "--num-beams: must be an int >= 1, got '0'"),
    ("cli", "caption with --max-new-tokens -1", lambda c: cli(c, "caption", "x.png", "--max-new-tokens", "-1"), InputError, "--max-new-tokens"),
    ("cli", "caption of a decompression bomb", lambda c: cli(c, "caption", str(image_file(c, png(100_000, 100_000), "bomb.png")), "--model", str(caption_folder(c))), ImageError, "bomb.png: refused as a possible decompression bomb"),
]  # fmt: skip


@pytest.fixture(scope="module")
def shared():
    meta, inputs, _ = load_case(CAPTION)
    model = minblip.BlipForConditionalGeneration.from_pretrained(model_dir(CAPTION))
    return model, inputs["pixel_values"][:1], BertTokenizer.from_pretrained(TOKENIZER)


@pytest.mark.parametrize(
    "family, name, action, error, text", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES]
)
def test_bad_input(family, name, action, error, text, shared, tmp_path, monkeypatch, capsys):
    model, pixels, tok = shared
    ctx = SimpleNamespace(tmp=tmp_path, mp=monkeypatch, caption=model, pixels=pixels, tok=tok)
    if family == "cli":
        _, argv = action(ctx)
        monkeypatch.chdir(tmp_path)
        try:
            status = main(argv)
        except SystemExit as e:  # argparse refuses a bad option value with status 2
            status = e.code
        err = capsys.readouterr().err
        assert status in (1, 2) and text in err and "Traceback" not in err, err
        return
    with pytest.raises(MinblipError) as info:
        action(ctx)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert text in str(info.value), str(info.value)


def test_catalogue_size():
    """At least 60 distinct bad inputs, every family represented."""
    families = {c[0] for c in CASES}
    assert len(CASES) >= 60 and len({c[1] for c in CASES}) == len(CASES)
    assert families == {
        "checkpoint", "shards", "config", "tokenizer", "image", "processor", "generate", "cli"
    }  # fmt: skip


# ----------------------------------------------------------------------------- what must load


def test_shards_in_a_subfolder_load(tmp_path):
    """transformers loads an index whose shard paths name a subfolder; so does minblip."""
    ctx = SimpleNamespace(tmp=tmp_path)
    flat = minblip.weights.load_flat(sharded(ctx, lambda g: g))
    assert flat.keys() == tiny_vision_tensors().keys()
    assert all(np.array_equal(flat[k], v) for k, v in tiny_vision_tensors().items())


def test_zero_size_tensors_and_metadata_load(tmp_path):
    """What safetensors accepts minblip accepts: empty tensors at one offset, string metadata,
    null metadata, unknown fields in an entry, and an empty file."""
    ctx = SimpleNamespace(tmp=tmp_path)
    header = {
        "__metadata__": {"format": "pt"},
        "e1": F32([0], 0, 0),
        "e2": {**F32([0, 3], 0, 0), "note": "extra fields are ignored"},
        "a": F32([2], 0, 8),
    }
    flat = minblip.weights.load_safetensors(st(ctx, header) / "model.safetensors")
    assert flat["e1"].shape == (0,) and flat["e2"].shape == (0, 3) and flat["a"].shape == (2,)
    assert (
        minblip.weights.load_safetensors(st(ctx, {"__metadata__": None}, b"") / "model.safetensors")
        == {}
    )


def test_beam_buffers_grow_without_a_position_table(monkeypatch):
    """Beam buffers start small and grow: the same beams as buffers sized up front."""
    from minblip import generate as g

    V = 7
    table = np.random.default_rng(0).standard_normal((V, V)).astype(np.float32)

    def step(ids, pos, mask, past, context):
        return table[ids[:, -1]], None

    kwargs = dict(
        eos_token_id=3, pad_token_id=0, num_beams=3, max_new_tokens=30, num_return_sequences=2
    )
    ids = np.array([[1], [2]])
    full = g.generate(step, ids, **kwargs)
    monkeypatch.setattr(g, "BUFFER_START", 1)
    grown = g.generate(step, ids, **kwargs)
    assert np.array_equal(full, grown)
