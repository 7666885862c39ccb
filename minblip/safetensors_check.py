"""Checkpoint validation: safetensors headers and shard indexes, checked before any tensor is read.

Every rule the safetensors library itself enforces (safetensors 0.x `Metadata::validate`), so a
file minblip accepts is one safetensors accepts, with the same tensors:

* the first 8 bytes give the header length N (little-endian u64), 2 <= N <= 16 MiB and 8 + N
  within the file; the header is UTF-8 JSON, an object, with no key given twice;
* `__metadata__` (optional) is null or an object of string -> string;
* every other entry is an object with `dtype` a known tag, `shape` a list of ints >= 0 (at most
  64 of them: NumPy's limit), `data_offsets` two ints [begin, end] with begin <= end;
* end - begin == prod(shape) * itemsize, in exact integer arithmetic (no 64-bit overflow);
* the tensors tile the data section: sorted by offsets, each begins where the previous ends,
  the first at 0, the last at the end of the file (safetensors: "invalid offset" for a gap or an
  overlap -- two tensors on the same bytes included -- and "file not fully covered" for trailing
  bytes).

Shard indexes (model.safetensors.index.json, as transformers writes them): a JSON object whose
`weight_map` is an object of tensor name -> shard file name; shard names are relative paths
inside the checkpoint folder (subfolders allowed, as transformers allows them), never absolute,
never with a `..` part.

`weights.load_flat` (hence every from_pretrained) and `minblip info` read headers and indexes
only through this module.
"""

import json
import pathlib

import numpy as np

from .errors import CheckpointError

# safetensors dtype tags -> numpy (BF16 has no numpy type: read as uint16, widened by the loader).
# Tags safetensors knows but minblip does not read (U16, U32, U64, F8_*) are refused by name.
DTYPES = {
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
# safetensors allows 100 MiB; parsing that much JSON takes ~800 MiB and ~30 s in Python. The
# largest BLIP-2 header is ~200 KiB (and a 10,000-tensor LLM shard's ~2 MiB): 16 MiB is ample.
MAX_HEADER_BYTES = 16 * 2**20
MAX_INDEX_BYTES = 16 * 2**20  # a shard index is a few hundred KiB at most
MAX_DIMS = 64  # numpy.ndarray's limit on the number of axes
_U64 = 2**64  # safetensors reads shape entries and offsets as u64 (usize)


def read_header(path):
    """Read and validate the header of a safetensors file -> (entries, data_start, file_size).

    entries: {name: {"dtype", "shape" (list of int), "data_offsets" [begin, end]}} in file
    order, `__metadata__` removed; offsets are relative to data_start. Nothing else is read.
    """
    path = pathlib.Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or n > min(MAX_HEADER_BYTES, size - 8):
                raise CheckpointError(
                    f"{path}: not a safetensors file "
                    f"(header length field {n} in a {size}-byte file"
                    + (f"; the limit is {MAX_HEADER_BYTES} bytes)" if n > MAX_HEADER_BYTES else ")")
                )
            raw = f.read(n)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: weights file not found") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a folder, not a safetensors file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None
    entries = parse_header(raw, path, size - 8 - n)
    return entries, 8 + n, size


def parse_header(raw, path, data_len):
    """Validate the JSON header bytes of a file whose data section holds data_len bytes."""
    header = _load_json(raw, path, "safetensors header")
    if not isinstance(header, dict):
        raise CheckpointError(
            f"{path}: safetensors header is not a JSON object (got {type(header).__name__})"
        )
    meta = header.pop("__metadata__", None)
    if meta is not None and not (
        isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())
    ):
        raise CheckpointError(
            f"{path}: safetensors __metadata__ must be an object of strings, got {_short(meta)}"
        )
    for key, e in header.items():
        _check_entry(path, key, e)
    _check_tiling(path, header, data_len)
    return header


def _check_entry(path, key, e):
    where = f"{path}: tensor {key!r}"
    if not isinstance(e, dict) or not {"dtype", "shape", "data_offsets"} <= set(e):
        raise CheckpointError(
            f"{where}: header entry must be an object with dtype, shape and data_offsets, "
            f"got {_short(e)}"
        )
    dtype, shape, offsets = e["dtype"], e["shape"], e["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise CheckpointError(
            f"{where}: unsupported dtype {_short(dtype)}; minblip reads {sorted(DTYPES)}"
        )
    if not isinstance(shape, list) or not all(_is_u64(s) for s in shape):
        raise CheckpointError(
            f"{where}: shape must be a list of integers >= 0, got {_short(shape)}"
        )
    if len(shape) > MAX_DIMS:
        raise CheckpointError(f"{where}: shape has {len(shape)} dimensions; at most {MAX_DIMS}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_u64, offsets))):
        raise CheckpointError(
            f"{where}: data_offsets must be two integers [begin, end] >= 0, got {_short(offsets)}"
        )
    begin, end = offsets
    if begin > end:
        raise CheckpointError(f"{where}: data_offsets {offsets} end before they begin")
    nbytes = np.dtype(DTYPES[dtype]).itemsize
    for s in shape:  # exact: Python ints do not overflow (safetensors uses checked_mul)
        nbytes *= s
        if nbytes >= _U64:
            raise CheckpointError(
                f"{where}: shape {shape} of {dtype} is more than 2**64 bytes (overflow)"
            )
    if end - begin != nbytes:
        raise CheckpointError(
            f"{where}: {dtype}{shape} needs {nbytes} bytes but data_offsets {offsets} "
            f"span {end - begin}"
        )


def _check_tiling(path, header, data_len):
    """Tensors must cover the data section exactly, back to back, as safetensors requires."""
    at = 0
    for key, e in sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"])):
        begin, end = e["data_offsets"]
        if begin != at:
            what = "overlaps the tensor before it" if begin < at else f"leaves a gap at byte {at}"
            raise CheckpointError(
                f"{path}: tensor {key!r} has data_offsets {[begin, end]}: it {what} "
                "(invalid offset: tensors must be stored back to back, each on its own bytes)"
            )
        at = end
    if at > data_len:
        raise CheckpointError(
            f"{path}: file is truncated: its tensors need {at} bytes of data but the file "
            f"holds {data_len} after the header"
        )
    if at < data_len:
        raise CheckpointError(
            f"{path}: {data_len - at} trailing bytes after the last tensor "
            "(file not fully covered by its header)"
        )


# ----------------------------------------------------------------------------- shard index


def read_index(path):
    """Read and validate model.safetensors.index.json -> {tensor name: shard name}.

    Shard names come back normalised ("./a/b.safetensors" -> "a/b.safetensors"); each names a
    file inside the index's folder."""
    path = pathlib.Path(path)
    try:
        if path.stat().st_size > MAX_INDEX_BYTES:
            raise CheckpointError(
                f"{path}: shard index is {path.stat().st_size} bytes; the limit is "
                f"{MAX_INDEX_BYTES}"
            )
        raw = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None
    index = _load_json(raw, path, "shard index")
    if not isinstance(index, dict) or "weight_map" not in index:
        raise CheckpointError(f"{path}: not a shard index (a JSON object with a weight_map)")
    weight_map = index["weight_map"]
    if not isinstance(weight_map, dict):
        raise CheckpointError(
            f"{path}: weight_map must be an object of tensor name -> shard file, "
            f"got {_short(weight_map)}"
        )
    out = {}
    for key, shard in weight_map.items():
        if not isinstance(shard, str):
            raise CheckpointError(
                f"{path}: weight_map[{key!r}] must be a shard file name, got {_short(shard)}"
            )
        out[key] = shard_name(path, key, shard)
    return out


def shard_name(index_path, key, shard):
    """A shard path relative to the checkpoint folder; absolute paths and `..` are refused."""
    p = pathlib.PurePosixPath(shard)
    if not shard or "\0" in shard or "\\" in shard or p.is_absolute() or ".." in p.parts:
        raise CheckpointError(
            f"{index_path}: weight_map[{key!r}] = {shard!r} is not a file inside the checkpoint "
            "folder (shard names must be relative, without '..')"
        )
    if str(p) == ".":
        raise CheckpointError(f"{index_path}: weight_map[{key!r}] = {shard!r} names no file")
    return str(p)


# ----------------------------------------------------------------------------- helpers


def _load_json(raw, path, what):
    """JSON with duplicate keys refused at every level (json.loads would keep the last)."""
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except _Duplicate as e:
        raise CheckpointError(f"{path}: {what} has the key {e.args[0]!r} twice") from None
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError, and ints over 4300 digits
        raise CheckpointError(f"{path}: {what} is not valid JSON ({e})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: {what} is nested too deeply") from None


class _Duplicate(Exception):
    pass


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise _Duplicate(k)
        out[k] = v
    return out


def _is_u64(x):
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < _U64


def _short(x, n=80):
    s = repr(x)
    return s if len(s) <= n else s[: n - 3] + "..."
