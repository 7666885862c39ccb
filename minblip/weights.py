"""Checkpoint I/O: safetensors files -> a read-only nested dict keyed exactly as the checkpoint.

    params = load_params(folder)
    params["vision_model"]["encoder"]["layers"][3]["self_attn"]["qkv"]["weight"]   # (3Dv, Dv)

The only transformations done here: dtype (f16/bf16/f64 -> the compute dtype) and flat keys ->
nested tree (numbered children become lists). Nothing is renamed or transposed. float32 tensors
stay memory-mapped (no copy); every array is read-only, so a function that writes into a weight
fails loudly. No torch, no pickle: a folder with only pytorch_model.bin is refused.
"""

import json
import mmap
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from .errors import CheckpointError

# safetensors dtype tags -> numpy (BF16 has no numpy type: read as uint16, widened below)
_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
_MAX_HEADER = 100 * 2**20


def read_header(path):
    """Parse a safetensors header. Returns (entries, data_start, file_size)."""
    path = pathlib.Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or n > min(_MAX_HEADER, size - 8):
                raise CheckpointError(
                    f"{path}: not a safetensors file "
                    f"(header length field {n} in a {size}-byte file)"
                )
            raw = f.read(n)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: weights file not found") from None
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: safetensors header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    data_start, data_len = 8 + n, size - 8 - n
    for key, e in header.items():
        try:
            dtype, shape, (begin, end) = e["dtype"], tuple(e["shape"]), e["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise CheckpointError(f"{path}: malformed header entry for {key!r}: {e!r}") from None
        if dtype not in _DTYPES:
            raise CheckpointError(f"{path}: tensor {key!r} has unsupported dtype {dtype!r}")
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(_DTYPES[dtype]).itemsize
        if not (0 <= begin <= end and end - begin == nbytes):
            raise CheckpointError(
                f"{path}: tensor {key!r} {dtype}{list(shape)} has data_offsets {[begin, end]}, "
                f"which do not hold {nbytes} bytes"
            )
        if end > data_len:
            raise CheckpointError(
                f"{path}: file is truncated: tensor {key!r} ends at byte {data_start + end} "
                f"but the file has {size} bytes"
            )
    return header, data_start, size


def load_safetensors(path, dtype=np.float32):
    """Flat {key: read-only array}. Floating tensors come out in `dtype`; integers as stored."""
    header, data_start, size = read_header(path)
    if not header:
        return {}
    with open(path, "rb") as f:
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    out = {}
    for key, e in header.items():
        begin, end = e["data_offsets"]
        raw = np.frombuffer(buf, np.uint8, end - begin, data_start + begin)
        a = raw.view(_DTYPES[e["dtype"]]).reshape(e["shape"])
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
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{index}: not a valid shard index ({e!r})") from None
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (folder / s).exists()]
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


def load_flat(folder, dtype=np.float32):
    """Every tensor of a checkpoint folder, flat and keyed as stored."""
    files, weight_map = weight_files(folder)
    flat = {}
    for path in files:
        part = load_safetensors(path, dtype)
        if weight_map is not None:
            stray = [k for k in part if weight_map.get(k) != path.name]
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


def check_params(flat, expected, where, optional=(), ignore=lambda key: False):
    """Refuse a checkpoint whose tensors are missing, extra, misshapen or not floating point.

    expected: {key: shape} for the model's parameters; optional: keys that may be absent (tied
    copies); ignore(key): leftovers to accept and drop (e.g. persistent position_ids buffers).
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
            if a.dtype.kind != "f":
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
