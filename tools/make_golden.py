"""Regenerate golden/ from transformers itself: the only source of golden fixtures.

    python -m venv /tmp/golden-venv
    /tmp/golden-venv/bin/pip install -r tools/requirements-golden.txt -e .
    /tmp/golden-venv/bin/python tools/make_golden.py            # every case module
    /tmp/golden-venv/bin/python tools/make_golden.py vision     # only tools/golden_cases/vision.py

Each module in tools/golden_cases/ has `build(root: pathlib.Path) -> None` and writes only under
root/<its own name>/. Shared helpers (hooks, random weights, saving) live in tools/golden_common.py.
"""

import importlib
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent / "golden"


def main(argv):
    sys.path.insert(0, str(HERE))
    names = argv or sorted(
        p.stem for p in (HERE / "golden_cases").glob("*.py") if p.stem != "__init__"
    )
    for name in names:
        print(f"== {name}", flush=True)
        importlib.import_module(f"golden_cases.{name}").build(ROOT)


if __name__ == "__main__":
    main(sys.argv[1:])
