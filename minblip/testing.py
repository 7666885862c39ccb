"""Deterministic random weights for golden fixtures, their checksum, and on-demand rebuilding.

The golden generator (tools/golden_common.py) fills transformers models with random_weights()
instead of transformers' own initialisation, for two reasons:

* transformers' init is useless for testing: BLIP's vision initializer_range defaults to 1e-10,
  so a freshly built model has near-zero class/position embeddings and every layer's output is
  dominated by biases; attention comes out almost uniform and LM logits almost tied, which
  hides bugs (a wrong scale or a transposed head split would still "match").
* full-size fixtures (real BLIP dims, hundreds of MB) cannot be committed. They store only the
  key/shape list, the seed and a sha256 (weights.json); materialize() rebuilds the exact file.

This module needs only NumPy and safetensors, never torch: the tests use it too.
"""

import hashlib
import json
import shutil
import zlib
from pathlib import Path

import numpy as np

from .errors import CheckpointError


def _is_norm(key):
    """A LayerNorm / RMSNorm parameter: its module's name says "norm" (layer_norm1, LayerNorm,
    layernorm, post_layernorm, self_attn_layer_norm, final_layer_norm, ...)."""
    parts = key.split(".")
    return len(parts) >= 2 and "norm" in parts[-2].lower()


# Raw-tensor parameters and lookup tables, matched on the key's path components. Their rows are
# added straight into the residual stream, so they get an absolute scale instead of 1/sqrt(fan_in).
_EMBEDDING_PARTS = (
    "class_embedding",
    "position_embedding",
    "query_tokens",
    "word_embeddings",
    "position_embeddings",
    "token_type_embeddings",
    "token_embedding",
    "embed_tokens",
    "embed_positions",
    "shared",
    "relative_attention_bias",
)


def _is_embedding(key):
    return any(part in _EMBEDDING_PARTS for part in key.split("."))


def _integer_buffer(key, shape):
    """Integer buffers, valued as transformers builds them: position_ids = arange along the last
    axis (broadcast over the leading ones); anything else (token_type_ids, counters) zeros."""
    if key.split(".")[-1] == "position_ids":
        return np.broadcast_to(np.arange(shape[-1], dtype=np.int64), shape).copy()
    return np.zeros(shape, dtype=np.int64)


_INTEGER_BUFFERS = ("position_ids", "token_type_ids", "num_batches_tracked")


def random_weights(shapes, seed, dtype=np.float32):
    """Random parameters with per-key scales chosen so that every module's output is O(1).

    Shapes:  shapes {key: shape tuple} -> {key: array of that shape}
    Each key draws from its own generator, np.random.default_rng([seed, crc32(key)]), so a value
    depends only on (seed, key, shape): not on dict order, nor on which other keys exist.
    N below is a standard normal draw of the tensor's shape; rules apply in this order:

    1. integer buffers (last key part position_ids / token_type_ids / num_batches_tracked) are
       int64, valued as transformers builds them (position_ids = arange; others zeros);
    2. normalisation layers (the module name contains "norm", any case):
       weight = 1 + 0.1 N, bias = 0.1 N -- a non-trivial affine step, so a missing or swapped
       gamma/beta shows up, while keeping the output O(1);
    3. embeddings and raw-tensor parameters (a key part is one of class_embedding,
       position_embedding(s), query_tokens, word_embeddings, token_embedding, embed_tokens,
       embed_positions, shared, relative_attention_bias, token_type_embeddings): 0.5 N.
       Large enough that attention is far from uniform and tied LM-head logits
       (h @ word_embeddings.T) spread by ~0.5 sqrt(D), giving clear greedy argmax margins;
    4. other biases (and any other 0-d/1-d tensor): 0.1 N;
    5. other weights of rank >= 2 (Linear (out, in), Conv2d (out, in, kh, kw)):
       N / sqrt(fan_in), fan_in = prod(shape[1:]) -- the output of a Linear on O(1) input is O(1).

    Values are drawn in float64 and cast once to dtype, so float32 and float64 fixtures hold the
    same numbers up to that rounding.
    """
    out = {}
    for key, shape in shapes.items():
        shape = tuple(int(s) for s in shape)
        if key.split(".")[-1] in _INTEGER_BUFFERS:
            out[key] = _integer_buffer(key, shape)
            continue
        rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
        n = rng.standard_normal(shape)
        if _is_norm(key):
            value = 1.0 + 0.1 * n if key.endswith("weight") else 0.1 * n
        elif _is_embedding(key):
            value = 0.5 * n
        elif len(shape) < 2:
            value = 0.1 * n
        else:
            value = n / np.sqrt(np.prod(shape[1:]))
        out[key] = np.asarray(value, dtype=dtype)  # 0-d too (logit_scale): an array, not a scalar
    return out


def checksum(weights):
    """sha256 hex digest over sorted keys, each key's shape, dtype and little-endian bytes."""
    h = hashlib.sha256()
    for key in sorted(weights):
        a = np.ascontiguousarray(weights[key])
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        h.update(key.encode() + b"\0")
        h.update(repr(tuple(a.shape)).encode() + b"\0")
        h.update(a.dtype.str.encode() + b"\0")
        h.update(a.tobytes())
    return h.hexdigest()


def weights_from_spec(spec):
    """Rebuild the saved tensors a weights.json spec lists: random_weights over their shapes, cast
    to each recorded dtype. (Tied aliases that save_pretrained left out stay out, as in the file
    transformers wrote; spec["tied"] only documents them.)"""
    shapes = {k: tuple(t["shape"]) for k, t in spec["tensors"].items()}
    weights = random_weights(shapes, spec["seed"])
    return {
        k: weights[k].astype(np.dtype(t["dtype"]), copy=False) for k, t in spec["tensors"].items()
    }


def materialize(case_dir, out_dir):
    """Build a full-size case's model folder: out_dir/model.safetensors + case_dir/model/*.json.

    Regenerates the weights that weights.json describes and checks them against its sha256, so a
    change in NumPy's generator or in random_weights' rules is reported instead of silently
    producing weights that no longer match the golden outputs. An out_dir already materialized
    with the same checksum is reused as it is (tests call this once per session).
    Returns out_dir as a Path.
    """
    from safetensors.numpy import save_file

    case_dir, out_dir = Path(case_dir), Path(out_dir)
    spec_path = case_dir / "weights.json"
    if not spec_path.is_file():
        raise CheckpointError(
            f"{case_dir.name}: no weights.json in {case_dir} (not a full-size case)"
        )
    spec = json.loads(spec_path.read_text())
    stamp = out_dir / "weights.sha256"
    if (out_dir / "model.safetensors").is_file() and stamp.is_file():
        if stamp.read_text().strip() == spec["sha256"]:
            return out_dir
    weights = weights_from_spec(spec)
    digest = checksum(weights)
    if digest != spec["sha256"]:
        raise CheckpointError(
            f"golden case {case_dir.name}: regenerated weights have sha256 {digest}, weights.json "
            f"says {spec['sha256']} (written with numpy {spec.get('numpy', '?')}; this is numpy "
            f"{np.__version__}). random_weights or NumPy's generator drifted: regenerate the case "
            f"with tools/make_golden.py."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    save_file(weights, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    for src in sorted((case_dir / "model").glob("*.json")):
        shutil.copyfile(src, out_dir / src.name)
    stamp.write_text(spec["sha256"] + "\n")
    return out_dir


CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def random_pixels(seed, batch, height, width):
    """(B, 3, H, W) float32 pixel_values: uniform random 8-bit RGB -> /255 -> CLIP-normalised,
    the value range the processor produces. Full-size golden cases store (seed, shape, sha256)
    instead of the 1.7 MB array and tests rebuild it with this function."""
    rgb = np.random.default_rng(seed).integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
    x = (rgb.astype(np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # b h w c -> b c h w


def array_sha256(a):
    """sha256 of an array's dtype, shape and bytes."""
    import hashlib

    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def generated_inputs(meta):
    """The inputs a case regenerates from seeds: {name: array}, checked against their sha256."""
    out = {}
    for name, spec in meta.get("generated_inputs", {}).items():
        a = random_pixels(spec["seed"], *spec["shape"][:1], *spec["shape"][2:])
        if array_sha256(a) != spec["sha256"]:
            raise AssertionError(f"regenerated input {name} drifted from the fixture's sha256")
        out[name] = a
    return out
