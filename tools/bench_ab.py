"""Paired A/B of two commits: BLIP-base vision forward and a 20-token greedy caption, minblip at
REV against the working tree, in alternating fresh processes (the fair way to see a refactor's
cost on a shared machine: both arms see the same load drift).

    python tools/bench_ab.py 670801e [--rounds 12] [--folder /tmp/minblip-blip-base]

REV is checked out into a temporary git worktree (removed afterwards). FOLDER is a full-size
blip-image-captioning-base folder (tools/fullsize.py builds one). Prints each child's figures,
then the medians and new/old, and checks that both arms generate the same ids.
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
sys.path.insert(0, ROOT)
import numpy as np
import minblip
assert minblip.__file__.startswith(ROOT), minblip.__file__
m = minblip.BlipForConditionalGeneration.from_pretrained(FOLDER)
vm = minblip.BlipVisionModel.from_pretrained(FOLDER)
px = np.random.default_rng(0).standard_normal((1, 3, 384, 384)).astype(np.float32)

def best(f, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        r = f()
        times.append(time.perf_counter() - t)
    return min(times), r

vm(pixel_values=px)  # warm: Numba's cache, first touches
v, _ = best(lambda: vm(pixel_values=px), 5)
g, ids = best(lambda: m.generate(pixel_values=px, max_new_tokens=20, min_new_tokens=20), 3)
print(json.dumps({"vision": v, "greedy20": g, "ids": np.asarray(ids).tolist()}))
"""


def child(root, folder):
    code = f"ROOT = {str(root)!r}\nFOLDER = {str(folder)!r}\n" + CHILD
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"child for {root} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rev", help="the 'old' commit")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--folder", default="/tmp/minblip-blip-base")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = pathlib.Path(tmp) / "old"
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "-q", "--detach", old, args.rev],
                       check=True)  # fmt: skip
        try:
            res = {"old": [], "new": []}
            for r in range(args.rounds):
                arms = [("old", old), ("new", ROOT)]
                for name, root in arms if r % 2 == 0 else arms[::-1]:
                    res[name].append(child(root, args.folder))
                    figures = {k: round(v, 4) for k, v in res[name][-1].items() if k != "ids"}
                    print(name, figures, flush=True)
        finally:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", old], check=True)
    same = all(x["ids"] == res["old"][0]["ids"] for x in res["old"] + res["new"])
    for k in ("vision", "greedy20"):
        o = statistics.median(x[k] for x in res["old"])
        n = statistics.median(x[k] for x in res["new"])
        print(f"{k}: old {o:.3f} s, new {n:.3f} s, new/old {n / o:.3f} (medians of {args.rounds})")
    print("same ids in every run:", same)
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
