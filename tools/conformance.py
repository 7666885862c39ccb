"""Max error against transformers per module kind, over every golden case (no torch needed).

    python tools/conformance.py                  # every group: vision ... blip2_generation
    python tools/conformance.py vision caption   # some groups only

Runs each case as the tests do and groups the absolute errors by module kind: the module path
with layer numbers replaced by {i} and the call suffix (#1, #2) dropped, so
"text_decoder.bert.encoder.layer.{i}.crossattention" is one row. Output fields are rows of their
own ("out.logits"). Integer outputs (token ids) are reported as exact or not. Cases at a real
checkpoint's dimensions are grouped apart ("caption (full size)"): their bar is 1e-4, not 1e-5.
"""

import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from golden_utils import case_dirs, load_case, model_dir, output_arrays  # noqa: E402

import minblip  # noqa: E402
from minblip import trace  # noqa: E402


def kind(key):
    key = key.split("#")[0]
    return re.sub(r"\.\d+(?=\.|$)", ".{i}", key)


def is_full_size(case, meta):
    """A case at a real checkpoint's dimensions: its weights are regenerated from weights.json
    (its own, or that of the case whose model folder it shares)."""
    own = case / "weights.json"
    shared = (case / meta["model_dir"]).parent / "weights.json" if "model_dir" in meta else own
    return own.is_file() or shared.is_file()


def run_case(case):
    meta, inputs, expected = load_case(case)
    model = getattr(minblip, meta["class"]).from_pretrained(model_dir(case), dtype=meta["dtype"])
    call = model if meta["method"] == "forward" else getattr(model, meta["method"])
    kwargs = dict(meta["kwargs"])
    if meta["method"] == "generate" and kwargs.get("do_sample"):
        kwargs["seed"] = 0
    with trace.record() as acts:
        out = call(**inputs, **kwargs)
    acts.update(output_arrays(out))
    return meta, expected, acts


def main(groups):
    rows = defaultdict(lambda: {"float32": [0.0, 0], "float64": [0.0, 0], "ids": [True, 0]})
    for group in groups:
        for case in case_dirs(group):
            meta, expected, acts = run_case(case)
            for key in meta["order"] + meta["outputs"]:
                e, a = expected[key], acts[key]
                size = (
                    " (full size)" if is_full_size(case, meta) else ""
                )  # bar 1e-4 there, 1e-5 tiny
                row = rows[f"{group}{size}: {kind(key)}"]
                if e.dtype.kind in "iu":
                    row["ids"][0] &= bool(np.array_equal(e, a))
                    row["ids"][1] += 1
                    continue
                finite = np.isfinite(e)
                err = float(np.max(np.abs(a[finite] - e[finite]), initial=0.0))
                slot = row[meta["dtype"]]
                slot[0], slot[1] = max(slot[0], err), slot[1] + 1
    print(f"{'module kind':<72} {'fp32 max abs':>12} {'fp64 max abs':>12}  ids")
    for name, r in sorted(rows.items()):
        f32 = f"{r['float32'][0]:.2e}" if r["float32"][1] else "-"
        f64 = f"{r['float64'][0]:.2e}" if r["float64"][1] else "-"
        ids = ("exact" if r["ids"][0] else "DIFFER") if r["ids"][1] else ""
        print(f"{name:<72} {f32:>12} {f64:>12}  {ids}")


if __name__ == "__main__":
    main(
        sys.argv[1:]
        or [
            "vision",
            "caption",
            "blip_tasks",
            "generation",
            "blip2_vision",
            "blip2_qformer",
            "blip2_tasks",
            "opt",
            "t5",
            "blip2_generation",
        ]
    )
