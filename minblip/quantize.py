"""int8 weight-only quantization: the CPU counterpart of transformers' `load_in_8bit=True`.

Every Linear weight W (Dout, Din) becomes int8 q and a float32 scale s (Dout,), one per output
channel, symmetric: s = max|W[o]| / 127, q = round(W / s), so W ~ q * s. Products stay float32
(ops.matmul_stored widens q a block of rows at a time; the scale multiplies the result).
Embeddings, LayerNorms, biases and the LM head are left as they are. Which Linears: as
transformers' bitsandbytes integration picks them (quantizers/base.py get_modules_to_not_convert):
every Linear except the output embedding (lm_head, BLIP's predictions.decoder: DEFAULT_SKIP,
which `llm_int8_skip_modules` replaces, as in BitsAndBytesConfig) and, whatever the skip list,
the _keep_in_fp32_modules (ALWAYS_SKIP: the Q-Former, and T5's `wo`).

A pre-quantized folder (written by `minblip quantize` / save_quantized) stores `X.weight` as I8
beside `X.weight_scale` (F32) and says so in config.json:

    "quantization_config": {"quant_method": "minblip_int8", "format_version": 1, ...}

It loads memory-mapped with no conversion work. transformers cannot load it (an unknown
quant_method): it is minblip's own format.
"""

import json
import pathlib
import shutil

import numpy as np

from .errors import CheckpointError, InputError
from .ops import widen

QUANT_METHOD = "minblip_int8"
FORMAT_VERSION = 1
DEFAULT_SKIP = ("lm_head", "predictions.decoder")  # the output embedding (get_keys_to_not_convert)
# _keep_in_fp32_modules, which 5.23's bitsandbytes quantizer adds to any skip list: Blip2's
# (query_tokens, qformer) and, gathered from its children, T5's (the FFN's output `wo`)
ALWAYS_SKIP = ("qformer", "query_tokens", "wo")
# 2-D weights that are tables read by row (ops.embedding), not Linears: never quantized
EMBEDDINGS = (
    "embed_tokens",
    "embed_positions",
    "shared",
    "relative_attention_bias",
    "word_embeddings",
    "position_embeddings",
)
SCALE = "_scale"  # X.weight -> X.weight_scale


def quantize_rows(W, block_rows=256):
    """Symmetric per-output-channel int8 of a (Dout, Din) weight (float or kept 16-bit), a
    block of rows at a time (memory: the int8 result plus one float32 block).

    Returns q (Dout, Din) int8 and s (Dout,) float32 with W ~ q * s. A row of zeros gets s = 1
    (q = 0), never a division by zero."""
    Dout = W.shape[0]
    q, s = np.empty(W.shape, np.int8), np.empty(Dout, np.float32)
    for r in range(0, Dout, block_rows):
        w = widen(W[r : r + block_rows])
        amax = np.abs(w).max(axis=1)
        scale = np.where(amax > 0, amax / np.float32(127), np.float32(1)).astype(np.float32)
        q[r : r + block_rows] = np.clip(np.rint(w / scale[:, None]), -127, 127)
        s[r : r + block_rows] = scale
    return q, s


def skipped(key, skip):
    """Whether the module of `key` is (inside) one named in `skip` (dotted names match whole
    path components: "qformer" skips "qformer.layer.0...", not "qformer_proj")."""
    path = "." + key.rsplit(".", 1)[0] + "."
    return any(f".{name}." in path for name in skip)


def linear_keys(expected, skip=DEFAULT_SKIP):
    """The Linear weights to quantize among a model's {key: shape}: 2-D `.weight`s that are
    not embedding tables and not in a skipped module."""
    return [
        k
        for k, shape in expected.items()
        if len(shape) == 2
        and k.endswith(".weight")
        and not skipped(k, EMBEDDINGS)
        and not skipped(k, skip)
        and not skipped(k, ALWAYS_SKIP)
    ]


def read_plan(folder, load_in_8bit=False, quantization_config=None):
    """What int8 work loading `folder` needs: None (none), {"prequantized": True, ...} (the
    folder holds int8 weights) or {"prequantized": False, "skip": [...]} (quantize on load).

    quantization_config: a dict spelled as BitsAndBytesConfig's to_dict() (load_in_8bit,
    llm_int8_skip_modules), or an object with those attributes."""
    if quantization_config is not None:
        get = (
            quantization_config.get
            if isinstance(quantization_config, dict)
            else lambda name, default=None: getattr(quantization_config, name, default)
        )
        if get("load_in_4bit", False):
            raise InputError("load_in_4bit is not supported: minblip quantizes to int8 only")
        load_in_8bit = load_in_8bit or bool(get("load_in_8bit", False))
        skip = get("llm_int8_skip_modules", None)
    else:
        skip = None
    stored = stored_config(folder)
    if stored is not None:
        return {"prequantized": True, "skip": stored.get("llm_int8_skip_modules", [])}
    if load_in_8bit:
        return {"prequantized": False, "skip": list(DEFAULT_SKIP if skip is None else skip)}
    return None


def stored_config(folder):
    """config.json's quantization_config when it is minblip's int8 format, else None; another
    method or a format version this minblip does not know is refused by name."""
    path = pathlib.Path(folder) / "config.json"
    try:
        qc = json.loads(path.read_text()).get("quantization_config")
    except (OSError, ValueError, AttributeError):
        return None  # load_config reports an unreadable config.json
    if qc is None:
        return None
    if not isinstance(qc, dict) or qc.get("quant_method") != QUANT_METHOD:
        method = qc.get("quant_method") if isinstance(qc, dict) else qc
        raise CheckpointError(
            f"{path}: quantization_config.quant_method {method!r} is not supported; minblip "
            f"reads {QUANT_METHOD!r} folders written by `minblip quantize`"
        )
    if qc.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: quantization_config.format_version {qc.get('format_version')!r} is not "
            f"known to this minblip (it reads version {FORMAT_VERSION}); upgrade minblip or "
            "quantize the source checkpoint again"
        )
    return qc


def apply(flat, expected, plan, where):
    """Quantize (or check the stored quantization of) `flat` for a model expecting `expected`.

    Returns (flat, expected, stored): the tensors with int8 weights and their scales, the
    expected shapes with one (Dout,) scale per int8 weight, and the keys kept as stored."""
    if plan["prequantized"]:
        quantized = [k for k, a in flat.items() if a.dtype == np.int8]
        for k in quantized:
            if k not in expected or len(expected[k]) != 2:
                raise CheckpointError(f"{where}: int8 tensor {k!r} is not a Linear weight")
            scale = flat.get(k + SCALE)
            if scale is None:
                raise CheckpointError(f"{where}: int8 weight {k!r} has no scale {k + SCALE!r}")
            if scale.dtype != np.float32 or scale.shape != (expected[k][0],):
                raise CheckpointError(
                    f"{where}: scale {k + SCALE!r} is {scale.dtype} {scale.shape}, expected "
                    f"float32 ({expected[k][0]},) (one per output channel of {k!r})"
                )
        orphans = [k for k in flat if k.endswith(SCALE) and k[: -len(SCALE)] not in quantized]
        if orphans:
            raise CheckpointError(f"{where}: scale(s) {orphans[:3]} beside no int8 weight")
    else:
        quantized = linear_keys(expected, plan["skip"])
        if not quantized:
            raise InputError(f"{where}: load_in_8bit found no Linear weight to quantize")
        flat = dict(flat)
        for k in quantized:
            if k in flat:
                flat[k], flat[k + SCALE] = quantize_rows(flat[k])
    expected = dict(expected)
    expected.update({k + SCALE: (expected[k][0],) for k in quantized if k in flat})
    return flat, expected, quantized


# ----------------------------------------------------------------------------- writing a folder

_ST_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.int8): "I8", np.dtype(np.float64): "F64"}


def save_quantized(src, dst, replace=False, skip=DEFAULT_SKIP):
    """Write an int8 copy of checkpoint folder `src` to `dst`: every Linear weight (as
    linear_keys picks them) as I8 + F32 scale, every other tensor widened to float32, config.json
    with a quantization_config, and the other files (tokenizer, processor) copied. The source is
    never written; a destination holding a checkpoint is refused unless replace=True.

    Returns {"quantized": n, "tensors": m, "bytes": size of model.safetensors}."""
    from .config import load_config
    from .weights import load_flat, weight_files

    src, dst = pathlib.Path(src).resolve(), pathlib.Path(dst).resolve()
    weight_files(src)  # a readable checkpoint folder
    if src == dst:
        raise InputError(f"{dst}: quantize never overwrites its source folder")
    held = [n for n in ("model.safetensors", "model.safetensors.index.json") if (dst / n).exists()]
    if held and not replace:
        raise InputError(
            f"{dst}: already holds a checkpoint ({held[0]}); pass --replace to overwrite it"
        )
    if stored_config(src) is not None:
        raise InputError(f"{src}: is already quantized (quantization_config in config.json)")
    load_config(src)  # a config minblip reads
    flat = load_flat(src, np.float32, keep_16bit=True)
    keys = set(linear_keys({k: a.shape for k, a in flat.items()}, skip))
    dst.mkdir(parents=True, exist_ok=True)
    for old in [dst / "model.safetensors.index.json", *dst.glob("model*.safetensors")]:
        old.unlink(missing_ok=True)
    nbytes = _write_streaming(dst / "model.safetensors", flat, keys)
    copy_side_files(src, dst)
    config = json.loads((src / "config.json").read_text())
    config["quantization_config"] = {
        "quant_method": QUANT_METHOD,
        "format_version": FORMAT_VERSION,
        "bits": 8,
        "scheme": "symmetric, per output channel: weight ~ int8 * weight_scale",
        "llm_int8_skip_modules": list(skip) + list(ALWAYS_SKIP),
    }
    (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return {"quantized": len(keys), "tensors": len(flat) + len(keys), "bytes": nbytes}


def copy_side_files(src, dst):
    """Tokenizer, processor and generation files: everything but the weights and config.json."""
    for f in src.iterdir():
        if f.is_file() and not f.name.startswith("model") and f.name != "config.json":
            shutil.copy2(f, dst / f.name)


def _write_streaming(path, flat, keys):
    """One safetensors file written a tensor at a time (memory: one tensor, not the model):
    the header is known up front (int8 keeps the shape, a scale is (Dout,) float32)."""
    header, entries, offset = {}, [], 0
    for k in sorted(flat):
        a = flat[k]
        parts = [(k, np.int8, a.shape), (k + SCALE, np.float32, a.shape[:1])] if k in keys else []
        parts = parts or [(k, np.float64 if a.dtype == np.float64 else np.float32, a.shape)]
        for name, dtype, shape in parts:
            n = int(np.prod(shape)) * np.dtype(dtype).itemsize
            header[name] = {
                "dtype": _ST_DTYPES[np.dtype(dtype)],
                "shape": list(shape),
                "data_offsets": [offset, offset + n],
            }
            offset += n
        entries.append(k)
    header["__metadata__"] = {"format": "np"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for k in entries:
            a = flat[k]
            if k in keys:
                q, s = quantize_rows(a)
                f.write(q.tobytes())
                f.write(s.tobytes())
            else:
                w = a if a.dtype == np.float64 else widen(a)
                f.write(np.ascontiguousarray(w).astype(w.dtype.newbyteorder("<")).tobytes())
    return 8 + len(text) + offset


# ----------------------------------------------------------------------------- command line


def add_subcommand(sub):
    """`minblip quantize SRC DST [--replace] [--skip MODULE ...]`."""
    p = sub.add_parser(
        "quantize",
        help="write an int8 weight-only copy of a checkpoint folder",
        description="Write DST: SRC's Linear weights as int8 with one float32 scale per output "
        "channel (symmetric), every other tensor as float32, config.json with a "
        "quantization_config, the tokenizer and processor files copied. DST then loads "
        "memory-mapped with no conversion work (from_pretrained, --model DST). SRC is never "
        "written; a DST holding a checkpoint is refused unless --replace.",
    )
    p.add_argument("src", metavar="SRC", help="checkpoint folder (float32, float16 or bf16)")
    p.add_argument("dst", metavar="DST", help="folder to write")
    p.add_argument("--replace", action="store_true", help="overwrite a checkpoint in DST")
    p.add_argument(
        "--skip",
        nargs="+",
        default=list(DEFAULT_SKIP),
        metavar="MODULE",
        help="modules left unquantized, as llm_int8_skip_modules (default: %(default)s)",
    )
    p.set_defaults(func=cmd_quantize)


def cmd_quantize(args):
    done = save_quantized(args.src, args.dst, replace=args.replace, skip=args.skip)
    print(
        f"{args.dst}: {done['quantized']} Linear weights as int8, {done['tensors']} tensors, "
        f"{done['bytes'] / 2**30:.2f} GiB"
    )
    return 0
