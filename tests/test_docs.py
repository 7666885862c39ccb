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


def placeholder_layout(kind):
    """One line of docs/architecture/blip2.md §5: what Blip2Processor makes of the example
    question with golden/blip2_processor/<kind>'s tokenizer folder (Q = 32)."""
    from minblip import Blip2Processor

    folder = DOCS.parent / "golden" / "blip2_processor" / kind
    processor = Blip2Processor.from_pretrained(folder)
    text = processor.tokenizer("Question: what is this? Answer:")["input_ids"]
    tokens = processor.tokenizer.convert_ids_to_tokens(text)
    words = " ".join(f"{t}({i})" for t, i in zip(tokens, text))
    return f"{kind.upper():4} [<image>] * {processor.num_query_tokens} + {words}"


@pytest.mark.parametrize("kind", ["opt", "t5"])
def test_blip2_placeholder_layout_is_the_processors(kind):
    assert placeholder_layout(kind) in (DOCS / "architecture" / "blip2.md").read_text()


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
