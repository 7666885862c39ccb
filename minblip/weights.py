"""Checkpoint I/O: safetensors files -> a read-only nested dict keyed exactly as the checkpoint.

    params = load_params(folder)
    params["vision_model"]["encoder"]["layers"][3]["self_attn"]["qkv"]["weight"]   # (3Dv, Dv)

The only transformations done here: dtype (f16/bf16/f64 -> the compute dtype) and flat keys ->
nested tree (numbered children become lists). Nothing is renamed or transposed. float32 tensors
stay memory-mapped (no copy); every array is read-only, so a function that writes into a weight
fails loudly. No torch, no pickle: a folder with only pytorch_model.bin is refused.
"""

import mmap
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from .errors import CheckpointError
from .ops import STORED_DTYPES
from .safetensors_check import DTYPES, read_header, read_index  # noqa: F401 (read_header: API)


def load_safetensors(path, dtype=np.float32, keep_16bit=False):
    """Flat {key: read-only array}. Floating tensors come out in `dtype`; integers as stored.

    keep_16bit: bf16 / float16 matrices (2-D: the Linear weights and embedding tables, nearly
    all the bytes) stay as stored and memory-mapped, bf16 as its uint16 bits (ops.widen); the
    rest (vectors, conv kernels, 3-D embeddings: small) is widened to `dtype` as usual."""
    header, data_start, size = read_header(path)
    if not header:
        return {}
    with open(path, "rb") as f:
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    out = {}
    for key, e in header.items():
        begin, end = e["data_offsets"]
        raw = np.frombuffer(buf, np.uint8, end - begin, data_start + begin)
        a = raw.view(DTYPES[e["dtype"]]).reshape(e["shape"])
        if keep_16bit and e["dtype"] in ("BF16", "F16") and a.ndim == 2:
            a.flags.writeable = False
            out[key] = a  # a view of the mapped file: no copy
            continue
        if e["dtype"] == "BF16":  # bfloat16 is the top half of a float32: widen by a 16-bit shift
            a = (a.astype(np.uint32) << 16).view(np.float32)
        if a.dtype.kind == "f" and a.dtype != dtype:
            a = a.astype(dtype)
        a.flags.writeable = False
        out[key] = a
    return out


def weight_files(folder):
    """The safetensors files of a checkpoint folder (one file, or the shards of an index)."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder not found")
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.exists():
        return [single], None
    if index.exists():
        weight_map = read_index(index)  # validated: names relative, inside the folder
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise CheckpointError(f"{index}: shard file(s) missing from {folder}: {missing}")
        return [folder / s for s in shards], weight_map
    if (folder / "pytorch_model.bin").exists():
        raise CheckpointError(
            f"{folder}: only pytorch_model.bin (a pickle) is present; minblip reads safetensors "
            "only. Convert it once elsewhere with transformers: "
            "model.save_pretrained(dir, safe_serialization=True)"
        )
    raise CheckpointError(f"{folder}: no model.safetensors or model.safetensors.index.json")


def load_flat(folder, dtype=np.float32, keep_16bit=False):
    """Every tensor of a checkpoint folder, flat and keyed as stored."""
    files, weight_map = weight_files(folder)
    flat = {}
    for path in files:
        part = load_safetensors(path, dtype, keep_16bit)
        if weight_map is not None:  # each tensor must be where the index says (no duplicates)
            name = path.relative_to(folder).as_posix()
            stray = [k for k in part if weight_map.get(k) != name]
            if stray:
                raise CheckpointError(f"{path}: holds {stray[:3]} that the index puts elsewhere")
        flat.update(part)
    if weight_map is not None:
        absent = sorted(set(weight_map) - set(flat))
        if absent:
            raise CheckpointError(f"{folder}: the index lists tensors no shard holds: {absent[:5]}")
    return flat


def to_tree(flat):
    """{"a.b.0.c": x} -> {"a": {"b": [{"c": x}]}}: numbered children become lists."""
    tree = {}
    for key, value in flat.items():
        node, parts = tree, key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise CheckpointError(f"checkpoint key {key!r} nests under a tensor")
        if isinstance(node.get(parts[-1]), dict):
            raise CheckpointError(f"checkpoint key {key!r} is both a tensor and a module")
        node[parts[-1]] = value

    def listify(node):
        if not isinstance(node, dict):
            return node
        node = {k: listify(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            idx = sorted(int(k) for k in node)
            if idx != list(range(len(idx))):
                raise CheckpointError(f"checkpoint layer indices are not 0..n-1: {idx}")
            return [node[str(i)] for i in idx]
        return node

    return listify(tree)


def release(node):
    """Drop this process's mapping of the checkpoint pages under `node` (a params subtree), as
    madvise(MADV_DONTNEED) does: the values are unchanged (the pages stay in the kernel's page
    cache and map back on the next read), but they leave the process's resident set. Returns
    the bytes released.

    Why: a BLIP-2 caption reads the vision tower and Q-Former once, before the language model
    runs; dropping their pages then lowers the peak RSS by their size (int8 blip2-opt-2.7b:
    4.73 -> 3.29 GB, docs/quantization.md). Only arrays that are views of a mapped file are
    touched: a widened copy (float16 / bf16 / float64 loads) is the process's own memory, which
    MADV_DONTNEED would zero. Nothing is released where the platform has no MADV_DONTNEED."""
    if not hasattr(mmap, "MADV_DONTNEED") or not isinstance(node, (dict, list)):
        return 0  # a KeyTracker (tests) is left alone: walking it would count every key as read
    released = 0
    for a in _arrays(node):
        base = a
        while isinstance(base, np.ndarray):
            base = base.base
        if not (isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)):
            continue
        offset = a.ctypes.data - np.frombuffer(base, np.uint8).ctypes.data
        lo = -(-offset // mmap.PAGESIZE) * mmap.PAGESIZE  # whole pages inside the array only
        hi = (offset + a.nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
        if hi > lo:
            base.obj.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
            released += hi - lo
    return released


def _arrays(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from _arrays(v)
    elif isinstance(node, list):
        for v in node:
            yield from _arrays(v)
    elif isinstance(node, np.ndarray):
        yield node


def check_params(flat, expected, where, optional=(), ignore=lambda key: False, stored=()):
    """Refuse a checkpoint whose tensors are missing, extra, misshapen or not floating point.

    expected: {key: shape} for the model's parameters; optional: keys that may be absent (tied
    copies); ignore(key): leftovers to accept and drop (e.g. persistent position_ids buffers);
    stored: keys that may be kept as stored (bf16 bits, float16, int8: ops.STORED_DTYPES).
    """
    missing = [k for k in expected if k not in flat and k not in optional]
    if missing:
        raise CheckpointError(f"{where}: missing weight(s) {missing[:5]}" + _more(missing))
    extra = [k for k in flat if k not in expected and not ignore(k)]
    if extra:
        raise CheckpointError(f"{where}: unexpected weight(s) {extra[:5]}" + _more(extra))
    for k, shape in expected.items():
        if k in flat:
            a = flat[k]
            if a.dtype.kind != "f" and not (k in stored and a.dtype in STORED_DTYPES):
                raise CheckpointError(
                    f"{where}: weight {k!r} has dtype {a.dtype}, expected floating point"
                )
            if tuple(a.shape) != tuple(shape):
                raise CheckpointError(
                    f"{where}: weight {k!r} has shape {tuple(a.shape)}, expected {tuple(shape)}"
                )


def _more(keys):
    return f" and {len(keys) - 5} more" if len(keys) > 5 else ""


def is_buffer(key):
    """Leftover buffers some files carry (4.2x-era persistent position_ids): accepted, unused."""
    return key.endswith("position_ids")


# ----------------------------------------------------------------------------- key tracking


class KeyTracker(Mapping):
    """A read-only view of a params tree that records the path of every tensor read.

    Used by tests to prove that a forward pass reads every checkpoint tensor.
    """

    def __init__(self, node, path="", reads=None):
        self._node, self._path = node, path
        self.reads = set() if reads is None else reads

    def _wrap(self, value, path):
        if isinstance(value, np.ndarray):
            self.reads.add(path)
            return value
        if isinstance(value, dict):
            return KeyTracker(value, path + ".", self.reads)
        return _TrackedList(value, path + ".", self)

    def __getitem__(self, key):
        return self._wrap(self._node[key], self._path + key)

    def __iter__(self):
        return iter(self._node)

    def __len__(self):
        return len(self._node)


class _TrackedList(Sequence):
    def __init__(self, items, path, tracker):
        self._items, self._path, self._tracker = items, path, tracker

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self._items))[i]
        return self._tracker._wrap(self._items[i], f"{self._path}{i}")

    def __len__(self):
        return len(self._items)
