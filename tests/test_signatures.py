"""Every public class takes transformers 5.23's parameters in transformers' order, so a positional
call means the same thing in both libraries (golden/signatures, recorded by
tools/golden_cases/signatures.py from transformers itself)."""

import inspect
import json
import pathlib

import pytest

import minblip

RECORD = json.loads(
    (pathlib.Path(__file__).parents[1] / "golden/signatures/signatures.json").read_text()
)
CASES = [
    (cls, method, spec)
    for cls, entry in RECORD["classes"].items()
    for method, spec in entry["methods"].items()
]
VARIADIC = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)


def our_parameters(cls_name, method):
    fn = getattr(getattr(minblip, cls_name), "__call__" if method == "forward" else method)
    params = inspect.signature(fn).parameters.values()
    return [p.name for p in params if p.name != "self" and p.kind not in VARIADIC]


def test_recorded_by_the_pinned_version():
    assert RECORD["transformers"] == "5.23.0"


@pytest.mark.parametrize("cls_name,method,spec", CASES, ids=[f"{c}.{m}" for c, m, _ in CASES])
def test_same_parameters_in_the_same_order(cls_name, method, spec):
    """transformers' explicit parameters come first, in its order; minblip may add keyword
    options after them (output_attentions, return_dict: transformers takes them as **kwargs)."""
    ours = our_parameters(cls_name, method)
    theirs = spec["parameters"]
    assert ours[: len(theirs)] == theirs, f"{cls_name}.{method}: {ours} vs transformers {theirs}"


@pytest.mark.parametrize("cls_name", sorted(RECORD["classes"]))
def test_output_options_offered(cls_name):
    """What transformers can record on request (hidden_states, attentions, cross_attentions),
    minblip's forward takes as output_hidden_states / output_attentions, and every class takes
    return_dict."""
    ours = our_parameters(cls_name, "forward")
    wanted = {"return_dict"}
    recordable = set(RECORD["classes"][cls_name]["can_record_outputs"])
    if "hidden_states" in recordable:
        wanted.add("output_hidden_states")
    if recordable & {"attentions", "cross_attentions"}:
        wanted.add("output_attentions")
    assert wanted <= set(ours), f"{cls_name} lacks {sorted(wanted - set(ours))}"
