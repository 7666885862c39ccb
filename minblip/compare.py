"""Trace files and their comparison: the tools behind `minblip trace` and `minblip compare`.

A trace is one model call with every module's output recorded under transformers' module path
(minblip.trace.record() on our side, forward hooks in tools/trace_transformers.py on the other),
saved as an .npz that needs no pickle:

    __meta__            a 0-d string array holding JSON: {"format": "minblip-trace/1",
                        "producer", "model", "class", "config_sha256", "dtype", "order"
                        (module paths in the order their outputs were produced, then the
                        out.* fields), "inputs" (names)}
    inputs/<name>       the call's arrays (pixel_values, input_ids, attention_mask, ...)
    modules/<path>      each module's output; out.<field> for the call's own outputs

compare_traces walks the first trace's order and stops at the first module whose maximum
absolute error against the second exceeds atol: in a forward pass everything after a wrong
module is wrong too, so the first is the one to look at (llm.c's debug-state method).
"""

import hashlib
import json
import pathlib
import zipfile

import numpy as np

from .errors import InputError

FORMAT = "minblip-trace/1"
# Inputs of two traces must agree to this much: transformers' and minblip's image preprocessing
# agree to ~1e-6 (tests/test_preprocess.py); a bigger gap means another photo or another size.
INPUT_ATOL = 1e-4


def config_sha256(folder):
    """sha256 of a checkpoint folder's config.json bytes: two traces of one model share it."""
    return hashlib.sha256((pathlib.Path(folder) / "config.json").read_bytes()).hexdigest()


def save_trace(path, meta, inputs, modules):
    """Write a trace file. meta: the JSON fields above (format and order are filled in);
    inputs / modules: {name: array}, modules in forward order."""
    meta = {**meta, "format": FORMAT, "order": list(modules), "inputs": list(inputs)}
    arrays = {"__meta__": np.array(json.dumps(meta))}
    arrays.update({f"inputs/{k}": np.asarray(v) for k, v in inputs.items()})
    arrays.update({f"modules/{k}": np.asarray(v) for k, v in modules.items()})
    with open(path, "wb") as f:  # a file object: np.savez would append .npz to a bare name
        np.savez(f, **arrays)


def load_trace(path):
    """(meta, inputs, modules) of a trace file; InputError when it is not one."""
    path = pathlib.Path(path)
    expected = (
        "expected an .npz written by `minblip trace` or tools/trace_transformers.py "
        f"(with a __meta__ entry of format {FORMAT})"
    )
    if not path.is_file():
        raise InputError(f"{path}: no such trace file ({expected})")
    try:
        with np.load(path, allow_pickle=False) as f:
            names = f.files
            if "__meta__" not in names:
                raise InputError(
                    f"{path} is not a trace file: it has no __meta__ entry; {expected}"
                )
            meta = json.loads(str(f["__meta__"]))
            inputs = {n[7:]: f[n] for n in names if n.startswith("inputs/")}
            modules = {n[8:]: f[n] for n in names if n.startswith("modules/")}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"{path} is not a trace file ({e}); {expected}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise InputError(f"{path}: trace format {got!r}, {expected}")
    missing = [k for k in meta.get("order", []) if k not in modules]
    if missing:
        raise InputError(f"{path}: __meta__ order names {missing[0]!r}, which the file lacks")
    return meta, inputs, modules


def check_same_call(a, b, names=("A", "B")):
    """InputError unless the two traces (meta, inputs, modules) ran one model on one input."""
    (ma, ia, _), (mb, ib, _) = a, b
    na, nb = names
    if ma.get("class") != mb.get("class"):
        raise InputError(
            f"traces of different models: {na} ran {ma.get('class')} ({ma.get('model')}), "
            f"{nb} ran {mb.get('class')} ({mb.get('model')})"
        )
    ha, hb = ma.get("config_sha256"), mb.get("config_sha256")
    if ha and hb and ha != hb:
        raise InputError(
            f"traces of different models: the config.json of {na} ({ma.get('model')}) and of "
            f"{nb} ({mb.get('model')}) differ (sha256 {ha[:12]} vs {hb[:12]})"
        )
    if set(ia) != set(ib):
        raise InputError(
            f"traces of different inputs: {na} has {sorted(ia)}, {nb} has {sorted(ib)}"
        )
    for name in ia:
        x, y = ia[name], ib[name]
        if x.shape != y.shape:
            raise InputError(
                f"traces of different inputs: {name} is {x.shape} in {na}, {y.shape} in {nb}"
            )
        same = np.allclose(x, y, rtol=0, atol=INPUT_ATOL) if x.size else True
        if not same:
            gap = float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64))))
            raise InputError(
                f"traces of different inputs: {name} differs by up to {gap:.3g} between {na} "
                f"and {nb} (allowed {INPUT_ATOL}); trace both with the same --inputs file"
            )


def compare_traces(a, b, atol=1e-4):
    """Rows {"key", "shape", "max_abs", "max_rel", "ok"} in A's forward order, ending at the
    first module beyond atol (max abs error) or missing from B. max_rel is max_abs over B's
    largest magnitude in that module (a scale for the error, not a criterion).
    a, b: (meta, inputs, modules) as load_trace returns."""
    check_same_call(a, b)
    (ma, _, xa), (_, _, xb) = a, b
    rows = []
    for key in ma["order"]:
        if key not in xb:
            rows.append({"key": key, "shape": xa[key].shape, "missing": True, "ok": False})
            return rows
        x = xa[key].astype(np.float64)
        y = xb[key].astype(np.float64)
        if x.shape != y.shape:
            rows.append({"key": key, "shape": x.shape, "other_shape": y.shape, "ok": False})
            return rows
        err = float(np.max(np.abs(x - y))) if x.size else 0.0
        scale = float(np.max(np.abs(y))) if y.size else 0.0
        ok = err <= atol  # a NaN error fails too
        rows.append(
            {
                "key": key,
                "shape": x.shape,
                "max_abs": err,
                "max_rel": err / scale if scale > 0 else (0.0 if err == 0 else float("inf")),
                "ok": ok,
            }
        )
        if not ok:
            return rows
    return rows


def format_rows(rows, atol):
    """The lines `minblip compare` prints, ending with a verdict line naming the culprit."""
    w = max([len(r["key"]) for r in rows] + [6])
    lines = [f"{'module':<{w}} {'shape':<14} {'max abs':>10} {'max rel':>10}"]
    for r in rows:
        shape = "x".join(map(str, r["shape"]))
        if r.get("missing"):
            lines.append(f"{r['key']:<{w}} {shape:<14} {'missing in B':>21}")
        elif "other_shape" in r:
            other = "x".join(map(str, r["other_shape"]))
            lines.append(f"{r['key']:<{w}} {shape:<14} B has shape {other}")
        else:
            mark = "" if r["ok"] else "  <-- beyond atol"
            lines.append(
                f"{r['key']:<{w}} {shape:<14} {r['max_abs']:>10.3g} {r['max_rel']:>10.3g}{mark}"
            )
    last = rows[-1] if rows else None
    if last is None or last["ok"]:
        lines.append(f"all {len(rows)} modules agree within atol {atol:g}")
    elif last.get("missing"):
        lines.append(f"FIRST DIVERGENCE: {last['key']} was recorded in A but not in B")
    elif "other_shape" in last:
        lines.append(f"FIRST DIVERGENCE: {last['key']} has another shape in B")
    else:
        lines.append(
            f"FIRST DIVERGENCE: {last['key']} (max abs {last['max_abs']:.3g} > atol {atol:g}; "
            f"module #{len(rows)} in forward order)"
        )
    return lines


# ----------------------------------------------------------------------------- minblip's side


def flatten_output(out, prefix="out"):
    """{"out.<field>[.<i>]": array} of a call's result, named as tools/golden_common names
    transformers' (tuples numbered, None fields left out)."""
    flat = {}
    if isinstance(out, (np.ndarray, np.generic)):  # a loss is a NumPy scalar
        flat[prefix] = np.asarray(out)
    elif isinstance(out, dict):
        for field, value in out.items():
            flat.update(flatten_output(value, f"{prefix}.{field}"))
    elif isinstance(out, (tuple, list)):
        for i, value in enumerate(out):
            flat.update(flatten_output(value, f"{prefix}.{i}"))
    return flat


def read_inputs(path):
    """The arrays of an inputs file: a trace's inputs/ entries, or every array of a plain .npz
    (such as a golden case's inputs.npz)."""
    path = pathlib.Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            names = f.files
            if "__meta__" in names:
                return {n[7:]: f[n] for n in names if n.startswith("inputs/")}
            return {n: f[n] for n in names}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"--inputs {path}: not an .npz of input arrays ({e})") from None


def model_class(folder):
    """The minblip class named by config.json's architectures (its first entry)."""
    import minblip

    from .config import read_json

    cfg = read_json(pathlib.Path(folder) / "config.json")
    archs = cfg.get("architectures") or []
    name = archs[0] if archs else None
    cls = getattr(minblip, name, None) if name else None
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise InputError(
            f"{folder}/config.json: architectures {archs!r} names no minblip model class; "
            "trace needs a checkpoint whose config.json says which class it is "
            "(e.g. BlipForConditionalGeneration)"
        )
    return cls


def make_inputs(folder, cls, image, text):
    """The call's arrays for one photo (and text) through the checkpoint's own processor. A
    folder without preprocessor_config.json gets its images sized to the model's image_size
    (the processor's class default, 384 or 224, fits only the full-size checkpoints)."""
    from .config import load_config
    from .preprocess import BlipImageProcessor
    from .processing import Blip2Processor, BlipProcessor

    folder = pathlib.Path(folder)
    cfg = load_config(folder)
    side = getattr(getattr(cfg, "vision_config", cfg), "image_size", None)
    sized = (
        {}
        if (folder / "preprocessor_config.json").is_file() or side is None
        else {"size": {"height": side, "width": side}}
    )
    if "Vision" in cls.__name__:  # vision towers take pixels only: no tokenizer needed
        return dict(BlipImageProcessor.from_pretrained(folder)(image, **sized))
    kind = Blip2Processor if cls.__name__.startswith("Blip2") else BlipProcessor
    processor = kind.from_pretrained(folder)
    return dict(processor(images=image, text="" if text is None else text, **sized))


def run_trace(model, image=None, text=None, inputs=None, dtype="float32"):
    """Trace one forward call of a checkpoint (folder or hub id) with minblip.

    inputs: {name: array} to call with as given, or None to make them from image (and text)
    with the checkpoint's processor. Returns (meta, inputs, modules) for save_trace.
    """
    from .hub import resolve
    from .trace import record

    folder = resolve(model)
    cls = model_class(folder)
    if inputs is None:
        if image is None:
            raise InputError("trace needs an IMAGE or --inputs FILE")
        inputs = make_inputs(folder, cls, image, text)
    loaded = cls.from_pretrained(folder, dtype=dtype)
    with record() as acts:
        out = loaded(**inputs)
    modules = dict(acts)
    modules.update(flatten_output(out))
    meta = {
        "producer": "minblip",
        "model": str(model),
        "class": cls.__name__,
        "config_sha256": config_sha256(folder),
        "dtype": dtype,
    }
    return meta, {k: np.asarray(v) for k, v in inputs.items()}, modules
