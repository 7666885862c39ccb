"""Docs stay true: every `minblip/<file>.py::<name>` link resolves, and every quoted `Shapes:` or
`Mirrors` line is whole sentences of the docstring of a function linked in the same list item:
it starts where a paragraph or a sentence of the docstring starts and ends where one ends, so a
quote cut off mid-sentence fails."""

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


def _whole_sentences(quote, docstring):
    """True when quote is a run of whole sentences of one paragraph of docstring."""
    q = _flat(quote)
    for para in (_flat(p) for p in re.split(r"\n\s*\n", docstring)):
        i = para.find(q)
        while i >= 0:
            starts = i == 0 or para[:i].endswith((". ", ": "))
            ends = q.endswith(".") and (i + len(q) == len(para) or para[i + len(q)] == " ")
            if starts and ends:
                return True
            i = para.find(q, i + 1)
    return False


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
            docstrings = [inspect.getdoc(obj) or "" for obj in linked]
            assert any(_whole_sentences(quote.group(1), d) for d in docstrings), (
                f"{doc.name}: {quote.group(1)!r} is whole sentences of no docstring of "
                f"{[o.__qualname__ for o in linked]}"
            )
