"""BLIP-2 (OPT-2.7b or Flan-T5-XL) on this CPU: minblip float32 / bf16-kept / int8 against
transformers float32.

    python tools/bench_blip2.py [--model /tmp/blip2-opt-2.7b] [--modes fp32,bf16,int8,torch]
    python tools/bench_blip2.py --model /tmp/blip2-flan-t5-xl --modes fp32,int8,torch
    python tools/bench_blip2.py --prepare        # only write the bf16 and int8 folders
    python tools/bench_blip2.py --memory int8    # peak RSS stage by stage, one fresh process
    python tools/bench_blip2.py --profile fp32   # where one decode step and one ViT-g go
    python tools/bench_blip2.py --threads-ab     # int8 decode: the twin on 1 thread vs 2, paired

The model is the full-size random-weight folder of tools/fullsize_blip2.py (built with
/work/gvenv when missing; a folder name with "t5" in it is built with --lm flan-t5-xl). Beside
it this writes, once: MODEL-bf16 (every tensor rounded to bf16, as torch's .to(torch.bfloat16)
rounds; skipped with a message when it would leave less than 5 GB of disk) and MODEL-int8
(`minblip quantize`).

For Flan-T5-XL (encoder-decoder) the same steps are timed: the prefix reaches the encoder
through image_prefix and the prompt's placeholders, "first token" is vision + Q-Former + the
T5 encoder + one decoder step, and decode is the decoder's per-token step (the encoder and
the cross-attention keys/values run once). Random weights make both
libraries emit id 0 (<pad>) at every step; min_new_tokens=20 keeps 20 steps.

Each mode runs in a fresh process (python -c, or /work/gvenv's python with torch at 2 threads
for transformers), which
  1. imports, loads and captions one photo (20 new tokens, greedy): "fresh process" wall time
     (measured by the parent from spawn to that caption) and peak RSS (VmHWM) at that point;
  2. then times, best of --repeat: the ViT-g forward, the Q-Former (queries reading the
     ViT's output, with the language projection), a generate of 1 token ("first token":
     vision + Q-Former + prefill + one step) and a 20-token greedy caption; per-token decode
     = the median interval between consecutive decoder steps inside those captions (after the
     prefill step), ticked by a wrapper around minblip's step function and by a
     LogitsProcessor in transformers (each interval: one forward plus the token choice).
Printed beside each figure: its ratio to transformers fp32, the load average (2 shared cores),
and for decode the memory-bandwidth bound (weight bytes read per token / bandwidth measured
here by summing a 1 GiB array on every core; the one-thread np.sum is printed beside it). The
OpenBLAS kernel NumPy runs (its corename) and the OPENBLAS_* variables are printed; run the
command a second time with them unset to compare:
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python tools/bench_blip2.py ...
"""

import argparse
import ctypes
import glob
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PHOTO = ROOT / "golden" / "images" / "astronaut.png"
GVENV = "/work/gvenv/bin/python"

# Both children, after their first caption: report the fresh-process time, read the peak RSS and
# define best-of-n timing, in the same words so that the two modes measure the same thing.
MEASURE = r"""print("FRESH", time.perf_counter() - t0, flush=True)
status = open("/proc/self/status").read()
hwm = int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1]) * 1024
def best(f, n={repeat}):
    ts = []
    for _ in range(n):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return min(ts)
# Per-token decode, measured inside the 20-token captions: the interval between consecutive
# steps (one decoder forward plus the step's token choice), after the first step (the prefill);
# the median over every caption timed. (Not caption20 - first: two noisy figures, subtracted.)
ticks = []
def ticking(generate):  # minblip: a tick as each step function call begins
    def wrapped(step, *args, **kwargs):
        def ticked(*a, **k):
            ticks.append(time.perf_counter())
            return step(*a, **k)
        return generate(ticked, *args, **kwargs)
    return wrapped
def decode_step():
    assert len(ticks) == 20 * {repeat}, f"{{len(ticks)}} steps in {repeat} 20-token captions"
    gaps = []
    for r in range(0, len(ticks), 20):  # 20 ticks per caption
        run = ticks[r : r + 20]
        gaps += [b - a for a, b in zip(run[1:], run[2:])]
    return sorted(gaps)[len(gaps) // 2]
px = inputs["pixel_values"]
out = {{"hwm": hwm, "ids": ids[0].tolist()}}
"""

# The minblip children's classes, and their model, processor and inputs (the photo, no prompt).
IMPORT = """from minblip import Blip2ForConditionalGeneration
from minblip.processing import Blip2Processor
from minblip.preprocess import load_image
"""
LOAD = r"""model = Blip2ForConditionalGeneration.from_pretrained({folder!r}, **{load_kwargs!r})
processor = Blip2Processor.from_pretrained({folder!r})
if processor.num_query_tokens is None:
    processor.num_query_tokens = model.config.num_query_tokens
inputs = processor(images=load_image({photo!r}))
"""

MINBLIP_CHILD = (
    r"""
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
import numpy as np
"""
    + IMPORT
    + LOAD
    + r"""gen = dict(max_new_tokens=20, min_new_tokens=20)
ids = model.generate(**inputs, **gen)
"""
    + MEASURE
    + r"""out["vit"] = best(lambda: model._image(px))
image = model._image(px)[0]
out["qformer"] = best(lambda: model.image_prefix(image))  # queries + language_projection
out["first"] = best(lambda: model.generate(**inputs, max_new_tokens=1, min_new_tokens=1))
import minblip.opt, minblip.t5
minblip.opt.generate = ticking(minblip.opt.generate)
minblip.t5.generate = ticking(minblip.t5.generate)
ticks.clear()
out["caption20"] = best(lambda: model.generate(**inputs, **gen))
out["decode"] = decode_step()
print("RESULT", json.dumps(out), flush=True)
"""
)

TORCH_CHILD = (
    r"""
import json, sys, time
t0 = time.perf_counter()
import torch
torch.set_num_threads(2)
from PIL import Image
from transformers import Blip2ForConditionalGeneration, Blip2Processor
model = Blip2ForConditionalGeneration.from_pretrained({folder!r}, dtype=torch.float32).eval()
processor = Blip2Processor.from_pretrained({folder!r})
inputs = processor(images=Image.open({photo!r}).convert("RGB"), return_tensors="pt")
gen = dict(max_new_tokens=20, min_new_tokens=20, do_sample=False, num_beams=1)
with torch.inference_mode():
    ids = model.generate(**inputs, **gen)
"""
    + MEASURE
    + r"""def prefix(image):  # get_image_features' steps 2-3, as minblip's image_prefix
    q = model.query_tokens.expand(image.shape[0], -1, -1)
    mask = torch.ones(image.shape[:-1], dtype=torch.long)
    out = model.qformer(query_embeds=q, encoder_hidden_states=image, encoder_attention_mask=mask)
    return model.language_projection(out[0])
with torch.inference_mode():
    out["vit"] = best(lambda: model.vision_model(px))
    image = model.vision_model(px)[0]
    out["qformer"] = best(lambda: prefix(image))
    out["first"] = best(lambda: model.generate(**inputs, max_new_tokens=1, min_new_tokens=1))
    from transformers import LogitsProcessor, LogitsProcessorList
    class Tick(LogitsProcessor):  # called once per step, after that step's forward
        def __call__(self, input_ids, scores):
            ticks.append(time.perf_counter())
            return scores
    ticks.clear()
    tick = LogitsProcessorList([Tick()])
    out["caption20"] = best(lambda: model.generate(**inputs, **gen, logits_processor=tick))
    out["decode"] = decode_step()
print("RESULT", json.dumps(out), flush=True)
"""
)


MEMORY_CHILD = (
    r"""
import sys
sys.path.insert(0, {root!r})
def stage(name):
    d = {{}}
    for line in open("/proc/self/status"):
        key = line.split(":")[0]
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            d[key] = int(line.split()[1]) * 1024
    print("STAGE", name, " ".join(f"{{k}}={{v}}" for k, v in d.items()), flush=True)
stage("start")
import numpy as np
"""
    + IMPORT
    + r"""stage("import")
"""
    + LOAD
    + r"""stage("load")
image = model._image(inputs["pixel_values"])[0]
stage("vision")
prefix = model.image_prefix(image)[1]
stage("Q-Former")
if {release}:  # the proposal of docs/quantization.md: drop the vision side's mapped pages
    from minblip.weights import release
    parts = ("vision_model", "qformer", "query_tokens", "language_projection")
    released = sum(release(model.params[part]) for part in parts)
    stage("released")
    print("RELEASED", released, flush=True)
    # generate's language-model half on this prefix (generate itself would re-run the ViT)
    from minblip.config import is_decoder_only
    ids, embeds, mask = model.language_inputs(
        inputs.get("input_ids"), None, inputs.get("attention_mask"), prefix
    )
    kw = dict(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=20, min_new_tokens=20)
    if is_decoder_only(model.config):
        kw["input_ids"] = ids
    model.language_model.generate(**kw)
    stage("LM-20-tokens")
    sys.exit(0)
model.generate(**inputs, max_new_tokens=1, min_new_tokens=1)
stage("first-token")
model.generate(**inputs, max_new_tokens=20, min_new_tokens=20)
stage("20-tokens")
"""
)

PROFILE_CHILD = (
    r"""
import cProfile, json, pstats, sys, time
sys.path.insert(0, {root!r})
import minblip.opt, minblip.t5
"""
    + IMPORT
    + LOAD
    + r"""px = inputs["pixel_values"]
model.generate(**inputs, max_new_tokens=2, min_new_tokens=2)  # warm: Numba, first page touches
prof, wall = cProfile.Profile(), [0.0]
def profiled_steps(generate):
    # generate's step function, profiled from its second call on: the decode steps alone
    # (the first call is the prefill), without the vision tower and Q-Former around them
    def wrapped(step, *args, **kwargs):
        calls = [0]
        def timed(*a, **k):
            calls[0] += 1
            if calls[0] == 1:
                return step(*a, **k)
            t = time.perf_counter()
            prof.enable()
            try:
                return step(*a, **k)
            finally:
                prof.disable()
                wall[0] += time.perf_counter() - t
        return generate(timed, *args, **kwargs)
    return wrapped
def table(prof):
    stats = pstats.Stats(prof).stats  # {{(file, line, name): (cc, calls, tottime, cumtime, _)}}
    return {{f"{{k[0]}}:{{k[1]}}({{k[2]}})": (v[1], v[2]) for k, v in stats.items()}}
out = {{}}
vit = cProfile.Profile()
t = time.perf_counter()
vit.enable()
model._image(px)
vit.disable()
out["vit"] = (time.perf_counter() - t, table(vit))
steps = {steps}
minblip.opt.generate = profiled_steps(minblip.opt.generate)
minblip.t5.generate = profiled_steps(minblip.t5.generate)
model.generate(**inputs, max_new_tokens=1 + steps, min_new_tokens=1 + steps)
step = {{k: (n / steps, tt / steps) for k, (n, tt) in table(prof).items()}}
out["decode"] = (wall[0] / steps, step)
print("RESULT", json.dumps(out), flush=True)
"""
)

# Where a function's own time (cProfile tottime) is counted. The matrix products happen inside
# linear / matmul_stored (`@` is not a call cProfile sees), the attention products and masks
# inside the attention functions; Numba kernels are C calls, counted in their Python caller.
GROUPS = {
    "matmuls": (
        "linear",
        "matmul_stored",
        "_matvec_stored",
        "widen",
        "lm_head",
        "project_kv",
        "patch_embed",
    ),
    "attention": (
        "attention",
        "attention_per_head",
        "vision_attention",
        "opt_attention",
        "t5_attention",
        "position_bias",
        "relative_position_bucket",
        "with_mask",
        "causal_mask",
        "split_heads",
        "merge_heads",
    ),
    "norms": (
        "layer_norm",
        "_layer_norm_rows",
        "_row_stats",
        "rms_norm",
        "opt_norm",
        "torch_float32_sum",
        "_cascade",
    ),
    "softmax": ("softmax", "_softmax_rows", "log_softmax"),
    "activations": ("gelu", "_gelu_f32", "_gelu_f64", "gelu_tanh", "t5_ff"),
}


def group_of(func):
    name = func.rsplit("(", 1)[-1].rstrip(")")
    return next((g for g, names in GROUPS.items() if name in names), "other")


def print_profile(title, wall, stats, top=12):
    total = sum(tt for _, tt in stats.values())
    print(f"\n{title}: {wall * 1e3:.0f} ms wall, {total * 1e3:.0f} ms profiled (tottime)")
    groups = {}
    for func, (_, tt) in stats.items():
        groups[group_of(func)] = groups.get(group_of(func), 0.0) + tt
    for g, tt in sorted(groups.items(), key=lambda x: -x[1]):
        print(f"  {g:12}{tt * 1e3:10.1f} ms  {100 * tt / max(total, 1e-12):5.1f}%")
    print(f"  top {top} functions by tottime (calls, ms):")
    for func, (n, tt) in sorted(stats.items(), key=lambda x: -x[1][1])[:top]:
        where = func.replace(str(ROOT) + "/", "")
        print(f"    {tt * 1e3:9.1f}  {n:8.0f}  {group_of(func):11} {where}")


# Decode steps alternating between the kept one-thread int8 twin and its blocks on Numba's
# threads, in one process on the same inputs: the paired test behind "every twin is
# single-threaded" (docs/kernels.md).
THREADS_CHILD = (
    r"""
import json, sys, time
sys.path.insert(0, {root!r})
import numba
import minblip.opt, minblip.t5
from minblip import kernels
"""
    + IMPORT
    + LOAD
    + r"""@numba.njit(parallel=True)
def blocks_on_threads(x, W, scale, out):
    for c in numba.prange((W.shape[0] + kernels._ROWS - 1) // kernels._ROWS):
        if W.shape[1] > kernels._LONG_ROW:
            kernels._stored_block4(x, W, scale, out, c)
        else:
            kernels._stored_block(x, W, scale, out, c)
arms = {{"1 thread (kept)": kernels._matvec_stored, "2 threads": blocks_on_threads}}
times = []
def timed_steps(generate):  # the step function's calls after the first (the prefill)
    def wrapped(step, *args, **kwargs):
        calls = [0]
        def timed(*a, **k):
            calls[0] += 1
            t = time.perf_counter()
            try:
                return step(*a, **k)
            finally:
                if calls[0] > 1:
                    times.append(time.perf_counter() - t)
        return generate(timed, *args, **kwargs)
    return wrapped
minblip.opt.generate = timed_steps(minblip.opt.generate)
minblip.t5.generate = timed_steps(minblip.t5.generate)
for f in arms.values():  # warm: compile, first touches
    kernels._matvec_stored = f
    model.generate(**inputs, max_new_tokens=3, min_new_tokens=3)
steps = {{k: [] for k in arms}}
for _ in range({repeat}):
    for name, f in arms.items():
        kernels._matvec_stored = f
        times.clear()
        model.generate(**inputs, max_new_tokens=11, min_new_tokens=11)
        steps[name] += times
print("RESULT", json.dumps(steps), flush=True)
"""
)


def child_code(template, mode, folder, repeat=1, steps=3, release=False):
    return template.format(
        root=str(ROOT),
        folder=str(folder),
        load_kwargs={"bf16": {"dtype": "auto"}}.get(mode, {}),
        photo=str(PHOTO),
        repeat=repeat,
        steps=steps,
        release=release,
    )


def profile(mode, folder, steps):
    """cProfile of one ViT-g forward and of `steps` decode steps (averaged), grouped."""
    code = child_code(PROFILE_CHILD, mode, folder, steps=steps)
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"{mode}: the profiling child failed")
    result = json.loads(line.split(" ", 1)[1])
    print(f"minblip {mode} on {folder}, backend numba; load average {load_average()}")
    print_profile("one ViT-g forward (model._image)", *result["vit"])
    print_profile(f"one decode step (mean of {steps}; the step function alone)", *result["decode"])


def threads_ab(folder, rounds):
    """Median int8 decode step, one-thread twin against its blocks on 2 threads, paired."""
    code = child_code(THREADS_CHILD, "int8", folder, repeat=rounds)
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit("the threads A/B child failed")
    print(f"int8 decode steps on {folder}, {rounds} rounds of 10 steps per arm, alternating;")
    print(f"load average {load_average()}")
    for name, ts in json.loads(line.split(" ", 1)[1]).items():
        ts = sorted(ts)
        print(f"  {name:16} median {ts[len(ts) // 2] * 1e3:6.0f} ms, best {ts[0] * 1e3:6.0f} ms")


def memory(mode, folder, release=False):
    """VmHWM / VmRSS / RssAnon / RssFile of a fresh process after each stage of a caption.
    release: after the Q-Former, madvise(MADV_DONTNEED) the vision side's mapped weight pages
    (an experiment, not what minblip does): the peak the LM alone then sets."""
    code = child_code(MEMORY_CHILD, mode, folder, release=release)
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{mode}: the memory child failed")
    print(f"minblip {mode} on {folder} (GB; RssFile: memory-mapped weights, RssAnon: the rest)")
    print(f"{'stage':14}{'VmHWM':>8}{'VmRSS':>8}{'RssAnon':>9}{'RssFile':>9}")
    for line in out.stdout.splitlines():
        if line.startswith("RELEASED"):
            print(f"  (released {int(line.split()[1]) / 1e9:.2f} GB of mapped vision-side pages)")
        if line.startswith("STAGE"):
            _, name, *cells = line.split(" ")
            d = dict(c.split("=") for c in cells)
            print(
                f"{name:14}"
                + "".join(
                    f"{int(d[k]) / 1e9:{w}.2f}"
                    for k, w in (("VmHWM", 8), ("VmRSS", 8), ("RssAnon", 9), ("RssFile", 9))
                )
            )


def load_average():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def openblas_corename():
    libs = glob.glob(str(pathlib.Path(np.__file__).parent.parent / "numpy.libs" / "*openblas*"))
    for lib in libs:
        dll = ctypes.CDLL(lib)
        for name in ("scipy_openblas_get_corename64_", "openblas_get_corename64_"):
            f = getattr(dll, name, None)
            if f is not None:
                f.restype = ctypes.c_char_p
                return f().decode()
    return "unknown"


def bandwidth():
    """GB/s of reading a 1 GiB float32 array, best of 3: (a Numba sum on one thread, the same sum
    split over every core). The second is the decode bound's divisor: the fastest the machine
    reads (torch's and OpenBLAS' two-thread matrix-vector products read faster than one thread).
    Not np.sum: its pairwise summation reads 24 GB/s here, below what one core can read."""
    import numba

    # fastmath lets the sum be reassociated, so it runs in SIMD lanes: a strict float32 sum is one
    # add at a time, bound by the add's latency (9 GB/s here), not by memory. Each thread sums its
    # slice in a plain (non-parallel) function: the same loop inline in the prange body did not
    # vectorize and read 9 GB/s too.
    @numba.njit(fastmath=True, cache=False)
    def slice_sum(b):
        acc = np.float32(0)
        for i in range(b.size):
            acc += b[i]
        return acc

    @numba.njit(parallel=True, fastmath=True, cache=False)
    def parallel_sum(a):
        n = numba.get_num_threads()
        part = np.zeros(n, np.float32)
        for t in numba.prange(n):
            part[t] = slice_sum(a[a.size * t // n : a.size * (t + 1) // n])
        return part.sum()

    a = np.ones(1 << 28, np.float32)
    parallel_sum(a[:1024])  # compile
    slice_sum(a[:1024])
    one = min(_timed(lambda: slice_sum(a)) for _ in range(3))
    every = min(_timed(lambda: parallel_sum(a)) for _ in range(3))
    return a.nbytes / one / 1e9, a.nbytes / every / 1e9


def _timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


# ----------------------------------------------------------------------------- folders


def write_bf16(src, dst):
    """MODEL-bf16: every floating tensor of src rounded to bf16 (nearest even), one file."""
    from minblip.quantize import copy_side_files
    from minblip.weights import load_flat

    flat = load_flat(src)
    dst.mkdir(parents=True, exist_ok=True)
    header, offset = {}, 0
    for k in sorted(flat):
        a = flat[k]
        n = a.size * 2 if a.dtype == np.float32 else a.nbytes
        dt = "BF16" if a.dtype == np.float32 else {"int64": "I64"}[a.dtype.name]
        header[k] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(dst / "model.safetensors", "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        for k in sorted(flat):
            a = flat[k]
            if a.dtype != np.float32:
                f.write(a.tobytes())
                continue
            for r in range(0, max(a.shape[0], 1) if a.ndim else 1, 1024):
                u = np.ascontiguousarray(a[r : r + 1024] if a.ndim else a).view(np.uint32)
                u = u.astype(np.uint64)
                f.write(((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2").tobytes())
    copy_side_files(src, dst)
    config = json.loads((src / "config.json").read_text())
    config["dtype"] = "bfloat16"
    (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def prepare(model):
    src = pathlib.Path(model)
    if not (src / "config.json").exists():
        print(f"{src} missing: building it with tools/fullsize_blip2.py (about 6 min)")
        cmd = [GVENV, str(ROOT / "tools" / "fullsize_blip2.py"), str(src)]
        cmd += ["--lm", "flan-t5-xl"] if "t5" in src.name else []
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    bf16, int8 = src.with_name(src.name + "-bf16"), src.with_name(src.name + "-int8")
    if not (int8 / "model.safetensors").exists():
        from minblip.quantize import save_quantized

        t = time.perf_counter()
        done = save_quantized(src, int8)
        print(f"wrote {int8} ({done['bytes'] / 2**30:.2f} GiB) in {time.perf_counter() - t:.0f} s")
    if not (bf16 / "model.safetensors").exists():
        need = folder_bytes(src) // 2
        free = shutil.disk_usage(src.parent).free
        if free - need < 5 * 2**30:
            print(
                f"not writing {bf16}: it needs {need / 2**30:.1f} GiB and "
                f"{free / 2**30:.1f} GiB are free (5 GiB kept free); mode bf16 unavailable"
            )
        else:
            t = time.perf_counter()
            write_bf16(src, bf16)
            print(f"wrote {bf16} in {time.perf_counter() - t:.0f} s")
    return {"fp32": src, "bf16": bf16, "int8": int8, "torch": src}


def folder_bytes(folder):
    return sum(f.stat().st_size for f in pathlib.Path(folder).glob("*.safetensors"))


# ----------------------------------------------------------------------------- runs


def run(mode, folder, repeat):
    code = child_code(TORCH_CHILD if mode == "torch" else MINBLIP_CHILD, mode, folder, repeat)
    python = GVENV if mode == "torch" else sys.executable
    load = load_average()
    t0 = time.perf_counter()
    proc = subprocess.Popen([python, "-c", code], stdout=subprocess.PIPE, text=True)
    fresh, result = None, None
    for line in proc.stdout:
        if line.startswith("FRESH"):
            fresh = time.perf_counter() - t0
        elif line.startswith("RESULT"):
            result = json.loads(line.split(" ", 1)[1])
    if proc.wait() != 0 or result is None:
        raise SystemExit(f"{mode}: the child process failed")
    result["fresh"], result["load"] = fresh, load + " / " + load_average()
    return result


def weight_bytes_per_token(folder, mode):
    """Bytes a decode step reads: the language model's matrices as stored for this mode (OPT:
    every Linear and the tied LM head; T5: the decoder's Linears but the cross-attention k / v,
    computed once from the encoder's output, and the LM head). Embedding tables read one row."""
    from minblip.weights import load_flat

    flat = load_flat(folder, keep_16bit=mode == "bf16")
    if "language_model.shared.weight" in flat:  # T5

        def read(k):
            cross_kv = ".EncDecAttention.k." in k or ".EncDecAttention.v." in k
            return (k.startswith("language_model.decoder.") and not cross_kv) or k.startswith(
                "language_model.lm_head."
            )
    else:

        def read(k):
            return k.startswith("language_model.") and not k.endswith("embed_positions.weight")

    return sum(a.nbytes for k, a in flat.items() if a.ndim == 2 and read(k))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="/tmp/blip2-opt-2.7b")
    ap.add_argument("--modes", default="fp32,bf16,int8,torch")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--prepare", action="store_true", help="only write the bf16 / int8 folders")
    ap.add_argument("--memory", metavar="MODE", help="peak RSS stage by stage (fp32/bf16/int8)")
    ap.add_argument(
        "--release",
        action="store_true",
        help="with --memory: drop the vision side's mapped pages after the Q-Former",
    )
    ap.add_argument("--profile", metavar="MODE", help="cProfile one ViT-g and one decode step")
    ap.add_argument("--steps", type=int, default=3, help="decode steps --profile averages")
    ap.add_argument(
        "--threads-ab",
        action="store_true",
        help="int8 decode steps: the one-thread twin against its blocks on 2 threads, paired",
    )
    args = ap.parse_args()
    folders = prepare(args.model)
    if args.prepare:
        return
    if args.memory:
        return memory(args.memory, folders[args.memory], args.release)
    if args.profile:
        return profile(args.profile, folders[args.profile], args.steps)
    if args.threads_ab:
        return threads_ab(folders["int8"], max(3, args.repeat))
    env = {k: os.environ.get(k, "(unset)") for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    print(f"NumPy {np.__version__}, OpenBLAS kernel {openblas_corename()}, {env}")
    one, bw = bandwidth()
    print(
        f"memory bandwidth (1 GiB sum): {one:.1f} GB/s on one thread, {bw:.1f} GB/s "
        f"on {os.cpu_count()} (Numba; the bound's divisor); load average {load_average()}"
    )
    results = {}
    for mode in args.modes.split(","):
        results[mode] = run(mode, folders[mode], args.repeat)
        r = results[mode]
        print(f"{mode}: done (load {r['load']})", flush=True)
    base = results.get("torch")
    print(
        f"\n{'mode':8}{'ViT-g s':>9}{'Q-Former s':>11}{'1st tok s':>10}{'decode ms':>10}"
        f"{'bound ms':>9}{'20 tok s':>9}{'fresh s':>9}{'peak GB':>9}  load (before / after)"
    )
    for mode, r in results.items():
        nbytes = weight_bytes_per_token(folders[mode], mode) if mode != "torch" else None
        nbytes = nbytes or weight_bytes_per_token(folders["fp32"], "fp32")
        bound = nbytes / (bw * 1e9)
        print(
            f"{mode:8}{r['vit']:9.2f}{r['qformer']:11.3f}{r['first']:10.2f}"
            f"{r['decode'] * 1e3:10.0f}{bound * 1e3:9.0f}{r['caption20']:9.1f}{r['fresh']:9.1f}"
            f"{r['hwm'] / 1e9:9.2f}  {r['load']}"
        )
    if base:
        print("\nratio to transformers fp32 (< 1: minblip faster / smaller)")
        for mode, r in results.items():
            if mode == "torch":
                continue
            cells = [
                f"{k} {r[k] / base[k]:.2f}"
                for k in ("vit", "qformer", "first", "decode", "caption20", "fresh", "hwm")
            ]
            same = r["ids"] == base["ids"]
            print(f"{mode:8}" + "  ".join(cells) + f"  same 20-token caption ids: {same}")
    for mode, r in results.items():
        nbytes = weight_bytes_per_token(folders["fp32" if mode == "torch" else mode], mode)
        print(
            f"{mode}: {nbytes / 1e9:.2f} GB read per token; decode {r['decode'] * 1e3:.0f} ms = "
            f"{r['decode'] / (nbytes / (bw * 1e9)):.2f}x the bandwidth bound"
        )


if __name__ == "__main__":
    main()
