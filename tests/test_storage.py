"""Weights kept as stored (dtype="auto" on a bf16 / float16 checkpoint): the golden BLIP-2 models
(OPT and T5) saved in 16 bits run with their matrices kept 16-bit and memory-mapped, and give
the outputs of the same 16-bit file loaded widened to float32 (dtype="float32").

Why equal and not merely close: widening is exact (bf16 and float16 are subsets of float32), so
both paths multiply the very same float32 numbers; only the order of BLAS's sums could differ,
and ops.matmul_stored calls BLAS on blocks of whole rows, which leaves each output's dot product
whole. The written bound (KEPT_VS_WIDENED) is kept for BLAS builds that block differently."""

import json
import mmap
import shutil

import numpy as np
import pytest
from golden_utils import case_dirs, load_case, model_dir, output_arrays, unread_tensors

import minblip
from minblip import ops
from minblip.weights import load_flat

CASES = {c.name: c for c in case_dirs("blip2_generation")}
KINDS = ("opt", "t5")
# relative to the output's largest magnitude: float32 sums of a few hundred terms in another
# order, should a BLAS build block the columns differently
KEPT_TWIN_VS_WIDENED = 1e-5  # kernels.matmul_stored reorders each dot product (SIMD lanes)
KEPT_VS_WIDENED = 1e-6  # measured: 0.0 (bit-identical) with this machine's OpenBLAS


def bf16_bits(a):
    """float32 -> bf16 bit patterns, rounded to nearest even (as torch's .to(torch.bfloat16))."""
    u = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def write_safetensors(path, tensors):
    """tensors: {key: array}; uint16 arrays are written as BF16 (numpy has no bfloat16)."""
    names = {np.dtype(np.uint16): "BF16", np.dtype(np.float16): "F16", np.dtype(np.float32): "F32"}
    header, blobs, off = {}, [], 0
    for k, a in tensors.items():
        blob = np.ascontiguousarray(a).tobytes()
        header[k] = {
            "dtype": names[a.dtype],
            "shape": list(a.shape),
            "data_offsets": [off, off + len(blob)],
        }
        blobs.append(blob)
        off += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + b"".join(blobs))


def save_16bit(src, dst, kind):
    """A copy of checkpoint folder src with every floating tensor stored as bf16 or float16."""
    shutil.copytree(src, dst)
    for f in dst.glob("model*.safetensors*"):
        f.unlink()
    flat = load_flat(src)
    to16 = bf16_bits if kind == "bf16" else (lambda a: a.astype(np.float16))
    write_safetensors(dst / "model.safetensors", {k: to16(a) for k, a in flat.items()})
    return dst


def mapped(a):
    """Whether an array's memory is a view of a memory-mapped file (no copy)."""
    while a is not None and not isinstance(a, mmap.mmap):
        a = a.base if isinstance(a, np.ndarray) else getattr(a, "obj", None)
    return isinstance(a, mmap.mmap)


@pytest.fixture(scope="module", params=["bf16", "fp16"])
def stored16(request, tmp_path_factory):
    return request.param, {
        kind: save_16bit(
            model_dir(CASES[f"{kind}_forward"]),
            tmp_path_factory.mktemp(f"{kind}-{request.param}") / "model",
            request.param,
        )
        for kind in KINDS
    }


def _run(model, case):
    meta, inputs, _ = load_case(case)
    call = model if meta["method"] == "forward" else getattr(model, meta["method"])
    return output_arrays(call(**inputs, **meta["kwargs"]))


@pytest.fixture(params=["numpy", "numba"])
def backend(request):
    """numpy: the reference, widened blocks through BLAS (bit-identical to the widened file).
    numba: kernels.matmul_stored for decode rows (its own summation order: KEPT_TWIN_VS_WIDENED).
    """
    before = ops.get_backend()
    ops.set_backend(request.param)
    yield request.param
    ops.set_backend(before)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", ["forward", "generate_beams", "generate_padded_prompts"])
def test_kept_16bit_equals_the_same_file_widened(stored16, backend, kind, case):
    fmt, folders = stored16
    bar = KEPT_VS_WIDENED if backend == "numpy" else KEPT_TWIN_VS_WIDENED
    case = CASES[f"{kind}_{case}"]
    cls = getattr(minblip, load_case(case)[0]["class"])
    widened = cls.from_pretrained(folders[kind], dtype="float32")
    kept = cls.from_pretrained(folders[kind], dtype="auto")
    assert kept.dtype == np.float32
    want, got = _run(widened, case), _run(kept, case)
    assert want.keys() == got.keys()
    for k in want:
        a, b = np.asarray(want[k]), np.asarray(got[k])
        if a.dtype.kind in "iu":  # generated ids: identical
            np.testing.assert_array_equal(b, a, err_msg=f"{fmt} {k}")
        else:
            err = np.abs(a - b).max() / max(np.abs(a).max(), 1e-30)
            assert err <= bar, f"{fmt} {backend} {k}: {err:.2e}"


@pytest.mark.parametrize("kind", KINDS)
def test_kept_matrices_stay_16bit_and_memory_mapped(stored16, kind):
    fmt, folders = stored16
    model = minblip.Blip2ForConditionalGeneration.from_pretrained(folders[kind], dtype="auto")
    flat = load_flat(folders[kind], keep_16bit=True)
    kept = [k for k, a in flat.items() if a.ndim == 2]
    assert kept, "no matrix in the model"
    want = np.uint16 if fmt == "bf16" else np.float16
    for k in kept:
        node = model.params
        for part in k.split("."):
            node = node[int(part)] if isinstance(node, list) else node[part]
        assert node.dtype == want and mapped(node), k


@pytest.mark.parametrize("kind", KINDS)
def test_every_tensor_is_read_when_kept(stored16, kind):
    _, folders = stored16
    case = CASES[f"{kind}_forward"]
    meta, inputs, _ = load_case(case)
    model = minblip.Blip2ForConditionalGeneration.from_pretrained(folders[kind], dtype="auto")
    unread = unread_tensors(model, lambda m: m(**inputs, **meta["kwargs"]))
    assert unread == set(), f"never read: {sorted(unread)}"


def test_loading_kept_weights_does_not_read_them(tmp_path):
    """A 64 MiB bf16 matrix: dtype="auto" maps it and RSS grows by far less than its size
    (widening it on load would add 128 MiB); the product then reads it, a row block at a time."""
    rng = np.random.default_rng(0)
    # bf16 bit patterns drawn directly (sign, exponents 2^-7..2^2): rounding 32M floats is slow
    W = rng.integers(0x3C00, 0x4100, (4096, 8192), dtype=np.uint16)
    W |= rng.integers(0, 2, W.shape, dtype=np.uint16) << np.uint16(15)
    write_safetensors(tmp_path / "m.safetensors", {"w": W})

    def rss():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))

    before = rss()
    flat = load_flat_file(tmp_path / "m.safetensors")
    grown = rss() - before
    assert mapped(flat["w"]) and grown < 8 << 20, grown
    x = rng.standard_normal((2, 8192), dtype=np.float32)
    got = ops.matmul_stored.reference(x, flat["w"])
    np.testing.assert_array_equal(got, x @ ops.widen(flat["w"]).T)


def load_flat_file(path):
    from minblip.weights import load_safetensors

    return load_safetensors(path, keep_16bit=True)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", np.float16])
def test_16bit_compute_is_refused_by_name(dtype):
    with pytest.raises(minblip.InputError, match="dtype"):
        minblip.Blip2ForConditionalGeneration.from_pretrained(
            model_dir(CASES["opt_forward"]), dtype=dtype
        )


def test_auto_on_a_float32_file_is_the_float32_path():
    folder = model_dir(CASES["opt_forward"])
    a = minblip.Blip2ForConditionalGeneration.from_pretrained(folder, dtype="auto")
    b = minblip.Blip2ForConditionalGeneration.from_pretrained(folder)
    w = a.params["language_model"]["model"]["decoder"]["layers"][0]["fc1"]["weight"]
    assert w.dtype == np.float32
    np.testing.assert_array_equal(
        w, b.params["language_model"]["model"]["decoder"]["layers"][0]["fc1"]["weight"]
    )
