"""Opt-in activation recorder keyed by transformers module paths.

Model functions call tap("encoder.layers.3", x) once per module they mirror; tap costs one
context-variable lookup unless a recording is active. scope("vision_model") prefixes the paths
of everything called inside it, so the same vision function records "encoder.layers.3" when run
as BlipVisionModel and "vision_model.encoder.layers.3" inside BlipForConditionalGeneration --
exactly the names transformers' named_modules() gives, so a trace lines up key for key with
golden/ (tools/golden_common.py records them with forward hooks). A path recorded twice gets
"#1", "#2" appended, as the golden recorder does.

    with trace.record() as acts:
        model(pixel_values=x)
    acts["encoder.layers.0"]      # (B, N, Dv)
"""

import contextlib
import contextvars

import numpy as np

_active = contextvars.ContextVar("minblip_trace", default=None)
_prefix = contextvars.ContextVar("minblip_trace_prefix", default="")


def tap(name, x):
    """Record x under the current scope's path + name when a recording is active; return x."""
    acts = _active.get()
    if acts is not None:
        key = _prefix.get() + name
        if key in acts:
            n = 1
            while f"{key}#{n}" in acts:
                n += 1
            key = f"{key}#{n}"
        acts[key] = np.array(x, copy=True)
    return x


@contextlib.contextmanager
def scope(name):
    """Prefix every tapped path inside the block with name + "."."""
    token = _prefix.set(_prefix.get() + name + ".")
    try:
        yield
    finally:
        _prefix.reset(token)


@contextlib.contextmanager
def record():
    """Collect every tap made inside the block into the dict it yields (in call order)."""
    acts = {}
    token = _active.set(acts)
    try:
        yield acts
    finally:
        _active.reset(token)


def recording():
    return _active.get() is not None
