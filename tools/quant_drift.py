"""How far int8 weight-only BLIP-2 drifts from float32: logits, top-1 tokens, captions.

    python tools/quant_drift.py [--model /tmp/blip2-opt-w4] [--prompts 8] [--max-new-tokens 20]

The model is a BLIP-2 OPT folder: full-size (tools/fullsize_blip2.py /tmp/blip2-opt-2.7b) or
full-width with fewer layers (tools/fullsize_blip2.py /tmp/blip2-opt-w4 --opt-layers 4
--vision-layers 4: every matrix of blip2-opt-2.7b's width, so each product rounds as the real
one does). It is loaded twice: float32 and load_in_8bit=True (minblip/quantize.py).

Cases: every golden photo (golden/images) captioned without a prompt, then --prompts random
prompts (random token ids, 3 to 12 of them) each with a photo. For each case:
  - float32 greedy-generates --max-new-tokens tokens;
  - both models run forward (teacher-forced) on that same row, so each step's logits are
    compared on the same prefix: max and mean |int8 - float32| (and float32's logit std, the
    scale they are errors on), and whether the arg-max agrees, step by step;
  - int8 greedy-generates on its own: is its caption (the new ids) identical to float32's?
Printed as a table and a summary (what docs/quantization.md quotes). Random weights are not a
trained model: tools/fullsize_blip2.py's give logits with a std of ~25, so the top-1 margin is
wide and a flip needs a large error; a trained model's close calls may flip where these do not.
The figures measure the arithmetic, not the caption quality of a trained BLIP-2.
"""

import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from minblip import Blip2ForConditionalGeneration  # noqa: E402
from minblip.pipeline import prompt_length  # noqa: E402
from minblip.preprocess import load_image  # noqa: E402
from minblip.processing import Blip2Processor  # noqa: E402

IMAGES = pathlib.Path(__file__).resolve().parent.parent / "golden" / "images"


def cases(processor, n_prompts, rng):
    photos = sorted(IMAGES.glob("*.png"))
    out = [(p.name, processor(images=load_image(p))) for p in photos]
    vocab = processor.tokenizer.vocab_size if hasattr(processor.tokenizer, "vocab_size") else 50000
    for i in range(n_prompts):
        photo = photos[i % len(photos)]
        ids = rng.integers(4, min(vocab, 50000), rng.integers(3, 13)).tolist()
        text = processor.tokenizer.decode(ids)
        out.append(
            (f"{photo.name} + random prompt {i}", processor(images=load_image(photo), text=text))
        )
    return out


def step_logits(model, inputs, sequence, n_in):
    """Forward on the whole generated row: the logits that predicted each new token."""
    ids = sequence[None, :-1]
    out = model(
        pixel_values=inputs["pixel_values"], input_ids=ids, attention_mask=np.ones_like(ids)
    )
    return out.logits[0, n_in - 1 :]  # (steps, V)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="/tmp/blip2-opt-w4")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    print(f"model {args.model}; load average {load}")
    t0 = time.perf_counter()
    fp32 = Blip2ForConditionalGeneration.from_pretrained(args.model)
    int8 = Blip2ForConditionalGeneration.from_pretrained(args.model, load_in_8bit=True)
    print(f"loaded both (int8 quantized on load) in {time.perf_counter() - t0:.1f} s")
    processor = Blip2Processor.from_pretrained(args.model)
    if processor.num_query_tokens is None:
        processor.num_query_tokens = fp32.config.num_query_tokens
    rng = np.random.default_rng(args.seed)
    gen = dict(max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens)
    rows, agree_steps, same = [], [], 0
    print(
        f"{'case':40}{'steps':>6}{'max err':>10}{'mean err':>10}{'logit std':>10}"
        f"{'top-1 agree':>12}{'same caption':>14}"
    )
    for name, inputs in cases(processor, args.prompts, rng):
        n_in = prompt_length(fp32, inputs, "input_ids" in inputs or None)  # the row before
        seq = fp32.generate(**inputs, **gen)[0]
        own = int8.generate(**inputs, **gen)[0]
        a = step_logits(fp32, inputs, seq, n_in)
        b = step_logits(int8, inputs, seq, n_in)
        err = np.abs(a - b)
        agree = a.argmax(-1) == b.argmax(-1)
        identical = np.array_equal(seq[n_in:], own[n_in:])
        same += identical
        agree_steps.append(agree)
        rows.append((err.max(), err.mean(), a.std()))
        print(
            f"{name:40}{len(agree):6d}{err.max():10.4f}{err.mean():10.5f}{a.std():10.4f}"
            f"{agree.mean():12.1%}{str(identical):>14}"
        )
    agree_all = np.concatenate(agree_steps)
    per_step = np.array(
        [s[: args.max_new_tokens] for s in agree_steps if len(s) >= args.max_new_tokens]
    )
    mx, mean, std = (np.array(c) for c in zip(*rows))
    print(
        f"\nsummary over {len(rows)} cases: max logit error {mx.max():.4f} (median over cases "
        f"{np.median(mx):.4f}), mean logit error {mean.mean():.5f}, float32 logit std "
        f"{std.mean():.4f}; top-1 agreement {agree_all.mean():.1%} of {agree_all.size} steps; "
        f"identical greedy captions {same}/{len(rows)} ({same / len(rows):.0%})"
    )
    if per_step.size:
        print("top-1 agreement per step: " + " ".join(f"{v:.0%}" for v in per_step.mean(0)))
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
