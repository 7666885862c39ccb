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
    groups = sorted(p.stem for p in (HERE / "golden_cases").glob("*.py") if p.stem != "__init__")
    unknown = [a for a in argv if a not in groups]
    if unknown:  # --help included: say what there is instead of failing on an import
        sys.exit(f"{__doc__}\nunknown group(s) {unknown}; the groups are: {' '.join(groups)}")
    for name in argv or groups:
        print(f"== {name}", flush=True)
        importlib.import_module(f"golden_cases.{name}").build(ROOT)


if __name__ == "__main__":
    main(sys.argv[1:])
