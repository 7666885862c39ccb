"""Load time and peak RSS: minblip against transformers' from_pretrained, same folder, one run.

    python tools/measure_load.py [FOLDER] [--class BlipForConditionalGeneration]

Each library loads the folder in a fresh process (so neither pays for the other's imports or
page cache state more than the order of the runs does: the file is read once first to warm the
page cache, and the runs alternate). Reported per library: import time, from_pretrained time,
peak RSS after loading, and peak RSS after one 384-px vision forward (what a caption run needs).
"""

import argparse
import json
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent

CHILD = r"""
import json, sys, time

def peak_rss_mb():
    # VmHWM belongs to this process image; ru_maxrss would also count the parent's peak (Linux
    # keeps it across fork and exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

lib, cls, folder = sys.argv[1:4]
t0 = time.perf_counter()
if lib == "minblip":
    import numpy as np, minblip
    Model = getattr(minblip, cls)
else:
    import torch, numpy as np, transformers
    torch.set_num_threads(2)
    Model = getattr(transformers, cls)
t1 = time.perf_counter()
model = Model.from_pretrained(folder)
t2 = time.perf_counter()
rss_load = peak_rss_mb()
x = np.random.default_rng(0).standard_normal((1, 3, 384, 384)).astype(np.float32)
vision = model.vision_model if hasattr(model, "vision_model") else model
if lib == "minblip":
    from minblip.blip import BlipVisionModel
    if not isinstance(model, BlipVisionModel):
        from minblip.vision import vision_model
        vision_model(x, model.params["vision_model"], model.config.vision_config)
    else:
        model(x)
else:
    with torch.no_grad():
        vision(torch.from_numpy(x))
rss_fwd = peak_rss_mb()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "peak_rss_after_load_mb": rss_load,
                  "peak_rss_after_vision_forward_mb": rss_fwd}))
"""


def run(lib, cls, folder):
    out = subprocess.run(
        [sys.executable, "-c", CHILD, lib, cls, str(folder)], capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"{lib} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("folder", nargs="?", default="/tmp/minblip-blip-base")
    ap.add_argument("--class", dest="cls", default="BlipForConditionalGeneration")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    import fullsize

    folder = fullsize.build(args.folder)
    for f in folder.glob("*.safetensors"):  # warm the page cache (in another process: see CHILD)
        subprocess.run(["cat", str(f)], stdout=subprocess.DEVNULL, check=True)
    results = {"minblip": [], "transformers": []}
    for _ in range(args.repeat):
        for lib in results:
            results[lib].append(run(lib, args.cls, folder))
    best = {lib: {k: min(r[k] for r in rs) for k in rs[0]} for lib, rs in results.items()}
    print(f"{args.cls} from {folder} (best of {args.repeat}, warm page cache)")
    print(f"{'':34}{'minblip':>12}{'transformers':>14}{'ratio':>8}")
    for k in best["minblip"]:
        a, b = best["minblip"][k], best["transformers"][k]
        print(f"{k:34}{a:12.3f}{b:14.3f}{a / b:8.2f}")


if __name__ == "__main__":
    main()
