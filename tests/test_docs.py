"""Docs stay true: every `minblip/<file>.py::<name>` link resolves, and every quoted `Shapes:` or
`Mirrors` line is a substring of the docstring of a function linked in the same list item."""

import importlib
import inspect
import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
LINK = re.compile(r"minblip/(\w+)\.py::(\w+)")
QUOTE = re.compile(r"\s*`((?:Shapes:|Mirrors).*)`\s*")
ITEM_START = re.compile(r"^\s*(\d+\.\s|#|$)")


def _docs():
    return sorted(DOCS.rglob("*.md"))


def _flat(text):
    return " ".join(text.split())


@pytest.mark.parametrize("doc", _docs(), ids=lambda p: p.name)
def test_links_resolve_and_quotes_match(doc):
    linked = []
    for line in doc.read_text().splitlines():
        if ITEM_START.match(line):
            linked = []
        for module, name in LINK.findall(line):
            obj = getattr(importlib.import_module(f"minblip.{module}"), name, None)
            assert obj is not None, f"{doc.name}: minblip/{module}.py::{name} does not exist"
            linked.append(obj)
        quote = QUOTE.fullmatch(line)
        if quote:
            docstrings = [_flat(inspect.getdoc(obj) or "") for obj in linked]
            assert any(_flat(quote.group(1)) in d for d in docstrings), (
                f"{doc.name}: {quote.group(1)!r} is in no docstring of "
                f"{[o.__qualname__ for o in linked]}"
            )
