"""minblip against transformers on a full-size BLIP captioning model, same inputs, one run.

    python tools/bench.py [FOLDER] [--backend numpy|numba] [--rounds 2] [--repeat 3]
    python tools/bench.py folder-throughput [FOLDER] [--images 16] [--workers 1 2]
        [--batch-sizes 1 4]   (--workers K against one process: folder_throughput below)

FOLDER (default /tmp/minblip-blip-base) is built by tools/fullsize.py when it holds no weights:
Salesforce/blip-image-captioning-base's config (ViT-B/16 at 384 px, 12-layer BERT decoder) with
seeded random weights, in transformers' own file format. Speed is measured here, never by a test.

Each library runs in its own child process (so OpenBLAS' and torch's thread pools never compete
inside one process), the two alternating for --rounds rounds; each child warms up once and then
times every figure --repeat times. A figure is the best time over all rounds and repeats.
torch runs at 2 threads under inference_mode. Both libraries get the same pixel_values (minblip's
BlipImageProcessor output; the preprocessing is golden-tested equal to transformers'), and the
greedy and beam token ids are checked equal between the two.

Figures (seconds, ratio = minblip / transformers, lower is better):
  vision forward      vision_model(pixel_values), batch 1, 384 px
  time to first token generate(max_new_tokens=1): vision + cross-attention K/V + one step
  per-token decode    (greedy 20 - time to first token) / 19, from the two best times
  greedy 20 tokens    generate(max_new_tokens=20, min_new_tokens=20): exactly 20 new tokens
  3-beam 20 tokens    the same with num_beams=3
  fresh process       python -c: import, load model + processor from FOLDER, caption one PNG
                      (greedy, 20 new tokens), decode; wall time seen by the parent (interpreter
                      start to exit) and the child's peak RSS (VmHWM)

Task models (--tasks, on by default): full-size blip-itm-base-coco and blip-vqa-base folders
materialized from golden/blip_tasks' weight specs (the weights transformers scored there), one
image and one 8-token text:
  ITM                 BlipForImageTextRetrieval(use_itm_head=True): vision + text encoder with
                      cross-attention + itm head
  ITC                 the same with use_itm_head=False: vision + text encoder + projections
  VQA answer          BlipForQuestionAnswering.generate, exactly 10 answer tokens (greedy)

Folder throughput (--throughput, run alone): 64 PNGs made from golden/images' photos (flipped,
rotated and cropped so no two are alike), captioned in batches of 1 and 8 (--batch-sizes), 20
new tokens each (greedy), images/s from reading the files to the decoded captions. minblip:
what `minblip caption FOLDER --batch-size N` runs per chunk (caption_files.caption_chunk:
preprocess, one batched generate, decode); transformers: BlipProcessor on the chunk's PIL images,
one generate on the batch, batch_decode; torch at 2 threads. One warm-up chunk first in each
child; each library in its own process, alternating, best of --rounds.
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent

GREEDY = dict(max_new_tokens=20, min_new_tokens=20)
ANSWER = dict(max_new_tokens=10, min_new_tokens=10)
QUESTION = [[101, 2054, 2003, 1999, 1996, 3861, 1029, 102]]  # [CLS] what is in the picture? [SEP]
BEAM = dict(num_beams=3, max_new_tokens=20, min_new_tokens=20)

# The timing children's loop body: `repeat` wall times of fn(), after the caller's warm-up call.
TIMED = r"""
def timed(fn):
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return ts
"""

CHILD = (
    r"""
import json, sys, time
import numpy as np

lib, folder, pixels_file, repeat, backend = sys.argv[1:6]
repeat = int(repeat)
GREEDY, BEAM = json.loads(sys.argv[6]), json.loads(sys.argv[7])
x = np.load(pixels_file)

if lib == "minblip":
    import minblip
    from minblip.vision import vision_model
    minblip.set_backend(backend)
    model = minblip.BlipForConditionalGeneration.from_pretrained(folder)
    vision = lambda: vision_model(x, model.params["vision_model"], model.config.vision_config)
    generate = lambda **kw: np.asarray(model.generate(x, **kw))
else:
    import torch, transformers
    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    model = transformers.BlipForConditionalGeneration.from_pretrained(folder).eval()
    xt = torch.from_numpy(x)

    def vision():
        with torch.inference_mode():
            return model.vision_model(pixel_values=xt)

    def generate(**kw):
        with torch.inference_mode():
            return model.generate(pixel_values=xt, **kw).numpy()

cases = {
    "vision": vision,
    "ttft": lambda: generate(max_new_tokens=1),
    "greedy20": lambda: generate(**GREEDY),
    "beam3": lambda: generate(**BEAM),
}
"""
    + TIMED
    + r"""
times, tokens = {}, {}
for name, fn in cases.items():
    out = fn()  # warm-up (JIT, page cache, allocator)
    if name in ("greedy20", "beam3"):
        tokens[name] = np.asarray(out).tolist()
    times[name] = timed(fn)
print(json.dumps({"times": times, "tokens": tokens}))
"""
)

FRESH = r"""
import json, sys, time
t0 = time.perf_counter()
lib, folder, image = sys.argv[1:4]
GREEDY = json.loads(sys.argv[4])

def peak_rss_mb():
    # VmHWM is this process image's peak; ru_maxrss would carry the parent's across exec
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

from PIL import Image
if lib == "minblip":
    import minblip
    Model, Processor, kw = minblip.BlipForConditionalGeneration, minblip.BlipProcessor, {}
else:
    import torch, transformers
    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    Model, Processor = transformers.BlipForConditionalGeneration, transformers.BlipProcessor
t1 = time.perf_counter()
model = Model.from_pretrained(folder)
processor = Processor.from_pretrained(folder)
t2 = time.perf_counter()
inputs = processor(images=Image.open(image), return_tensors="np" if lib == "minblip" else "pt")
if lib == "minblip":
    ids = model.generate(inputs["pixel_values"], **GREEDY)
else:
    with torch.inference_mode():
        ids = model.generate(pixel_values=inputs["pixel_values"], **GREEDY)
text = processor.decode(ids[0], skip_special_tokens=True)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "caption_s": t3 - t2,
                  "peak_rss_mb": peak_rss_mb(), "caption": text}))
"""

TASK_CHILD = (
    r"""
import json, sys, time
import numpy as np

lib, itm_folder, vqa_folder, pixels_file, repeat, backend = sys.argv[1:7]
repeat = int(repeat)
ANSWER, ids = json.loads(sys.argv[7]), np.array(json.loads(sys.argv[8]), dtype=np.int64)
x = np.load(pixels_file)
mask = np.ones_like(ids)

if lib == "minblip":
    import minblip
    minblip.set_backend(backend)
    itm = minblip.BlipForImageTextRetrieval.from_pretrained(itm_folder)
    vqa = minblip.BlipForQuestionAnswering.from_pretrained(vqa_folder)
    run = lambda f, **kw: f(pixel_values=x, input_ids=ids, attention_mask=mask, **kw)
    cases = {
        "itm": lambda: run(itm, use_itm_head=True).itm_score,
        "itc": lambda: run(itm, use_itm_head=False).itm_score,
        "vqa": lambda: np.asarray(run(vqa.generate, **ANSWER)),
    }
else:
    import torch, transformers
    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    itm = transformers.BlipForImageTextRetrieval.from_pretrained(itm_folder).eval()
    vqa = transformers.BlipForQuestionAnswering.from_pretrained(vqa_folder).eval()
    xt, it, mt = torch.from_numpy(x), torch.from_numpy(ids), torch.from_numpy(mask)

    def run(f, **kw):
        with torch.inference_mode():
            return f(pixel_values=xt, input_ids=it, attention_mask=mt, **kw)

    cases = {
        "itm": lambda: run(itm, use_itm_head=True).itm_score.numpy(),
        "itc": lambda: run(itm, use_itm_head=False).itm_score.numpy(),
        "vqa": lambda: run(vqa.generate, **ANSWER).numpy(),
    }

"""
    + TIMED
    + r"""
times, outs = {}, {}
for name, fn in cases.items():
    outs[name] = np.asarray(fn()).tolist()  # warm-up; kept to compare the two libraries
    times[name] = timed(fn)
print(json.dumps({"times": times, "outs": outs}))
"""
)


THROUGHPUT_CHILD = r"""
import json, pathlib, sys, time
lib, folder, images, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
GREEDY = json.loads(sys.argv[5])
paths = sorted(pathlib.Path(images).glob("*.png"))
chunks = [paths[i : i + batch] for i in range(0, len(paths), batch)]
if lib == "minblip":
    from minblip.caption_files import caption_chunk
    from minblip.pipeline import load_captioner
    model, processor = load_captioner(folder)

    def caption(chunk):
        return [r[0] for _, r in caption_chunk(chunk, model, processor, None, GREEDY)]
else:
    import torch, transformers
    from PIL import Image
    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    model = transformers.BlipForConditionalGeneration.from_pretrained(folder).eval()
    processor = transformers.BlipProcessor.from_pretrained(folder)

    def caption(chunk):
        images = [Image.open(p).convert("RGB") for p in chunk]
        inputs = processor(images=images, return_tensors="pt")
        with torch.inference_mode():
            ids = model.generate(pixel_values=inputs["pixel_values"], **GREEDY)
        return [t.strip() for t in processor.batch_decode(ids, skip_special_tokens=True)]
caption(chunks[0])  # warm-up: Numba, first touches of the weights and buffers
t0 = time.perf_counter()
captions = [c for chunk in chunks for c in caption(chunk)]
wall = time.perf_counter() - t0
print(json.dumps({"wall_s": wall, "images_per_s": len(paths) / wall, "captions": captions}))
"""


def throughput_images(out, n=64):
    """n distinct PNGs from golden/images' photos: each photo flipped / rotated / cropped."""
    from PIL import Image, ImageOps

    photos = sorted((ROOT / "golden" / "images").glob("*.png"))
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        im = Image.open(photos[i % len(photos)]).convert("RGB")
        k = i // len(photos)  # variant number: rotation, mirror, crop
        im = im.rotate(90 * (k % 4), expand=True)
        im = ImageOps.mirror(im) if (k // 4) % 2 else im
        if (k // 8) % 2:
            w, h = im.size
            im = im.crop((w // 8, h // 8, w - w // 8, h - h // 8))
        im.save(out / f"{i:03d}.png")
    return out


def throughput(folder, batch_sizes, rounds, env, n=64):
    """images/s captioning n photos at each batch size, minblip against transformers."""
    with tempfile.TemporaryDirectory() as tmp:
        images = throughput_images(pathlib.Path(tmp) / "images", n)
        load_before = loadavg()
        best, captions = {}, {}
        for batch in batch_sizes:
            for _ in range(rounds):
                for lib in ("minblip", "transformers"):
                    args = [lib, folder, images, batch, json.dumps(GREEDY)]
                    out = child(THROUGHPUT_CHILD, args, env)[0]
                    key = (lib, batch)
                    best[key] = max(best.get(key, 0.0), out["images_per_s"])
                    captions[key] = out["captions"]
        load_after = loadavg()
    print(
        f"\nfolder throughput: {n} photos, 20 new tokens each (greedy), best of {rounds}; "
        f"load average {load_before} before, {load_after} after (2 cores)"
    )
    print(f"{'images/s':30}{'minblip':>12}{'transformers':>14}{'ratio':>8}")
    for batch in batch_sizes:
        m, t = best[("minblip", batch)], best[("transformers", batch)]
        print(f"{f'batch {batch}':30}{m:12.3f}{t:14.3f}{m / t:8.2f}  (> 1: minblip faster)")
    for batch in batch_sizes:
        same = captions[("minblip", batch)] == captions[("transformers", batch)]
        alone = captions[("minblip", batch)] == captions[("minblip", batch_sizes[0])]
        print(
            f"batch {batch}: same captions as transformers {'yes' if same else 'NO'}, "
            f"as minblip at batch {batch_sizes[0]} {'yes' if alone else 'NO'}"
        )
    return best


def child(code, args, env=None):
    import time

    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    wall = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"{args[0]} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1]), wall


def prepare(folder, tmp):
    """The model folder (built if missing, tokenizer added) and the shared inputs."""
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    import fullsize
    import numpy as np
    from PIL import Image

    from minblip import BlipImageProcessor

    folder = fullsize.build(folder)
    for f in (ROOT / "golden" / "tokenizer" / "blip").glob("*"):  # as fullsize.build copies them
        if f.is_file() and not (folder / f.name).exists():
            shutil.copy(f, folder / f.name)
    # a smooth non-square test image: real resize work, same file for every child
    yy, xx = np.mgrid[0:480, 0:640]
    rgb = np.stack([xx * 255 // 639, yy * 255 // 479, (xx + yy) * 255 // 1118], -1)
    image = tmp / "image.png"
    Image.fromarray(rgb.astype(np.uint8)).save(image)
    pixels = BlipImageProcessor.from_pretrained(folder)(Image.open(image))["pixel_values"]
    np.save(tmp / "pixels.npy", pixels)
    for f in folder.glob("*.safetensors"):  # warm the page cache once, outside every child
        subprocess.run(["cat", str(f)], stdout=subprocess.DEVNULL, check=True)
    return folder, image, tmp / "pixels.npy"


def task_folders(root):
    """Full-size ITM and VQA folders, materialized (no torch) from golden/blip_tasks' weight specs,
    with the BLIP tokenizer and BlipImageProcessor's preprocessor_config.json beside them."""
    from minblip.testing import materialize

    folders = []
    for case, name in (("itm_base_coco", "minblip-blip-itm"), ("vqa_base", "minblip-blip-vqa")):
        folder = materialize(ROOT / "golden" / "blip_tasks" / case, root / name)
        for f in (ROOT / "golden" / "tokenizer" / "blip").glob("*"):
            if f.is_file() and not (folder / f.name).exists():
                shutil.copy(f, folder / f.name)
        subprocess.run(
            ["cat", str(folder / "model.safetensors")], stdout=subprocess.DEVNULL, check=True
        )
        folders.append(folder)
    return folders


def run_version(module):
    out = subprocess.run(
        [sys.executable, "-c", f"import {module}; print({module}.__version__)"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "not installed"


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def row(name, a, b, unit="s"):
    if a is None or b is None:
        return f"{name:30}{'n/a':>12}{'n/a':>14}{'':>8}"
    fmt = "{:12.3f}{:14.3f}" if unit == "s" else "{:12.0f}{:14.0f}"
    return f"{name:30}" + fmt.format(a, b) + f"{a / b:8.2f}"


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("folder", nargs="?", default="/tmp/minblip-blip-base")
    ap.add_argument("--backend", choices=["numpy", "numba"], default="numba")
    ap.add_argument("--rounds", type=int, default=2, help="alternating child runs per library")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per figure in each child")
    ap.add_argument("--fresh", type=int, default=2, help="fresh-process runs per library (0: skip)")
    ap.add_argument("--no-tasks", dest="tasks", action="store_false", help="skip ITM, ITC and VQA")
    ap.add_argument(
        "--throughput", action="store_true", help="only the folder-throughput figure (64 photos)"
    )
    ap.add_argument("--batch-sizes", default="1,8", help="--throughput's batch sizes")
    ap.add_argument("--images", type=int, default=64, help="--throughput's photo count")
    args = ap.parse_args()
    if args.throughput:
        with tempfile.TemporaryDirectory() as tmp:
            folder = prepare(pathlib.Path(args.folder), pathlib.Path(tmp))[0]
        env = {**os.environ, "MINBLIP_BACKEND": args.backend}
        sizes = [int(b) for b in args.batch_sizes.split(",")]
        print(f"BLIP captioning, {folder}; minblip backend {args.backend}; torch 2 threads")
        throughput(folder, sizes, args.rounds, env, args.images)
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder, image, pixels = prepare(pathlib.Path(args.folder), pathlib.Path(tmp))
        load_before = loadavg()
        env = {**os.environ, "MINBLIP_BACKEND": args.backend}
        libs = ["minblip", "transformers"]
        runs = {lib: [] for lib in libs}
        fresh = {lib: [] for lib in libs}
        for _ in range(args.rounds):
            for lib in libs:
                a = [
                    lib,
                    folder,
                    pixels,
                    args.repeat,
                    args.backend,
                    json.dumps(GREEDY),
                    json.dumps(BEAM),
                ]
                runs[lib].append(child(CHILD, a, env)[0])
        tasks = {lib: [] for lib in libs}
        if args.tasks:
            itm_folder, vqa_folder = task_folders(pathlib.Path(args.folder).parent)
            for _ in range(args.rounds):
                for lib in libs:
                    a = [
                        lib,
                        itm_folder,
                        vqa_folder,
                        pixels,
                        args.repeat,
                        args.backend,
                        json.dumps(ANSWER),
                        json.dumps(QUESTION),
                    ]
                    tasks[lib].append(child(TASK_CHILD, a, env)[0])
        for _ in range(args.fresh):
            for lib in libs:
                info, wall = child(FRESH, [lib, folder, image, json.dumps(GREEDY)], env)
                fresh[lib].append({**info, "wall_s": wall})
        load_after = loadavg()

    best = {
        lib: {k: min(t for r in rs for t in r["times"][k]) for k in rs[0]["times"]}
        for lib, rs in runs.items()
    }
    for lib in libs:
        best[lib]["decode"] = (best[lib]["greedy20"] - best[lib]["ttft"]) / 19
    same = {
        k: runs["minblip"][0]["tokens"][k] == runs["transformers"][0]["tokens"][k]
        for k in ("greedy20", "beam3")
    }

    n = args.rounds * args.repeat
    print(f"BLIP captioning, {folder} (blip-image-captioning-base shapes, random weights)")
    print(
        f"minblip backend {args.backend}; torch 2 threads; best of {n} timed runs per figure "
        f"({args.rounds} alternating processes x {args.repeat}); load average "
        f"{load_before} before, {load_after} after (2 cores)"
    )
    print(
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')} "
        f"(NumPy's GEMM kernels; torch uses MKL); numpy {run_version('numpy')}, "
        f"torch {run_version('torch')}"
    )
    print(f"{'':30}{'minblip':>12}{'transformers':>14}{'ratio':>8}")
    m, t = best["minblip"], best["transformers"]
    print(row("vision forward (s)", m["vision"], t["vision"]))
    print(row("time to first token (s)", m["ttft"], t["ttft"]))
    print(row("per-token decode (s)", m["decode"], t["decode"]))
    print(row("greedy, 20 tokens (s)", m["greedy20"], t["greedy20"]))
    print(row("3 beams, 20 tokens (s)", m["beam3"], t["beam3"]))
    if args.fresh:
        fm = {
            k: min(r[k] for r in fresh["minblip"])
            for k in ("wall_s", "peak_rss_mb", "import_s", "load_s", "caption_s")
        }
        ft = {k: min(r[k] for r in fresh["transformers"]) for k in fm}
        print(row("fresh process: wall (s)", fm["wall_s"], ft["wall_s"]))
        print(row("  of which import (s)", fm["import_s"], ft["import_s"]))
        print(row("  of which load (s)", fm["load_s"], ft["load_s"]))
        print(row("  of which caption (s)", fm["caption_s"], ft["caption_s"]))
        print(row("fresh process: peak RSS (MB)", fm["peak_rss_mb"], ft["peak_rss_mb"], unit="MB"))
        same["fresh caption"] = (
            fresh["minblip"][0]["caption"] == fresh["transformers"][0]["caption"]
        )
    if args.tasks:
        tb = {
            lib: {k: min(t for r in rs for t in r["times"][k]) for k in rs[0]["times"]}
            for lib, rs in tasks.items()
        }
        m, t = tb["minblip"], tb["transformers"]
        print(row("ITM, 1 image x 1 text (s)", m["itm"], t["itm"]))
        print(row("ITC, 1 image x 1 text (s)", m["itc"], t["itc"]))
        print(row("VQA, 10-token answer (s)", m["vqa"], t["vqa"]))
        mo, to = tasks["minblip"][0]["outs"], tasks["transformers"][0]["outs"]
        import numpy as np

        same["VQA"] = mo["vqa"] == to["vqa"]
        for k in ("itm", "itc"):
            err = float(np.max(np.abs(np.array(mo[k]) - np.array(to[k]))))
            print(f"{k.upper()} score max abs difference from transformers: {err:.1e}")
    print(
        "same tokens as transformers: "
        + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in same.items())
    )


# ---- folder throughput: --workers K against one process with every core (issue 11) ----


def folder_throughput(folder, images=16, workers=(1, 2), batch_sizes=(1, 4), max_new_tokens=20):
    """Images per second of `minblip caption FOLDER --output jsonl` over `images` photos (the
    golden ones, copied), for each --workers K and --batch-size B: K processes of cores // K
    BLAS / Numba threads each (minblip/workers.py) against one process with all the cores.
    Wall time of the whole command (interpreter start, model load in every process, captions,
    the JSONL written), best of 2 runs, and the CPU time the run used (every process's user +
    system, workers included): on a machine shared with other jobs the wall time measures the
    share the scheduler gave, the CPU time what the work cost. Rows are (workers, batch,
    seconds, images/s, CPU seconds per image). The model folder is built as main()'s is;
    greedy captions of exactly max_new_tokens tokens."""
    import resource
    import time

    sys.path.insert(0, str(HERE))
    import fullsize

    folder = fullsize.build(pathlib.Path(folder))
    for f in (ROOT / "golden" / "tokenizer" / "blip").glob("*"):
        if f.is_file() and not (folder / f.name).exists():
            shutil.copy(f, folder / f.name)
    for f in folder.glob("*.safetensors"):  # warm the page cache once
        subprocess.run(["cat", str(f)], stdout=subprocess.DEVNULL, check=True)
    photos = sorted((ROOT / "golden" / "images").glob("*.png"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for n in range(images):
            shutil.copy(photos[n % len(photos)], tmp / f"{n:04d}_{photos[n % len(photos)].name}")
        gen = ["--max-new-tokens", str(max_new_tokens), "--min-new-tokens", str(max_new_tokens)]
        for k in workers:
            for b in batch_sizes:
                argv = [
                    sys.executable,
                    "-m",
                    "minblip",
                    "caption",
                    str(tmp),
                    "--model",
                    str(folder),
                ]
                argv += [*gen, "--workers", str(k), "--batch-size", str(b)]
                argv += ["--output", "jsonl", str(tmp / "out.jsonl"), "--existing", "overwrite"]
                best, cpu = float("inf"), float("inf")
                for _ in range(2):
                    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
                    subprocess.run(argv, cwd=ROOT, check=True, capture_output=True)
                    r1, t1 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
                    best = min(best, t1 - t0)
                    cpu = min(cpu, r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
                rows.append((k, b, best, images / best, cpu / images))
    return rows


def folder_throughput_main(argv):
    ap = argparse.ArgumentParser(
        prog="bench.py folder-throughput",
        description=folder_throughput.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("folder", nargs="?", default="/tmp/minblip-blip-base")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--max-new-tokens", type=int, default=20)
    args = ap.parse_args(argv)
    load_before = loadavg()
    rows = folder_throughput(
        args.folder, args.images, args.workers, args.batch_sizes, args.max_new_tokens
    )
    print(
        f"minblip caption FOLDER --output jsonl: {args.images} images, greedy "
        f"{args.max_new_tokens} tokens, {os.cpu_count()} cores, wall time of the whole command "
        f"(best of 2); load average {load_before} before, {loadavg()} after"
    )
    print(
        f"{'workers':>8}{'threads each':>14}{'batch':>7}{'seconds':>10}{'images/s':>10}"
        f"{'CPU s/image':>13}"
    )
    for k, b, seconds, rate, cpu in rows:
        threads = max(1, (os.cpu_count() or 1) // k)
        print(f"{k:>8}{threads:>14}{b:>7}{seconds:>10.2f}{rate:>10.3f}{cpu:>13.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["folder-throughput"]:
        folder_throughput_main(sys.argv[2:])
    else:
        main()
