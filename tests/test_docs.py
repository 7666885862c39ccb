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


def _imports_between_files():
    """{(a, b)}: minblip/a.py imports minblip/b.py (relative imports, anywhere in the file)."""
    import ast

    edges = set()
    for f in (DOCS.parent / "minblip").glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names = [node.module] if node.module else [a.name for a in node.names]
                edges.update((f.stem, n.split(".")[0]) for n in names)
    return edges


def test_the_house_drawing_is_the_import_graph():
    text = (DOCS / "architecture" / "files.md").read_text()
    drawn = set(re.findall(r"^\s+(\w+) -\.?-> (\w+)$", text, re.M))
    assert drawn == _imports_between_files()
    files = {f.stem for f in (DOCS.parent / "minblip").glob("*.py")}
    described = set(re.findall(r"^\| `(\w+)\.py` \|", text, re.M))
    assert described == files
