"""docs/walkthrough.md prints what the code prints: tools/walkthrough.py recomputes every
block (shapes from trace.record() on the tiny golden models, hub symbols and parameter counts
from the configs) and each must equal the doc's text, character for character."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _tool():
    spec = importlib.util.spec_from_file_location("walkthrough", ROOT / "tools" / "walkthrough.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_printed_block_is_what_the_code_prints():
    tool = _tool()
    printed = tool.doc_blocks(tool.DOC.read_text())
    fresh = tool.blocks()
    assert set(printed) == set(fresh), "docs/walkthrough.md's blocks are not the tool's"
    for name, text in fresh.items():
        assert printed[name] == text, (
            f"docs/walkthrough.md block {name!r} differs from the code's output; "
            "regenerate it with `python tools/walkthrough.py --write` and read the diff"
        )


def test_a_stale_block_is_caught():
    """The comparison is not vacuous: change one shape in the doc's text and it fails."""
    tool = _tool()
    text = tool.DOC.read_text()
    stale = text.replace("(1, 17, 24)", "(1, 17, 25)", 1)
    assert stale != text
    assert tool.doc_blocks(stale) != tool.blocks()
    assert tool.rewrite(stale, tool.blocks()) == text  # and --write repairs it
