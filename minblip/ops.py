"""NumPy primitives: the readable reference for every computation minblip does.

Notation (used in every docstring of the package; docs/notation.md explains it):

    B  batch                       T  text tokens (Tk keys, Tp a prompt to generate from)
    S  image side, P patch size    Q  query tokens (BLIP-2)
    N  vision tokens = (S/P)^2 + 1 V  vocabulary
    D  hidden size of the current tower (Dv vision, Dt text, Dq Q-Former, Dl language model)
    H  heads, Dh = D / H head size F  FFN width (intermediate_size)
    L  layers                      K  beams; R = B or B·K rows of a decode step

Conventions, as in PyTorch: a Linear weight is stored (out, in) and applied as x @ W.T + b;
LayerNorm uses the biased variance with eps inside the square root. Arithmetic stays in the dtype
of the inputs (float32 normally, float64 when a model is loaded with dtype="float64").

Backends. A function decorated with @has_kernel("name") has a Numba twin of the same name in
kernels.py. With the "numba" backend (the default when Numba imports) the twin runs whenever it
accepts the inputs; otherwise, and always with the "numpy" backend, the body below runs.
`fn.reference` is the body, so tests compare the two. Select with MINBLIP_BACKEND=numpy|numba or
minblip.set_backend().
"""

import math
import os

import numpy as np

from .errors import InputError

# ----------------------------------------------------------------------------- backend switch

_BACKEND = {"name": os.environ.get("MINBLIP_BACKEND", "numba")}
_KERNELS = {}  # name -> Numba twin (filled by kernels.py on first use)


def set_backend(name):
    """Choose "numpy" (the readable reference) or "numba" (it plus the kernels that win)."""
    if name not in ("numpy", "numba"):
        raise InputError(f"backend must be 'numpy' or 'numba', got {name!r}")
    _BACKEND["name"] = name


def get_backend():
    return _BACKEND["name"]


def has_kernel(name):
    """Dispatch to kernels.<name> under the numba backend when it accepts the inputs."""

    def wrap(reference):
        def dispatch(*args, **kwargs):
            if _BACKEND["name"] == "numba":
                twin = _kernel(name)
                if twin is not None:
                    out = twin(*args, **kwargs)
                    if out is not NotImplemented:
                        return out
            return reference(*args, **kwargs)

        dispatch.__name__, dispatch.__doc__ = reference.__name__, reference.__doc__
        dispatch.reference = reference
        return dispatch

    return wrap


def _kernel(name):
    if name not in _KERNELS:
        try:
            from . import kernels
        except ImportError:  # Numba missing: the NumPy reference serves
            _KERNELS[name] = None
        else:
            _KERNELS[name] = getattr(kernels, name, None)
    return _KERNELS[name]


# ----------------------------------------------------------------------------- primitives


def linear(x, p):
    """PyTorch Linear: x @ W.T + b.  x (..., Din), W (Dout, Din), b (Dout,) -> (..., Dout).

    A weight kept as stored (bf16 bits, float16, or int8 with a per-row weight_scale: see
    matmul_stored) is widened inside the product; a float32 / float64 one is used as it is.
    """
    W = p["weight"]
    if W.dtype in STORED_DTYPES:
        y = matmul_stored(x, W, p.get("weight_scale"))
    else:
        y = x @ W.T
    if "bias" in p:
        y += p["bias"]
    return y


# Weights kept as stored (dtype="auto" on a 16-bit checkpoint, load_in_8bit): the checkpoint's
# bytes stay memory-mapped and each product widens them to float32 on the fly. bfloat16 has no
# NumPy dtype: its tensors are kept as their uint16 bit patterns (the top half of a float32), so
# a uint16 weight is bf16 by construction (safetensors' U16 is not a type minblip reads).
STORED_DTYPES = (np.dtype(np.uint16), np.dtype(np.float16), np.dtype(np.int8))


def widen(w, dtype=np.float32, out=None):
    """A weight as stored -> `dtype`, exactly: bf16 bits by a 16-bit shift (bf16 is the top half
    of a float32), float16 and int8 by a cast. A float32 / float64 weight passes through.
    out: a float32 buffer of w's shape to widen into (no allocation)."""
    if out is not None:
        if w.dtype == np.uint16:
            np.left_shift(w, 16, out=out.view(np.uint32), dtype=np.uint32)
        else:
            np.copyto(out, w, casting="unsafe")
        return out
    if w.dtype == np.uint16:
        w = (w.astype(np.uint32) << 16).view(np.float32)
    return w.astype(dtype, copy=False)


def embedding(W, ids):
    """Rows of an embedding table, gathered as stored and then widened (only those rows).

    Shapes: W (V, D), ids (...) -> (..., D) in float32 (or W's dtype when float32 / float64)."""
    rows = W[ids]
    return rows if rows.dtype.kind == "f" and rows.itemsize >= 4 else widen(rows)


def compute_dtype_of(w):
    """The dtype arithmetic on `w` runs in: its own for float32 / float64, else float32."""
    return w.dtype if w.dtype in (np.float32, np.float64) else np.dtype(np.float32)


# float32 rows widened per block. Large: each block is one BLAS call, and many small calls pay
# BLAS's thread hand-off each (docs/kernels.md); 16 MiB against 2 MiB halved a ViT-g fc1 with
# 257 rows (373 -> 178 ms, float32 136 ms). Decode rows go to kernels.matmul_stored instead.
ROW_BLOCK_BYTES = 1 << 24


@has_kernel("matmul_stored")
def matmul_stored(x, W, scale=None):
    """x @ widen(W).T, times a per-output-row scale for int8: the weight is widened one block of
    rows at a time, never whole, so memory holds only the stored bytes plus one block.

    Shapes: x (..., Din), W (Dout, Din) bf16 bits / float16 / int8, scale (Dout,) float32 or
    None -> (..., Dout) in x's dtype. int8: W ~ int8 * scale (symmetric, per output channel);
    the scale multiplies the float32 product, (x @ q.T) * s = x @ (q * s).T up to rounding.
    """
    Dout, Din = W.shape
    y = np.empty((*x.shape[:-1], Dout), x.dtype)
    step = max(1, ROW_BLOCK_BYTES // (4 * Din))
    block = np.empty((min(step, Dout), Din), x.dtype)  # one buffer, reused by every block
    for r in range(0, Dout, step):  # x keeps its shape: BLAS then sums as it does for x @ W.T
        w = widen(W[r : r + step], x.dtype, out=block[: min(step, Dout - r)])
        y[..., r : r + step] = x @ w.T
    if scale is not None:
        y *= scale
    return y


@has_kernel("layer_norm")
def layer_norm(x, p, eps):
    """LayerNorm over the last axis: biased variance, eps inside the sqrt (as torch). (..., D)."""
    mean = x.mean(axis=-1, keepdims=True)
    xc = x - mean
    var = (xc * xc).mean(axis=-1, keepdims=True)
    return xc / np.sqrt(var + eps) * p["weight"] + p["bias"]


_erf = np.frompyfunc(math.erf, 1, 1)  # libm's erf; NumPy has none and SciPy is not a dependency


@has_kernel("gelu")
def gelu(x):
    """Exact GELU, 0.5 x (1 + erf(x / sqrt 2)): torch's default, not GPT-2's tanh approximation."""
    erf = _erf(x / math.sqrt(2.0)).astype(x.dtype)
    return 0.5 * x * (1.0 + erf)


def gelu_tanh(x):
    """GELU, tanh approximation (transformers' gelu_new / gelu_pytorch_tanh)."""
    c = math.sqrt(2.0 / math.pi)
    return 0.5 * x * (1.0 + np.tanh(c * (x + 0.044715 * x**3)))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


ACT2FN = {
    "gelu": gelu,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "quick_gelu": lambda x: x * sigmoid(1.702 * x),
    "relu": lambda x: np.maximum(x, 0),
    "silu": lambda x: x * sigmoid(x),
    "swish": lambda x: x * sigmoid(x),
    "tanh": np.tanh,
    "sigmoid": sigmoid,
}


@has_kernel("softmax")
def softmax(x, axis=-1, out=None):
    """Softmax, max-subtracted for stability (as torch). out=x computes it in place."""
    e = np.subtract(x, x.max(axis=axis, keepdims=True), out=out)
    np.exp(e, out=e)  # in place: one buffer of the scores' size instead of three
    e /= e.sum(axis=axis, keepdims=True)
    return e


def normalize(x, eps=1e-12):
    """torch.nn.functional.normalize: x / max(||x||, eps) along the last axis."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def log_softmax(x, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def split_heads(x, n_heads):
    """(B, T, D) -> (B, H, T, Dh); head j owns features [j*Dh, (j+1)*Dh)."""
    B, T, D = x.shape
    return x.reshape(B, T, n_heads, D // n_heads).transpose(0, 2, 1, 3)  # b t (h dh) -> b h t dh


def merge_heads(x):
    """(B, H, T, Dh) -> (B, T, D)."""
    B, H, T, Dh = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, H * Dh)  # b h t dh -> b t (h dh)


@has_kernel("attention")
def attention(q, k, v, scale, mask=None, return_probs=True, *, divide=False):
    """Scaled dot-product attention: softmax(q kᵀ · scale + mask) v.

    Shapes: q (B, H, T, Dh), k and v (B, H, Tk, Dh) -> context (B, H, T, Dh), probs
    (B, H, T, Tk) or None (return_probs False). mask: additive, broadcastable to (B, H, T, Tk),
    0 where allowed and finfo.min where not. divide=True divides the scores by `scale` instead:
    BERT writes q kᵀ / sqrt(Dh), the ViT and the Q-Former q kᵀ · Dh^-0.5, and transformers keeps
    each (the two round differently unless the scale is a power of two).
    """
    scores = q @ k.swapaxes(-1, -2)  # b h t dh, b h dh tk -> b h t tk
    scores = scores / scale if divide else scores * scale
    if mask is not None:
        scores = scores + mask  # additive finfo.min, never -inf: a fully masked row stays finite
    probs = softmax(scores)
    return probs @ v, probs if return_probs else None  # b h t tk, b h tk dh -> b h t dh


def patch_embed(pixel_values, p, patch):
    """Conv2d(3 -> D, kernel P, stride P) as one matmul over flattened patches.

    Shapes: pixel_values (B, C, Hs, Ws) -> (B, (Hs//P)*(Ws//P), D); a remainder at the right or
    bottom edge is dropped, as a strided convolution without padding drops it.
    Weights: p["weight"] (D, C, P, P), p["bias"] (D,).
    """
    B, C, Hs, Ws = pixel_values.shape
    gh, gw = Hs // patch, Ws // patch
    x = pixel_values[:, :, : gh * patch, : gw * patch]
    x = x.reshape(B, C, gh, patch, gw, patch)  # b c (gh p1) (gw p2)
    # -> b (gh gw) (c p1 p2): each patch flattened in the conv weight's (c, p1, p2) order
    x = x.transpose(0, 2, 4, 1, 3, 5).reshape(B, gh * gw, C * patch * patch)
    W = p["weight"]
    return x @ W.reshape(W.shape[0], -1).T + p["bias"]


def _cubic_taps(n_in, n_out, dtype):
    """torch's bicubic (A = -0.75, align_corners=False) weights of one axis: (n_out, 4), indices."""
    A = dtype.type(-0.75)
    scale = dtype.type(n_in) / dtype.type(n_out)  # torch computes the scale in the op's float type
    src = scale * (np.arange(n_out, dtype=dtype) + dtype.type(0.5)) - dtype.type(0.5)
    i0 = np.floor(src)
    t = src - i0
    # cubic convolution kernel at distances 1+t, t, 1-t, 2-t (Keys 1981, as torch writes it)
    u = 1 - t  # torch forms the right-hand distances from 1 - t, so we do too (same rounding)
    w = np.stack(
        [
            ((A * (t + 1) - 5 * A) * (t + 1) + 8 * A) * (t + 1) - 4 * A,
            ((A + 2) * t - (A + 3)) * t * t + 1,
            ((A + 2) * u - (A + 3)) * u * u + 1,
            ((A * (u + 1) - 5 * A) * (u + 1) + 8 * A) * (u + 1) - 4 * A,
        ],
        axis=-1,
    ).astype(dtype)
    idx = np.clip(i0.astype(np.int64)[:, None] + np.arange(-1, 3), 0, n_in - 1)  # border replicate
    return w, idx


def bicubic_resize(x, n_h, n_w):
    """torch F.interpolate(mode="bicubic", align_corners=False, antialias=False).

    Shapes: x (C, Hin, Win) -> (C, n_h, n_w). Rows are interpolated first along x, then along y,
    in the order torch's CPU kernel sums them.
    """
    wx, ix = _cubic_taps(x.shape[2], n_w, x.dtype)
    wy, iy = _cubic_taps(x.shape[1], n_h, x.dtype)
    rows = x[:, :, ix]  # c hin (n_w 4)
    rows = (
        rows[..., 0] * wx[:, 0]
        + rows[..., 1] * wx[:, 1]
        + rows[..., 2] * wx[:, 2]
        + rows[..., 3] * wx[:, 3]
    )
    cols = rows[:, iy, :]  # c (n_h 4) n_w
    w = wy[:, :, None]
    return (
        cols[:, :, 0] * w[:, 0]
        + cols[:, :, 1] * w[:, 1]
        + cols[:, :, 2] * w[:, 2]
        + cols[:, :, 3] * w[:, 3]
    )
