"""Reading golden cases and comparing traces against them (see golden/FORMAT.md).

No torch, no transformers: everything here reads the files tools/make_golden.py wrote.

    meta, inputs, outputs = load_case(GOLDEN / "vision" / "tiny_b1")
    with trace.record() as acts:
        out = model(**inputs, **meta["kwargs"])
    acts.update(output_arrays(out))
    assert_trace_close(outputs, acts, meta["order"] + meta["outputs"], atol=1e-5, rtol=1e-4)
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from minblip.testing import generated_inputs, materialize

GOLDEN = Path(__file__).resolve().parent.parent / "golden"


def load_case(case_dir):
    """(meta dict, {input name: array}, {output key: array}) of one golden case folder.

    Inputs listed in meta["generated_inputs"] (large random pixel arrays of full-size cases) are
    rebuilt from their seed and checked against their sha256 (minblip.testing.generated_inputs).
    """
    case_dir = Path(case_dir)
    meta = json.loads((case_dir / "meta.json").read_text())
    with np.load(case_dir / "inputs.npz") as f:
        inputs = {k: f[k] for k in f.files}
    inputs.update(generated_inputs(meta))
    with np.load(case_dir / "outputs.npz") as f:
        outputs = {k: f[k] for k in f.files}
    return meta, inputs, outputs


def tiny_blip_captioner(folder):
    """The tiny BLIP captioning folder (golden caption/forward_labels) copied to folder, with the
    BLIP tokenizer beside it: a model the CLI can caption with. Returns folder."""
    shutil.copytree(GOLDEN / "caption" / "forward_labels" / "model", folder)
    for f in (GOLDEN / "tokenizer" / "blip").iterdir():
        if f.is_file():
            shutil.copy(f, folder / f.name)
    return folder


def case_dirs(group):
    """Every case folder of golden/<group>/, sorted by name (for pytest parametrisation)."""
    return sorted(p for p in (GOLDEN / group).iterdir() if (p / "meta.json").is_file())


def model_dir(case_dir):
    """The folder to load a case's model from: meta["model_dir"] when a case reuses another
    case's model; case_dir/model for tiny cases; for full-size cases (weights.json) a cache
    folder that minblip.testing.materialize fills once and then reuses. The cache lives under
    $MINBLIP_GOLDEN_CACHE, else the system temp dir."""
    case_dir = Path(case_dir)
    meta = json.loads((case_dir / "meta.json").read_text())
    if "model_dir" in meta:  # a case sharing another case's model folder (relative path)
        target = (case_dir / meta["model_dir"]).resolve()
        if (target.parent / "weights.json").is_file():  # a full-size case: materialize it once
            return model_dir(target.parent)
        return target
    if not (case_dir / "weights.json").is_file():
        return case_dir / "model"
    cache = Path(
        os.environ.get("MINBLIP_GOLDEN_CACHE", Path(tempfile.gettempdir()) / "minblip-golden")
    )
    return materialize(case_dir, cache / case_dir.parent.name / case_dir.name)


def output_arrays(out, prefix="out"):
    """{"out.<field>[.<i>]": array} for a minblip output (ModelOutput / dict, tuple or array),
    the way golden_common.flatten_output names transformers' outputs. None fields are skipped."""
    flat = {}
    if isinstance(out, dict):
        for field, value in out.items():
            flat.update(output_arrays(value, f"{prefix}.{field}"))
    elif isinstance(out, (tuple, list)):
        for i, value in enumerate(out):
            flat.update(output_arrays(value, f"{prefix}.{i}"))
    elif out is not None:
        flat[prefix] = np.asarray(out)
    return flat


def _preview(a, n=5):
    return np.array2string(np.ravel(a)[:n], precision=6, separator=", ")


def compare(name, expected, actual, atol, rtol):
    """None if actual matches expected (same shape, |a - e| <= atol + rtol |e| everywhere, NaN
    where expected is NaN), else a message with max abs / max rel error and the first values."""
    expected, actual = np.asarray(expected), np.asarray(actual)
    if expected.shape != actual.shape:
        return f"{name}: shape {actual.shape}, expected {expected.shape}"
    if expected.dtype.kind in "biu" or actual.dtype.kind in "biu":
        if np.array_equal(expected, actual):
            return None
        where = tuple(int(i) for i in np.argwhere(expected != actual)[0])
        return (
            f"{name}: integer values differ first at index {where}\n"
            f"  expected {_preview(expected, 10)}\n  actual   {_preview(actual, 10)}"
        )
    e, a = expected.astype(np.float64), actual.astype(np.float64)
    if np.allclose(a, e, atol=atol, rtol=rtol, equal_nan=True):
        return None
    err = np.abs(a - e)
    err = np.where(np.isnan(err), np.inf, err)
    rel = err / np.maximum(np.abs(e), np.finfo(np.float64).tiny)
    worst = np.unravel_index(np.argmax(err - rtol * np.abs(e)), e.shape)
    return (
        f"{name}: max abs err {err.max():.3g}, max rel err {rel.max():.3g} "
        f"(atol {atol:g}, rtol {rtol:g}); worst at index {tuple(int(i) for i in worst)}: "
        f"expected {e[worst]:.7g}, actual {a[worst]:.7g}\n"
        f"  expected {_preview(e)}\n  actual   {_preview(a)}"
    )


def assert_trace_close(expected, actual, order, atol, rtol, what=""):
    """Walk `order` (module paths in call order, then output keys) and raise AssertionError at the
    FIRST key whose actual value diverges from the golden one, or that actual does not have: a
    recorded module the implementation does not tap is a failure, not a skip. Keys of actual
    beyond order are ignored."""
    label = f"{what}: " if what else ""
    for i, key in enumerate(order):
        if key not in actual:
            taps = ", ".join(list(actual)[:8]) + (", ..." if len(actual) > 8 else "")
            raise AssertionError(
                f"{label}{key} (#{i} of {len(order)}) was recorded by transformers"
                f" but not by minblip; minblip recorded: {taps}"
            )
        problem = compare(key, expected[key], actual[key], atol, rtol)
        if problem:
            raise AssertionError(f"{label}first divergence (#{i} of {len(order)}) at {problem}")


def flat_keys(node, prefix=""):
    """The dotted checkpoint keys of a nested params tree (dicts, and lists for numbered layers)."""
    if isinstance(node, np.ndarray):
        yield prefix[:-1]
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from flat_keys(v, f"{prefix}{k}.")
    else:
        for i, v in enumerate(node):
            yield from flat_keys(v, f"{prefix}{i}.")


def unread_tensors(model, run):
    """The checkpoint keys that run(model) never reads (model.params is tracked meanwhile)."""
    from minblip.weights import KeyTracker

    tracked = KeyTracker(model.params)
    model.params = tracked
    run(model)
    return set(flat_keys(tracked._node)) - tracked.reads


def check_against_transformers(case, **call_kwargs):
    """Load the case's class (meta "class") in its dtype, call it on the case's inputs with the
    module trace on, and compare every recorded module and output with transformers'."""
    from tolerances import for_case

    import minblip
    from minblip import trace

    meta, inputs, expected = load_case(case)
    model = getattr(minblip, meta["class"]).from_pretrained(model_dir(case), dtype=meta["dtype"])
    with trace.record() as acts:
        out = model(**inputs, **meta["kwargs"], **call_kwargs)
    acts.update(output_arrays(out))
    full = (case / "weights.json").exists()
    assert_trace_close(
        expected, acts, meta["order"] + meta["outputs"], what=case.name, **for_case(meta, full)
    )
