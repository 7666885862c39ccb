"""Mutation testing: deliberate bugs in the model math, each of which a named test must catch.

    /work/venv/bin/python tools/mutants.py               # every mutation (docs/testing.md: ~10 min)
    /work/venv/bin/python tools/mutants.py -k t5 -k opt  # those whose name holds t5 or opt
    /work/venv/bin/python tools/mutants.py --list        # names, files, tests; runs nothing
    /work/venv/bin/python tools/mutants.py --check       # every mutation still applies; no tests

Why a list of our own rather than mutmut: mutmut mutates every operator it finds, and most of
those mutants are either caught at import or are equivalent (a ulp of rounding that a tolerance
absorbs by design), and each needs a full test run; here every mutation is a bug someone could
write -- a wrong scale, an off-by-one in a mask, a swapped branch, a skipped step -- with the few
test files that should catch it, so a full run takes minutes, and a survivor is a gap to close.

Each mutation is an exact (file, old text, new text) replacement that must match exactly once:
when the code moves on and the old text is gone (or appears twice), the tool refuses that
mutation by name (exit status 2) instead of silently testing nothing. It works on a scratch copy
of the repository (the files git knows, committed or not), one mutation at a time, restored after
each run; the working tree is never written. A mutation in a Numba kernel body runs its tests
with NUMBA_DISABLE_JIT=1, so the body runs as Python (and the cache cannot serve the unmutated
compile). HYPOTHESIS_PROFILE=ci: the same examples on every run.

Output: one line per mutation, "caught by <first failing test>" or "SURVIVED"; exit status 1 if
any survived.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TIMEOUT = 600  # seconds per mutation; a hang counts as caught (the suite would time out)


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    old: str
    new: str
    tests: tuple
    numba_off: bool = False  # the mutation is inside a Numba kernel body


# Test selections, per area: the files whose tests should catch a bug there.
WEIGHTS = ("tests/test_weights.py", "tests/test_bad_inputs.py")
PRE = ("tests/test_preprocess.py",)
TOK = ("tests/test_tokenize.py", "tests/test_tokenize_blip2.py")
VIS = ("tests/test_vision.py", "tests/test_blip2_vision.py")
BERT = ("tests/test_text_bert.py", "tests/test_caption.py")
QF = ("tests/test_blip2_qformer.py", "tests/test_blip2_tasks.py")
OPT = ("tests/test_opt.py",)
T5 = ("tests/test_t5.py",)
B2 = ("tests/test_blip2_generation.py", "tests/test_blip2_tasks.py")
GEN = ("tests/test_generation.py", "tests/test_generate.py", "tests/test_caption.py")
LP = ("tests/test_logits_process.py", "tests/test_generation.py")
KERN = ("tests/test_kernels.py",)
F64 = ("tests/test_kernels.py", "tests/test_vision.py", "tests/test_blip2_qformer.py")


def M(name, file, old, new, tests, numba_off=False):
    return Mutant(name, file, old, new, tuple(tests), numba_off)


W, S = "minblip/weights.py", "minblip/safetensors_check.py"
P, TK, V = "minblip/preprocess.py", "minblip/tokenize.py", "minblip/vision.py"
TB, Q, OP, T = "minblip/text_bert.py", "minblip/qformer.py", "minblip/opt.py", "minblip/t5.py"
B, G, L = "minblip/blip2.py", "minblip/generate.py", "minblip/logits_process.py"
K, OPS = "minblip/kernels.py", "minblip/ops.py"

MUTANTS = [
    # ------------------------------------------------------------------ loader
    M(
        "weights/shard-stray-tensors-accepted",
        W,
        "stray = [k for k in part if weight_map.get(k) != name]",
        "stray = []",
        WEIGHTS,
    ),
    M(
        "weights/index-absent-tensors-accepted",
        W,
        "absent = sorted(set(weight_map) - set(flat))",
        "absent = []",
        WEIGHTS,
    ),
    M(
        "weights/layer-index-gaps-accepted",
        W,
        "if idx != list(range(len(idx))):",
        "if idx[0] != 0:",
        WEIGHTS,
    ),
    M(
        "weights/shape-unchecked",
        W,
        "if tuple(a.shape) != tuple(shape):",
        "if len(a.shape) != len(shape):",
        WEIGHTS,
    ),
    M(
        "weights/dtype-unchecked",
        W,
        'if a.dtype.kind != "f" and not (k in stored and a.dtype in STORED_DTYPES):',
        'if a.dtype.kind == "c" and not (k in stored and a.dtype in STORED_DTYPES):',
        WEIGHTS,
    ),
    M(
        "weights/extra-keys-accepted",
        W,
        "extra = [k for k in flat if k not in expected and not ignore(k)]",
        "extra = [k for k in flat if k not in expected and not ignore(k) and 'layer' not in k]",
        WEIGHTS,
    ),
    M(
        "safetensors/header-past-file-end",
        S,
        "if n < 2 or n > min(MAX_HEADER_BYTES, size - 8):",
        "if n < 2 or n > MAX_HEADER_BYTES:",
        WEIGHTS,
    ),
    M(
        "safetensors/short-data-accepted",
        S,
        "if end - begin != nbytes:",
        "if end - begin < nbytes:",
        WEIGHTS,
    ),
    M(
        "safetensors/gap-accepted",
        S,
        "if begin != at:",
        "if begin < at:",
        WEIGHTS,
    ),
    M(
        "safetensors/trailing-bytes-accepted",
        S,
        "if at < data_len:",
        "if at < data_len - 8:",
        WEIGHTS,
    ),
    # ------------------------------------------------------------------ preprocessing
    M(
        "preprocess/rescale-in-float32",
        P,
        "x = (x.astype(np.float64) * self.rescale_factor).astype(np.float32)",
        "x = x.astype(np.float32) * np.float32(self.rescale_factor)",
        PRE,
    ),
    M(
        "preprocess/normalize-multiplies-by-inverse",
        P,
        "return (x - mean) / std",
        "return (x - mean) * (1 / std)",
        PRE,
    ),
    M(
        "preprocess/resize-height-width-swapped",
        P,
        "pil.resize((width, height),",
        "pil.resize((height, width),",
        PRE,
    ),
    M(
        "preprocess/alpha-dropped-not-composited",
        P,
        'image = Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")',
        'image = image.convert("RGB")',
        PRE,
    ),
    M(
        "preprocess/integer-blend-truncated",
        P,
        "x = np.round(rgb).astype(x.dtype) if white == 255 else rgb.astype(x.dtype)",
        "x = rgb.astype(x.dtype)",
        PRE,
    ),
    M(
        "preprocess/shortest-edge-truncated",
        P,
        "s = int(round(raw))",
        "s = int(raw)",
        PRE,
    ),
    # ------------------------------------------------------------------ tokenizer
    M(
        "tokenizer/vocab-not-lowercased",
        TK,
        'lower = config.get("do_lower_case", True)',
        'lower = config.get("do_lower_case", False)',
        TOK,
    ),
    M(
        "tokenizer/pair-type-ids-zero",
        TK,
        'pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1"',
        'pair=f"{cls}:0 $A:0 {sep}:0 $B:0 {sep}:0"',
        TOK,
    ),
    M(
        "tokenizer/default-padding-left",
        TK,
        'self.padding_side = config.get("padding_side", "right")',
        'self.padding_side = config.get("padding_side", "left")',
        TOK,
    ),
    M(
        "tokenizer/max-length-does-not-truncate",
        TK,
        'truncation = "longest_first"  # transformers: max_length alone implies truncation',
        "truncation = None",
        TOK,
    ),
    M(
        "tokenizer/decode-no-cleanup",
        TK,
        "return _clean_up(text) if clean and self.strip_spaces_on_cleanup else text",
        "return text",
        TOK,
    ),
    # ------------------------------------------------------------------ vision tower
    M(
        "vision/interpolation-skipped-for-non-square-same-count",
        V,
        "if n_patches == G2 and Hs == Ws:",
        "if n_patches == G2:",
        VIS,
    ),
    M(
        "vision/attention-scale-uses-width",
        V,
        "scale=(D // H) ** -0.5",
        "scale=D**-0.5",
        VIS,
    ),
    M(
        "vision/pooled-without-second-layernorm",
        V,
        'pooled = tap("post_layernorm", layer_norm(last[:, 0], p["post_layernorm"], '
        "cfg.layer_norm_eps))",
        'pooled = tap("post_layernorm", last[:, 0])',
        VIS,
    ),
    M(
        "vision/small-image-takes-last-position-rows",
        V,
        'return tap("embeddings", x + pos[:, : x.shape[1]])',
        'return tap("embeddings", x + pos[:, pos.shape[1] - x.shape[1] :])',
        VIS,
    ),
    M(
        "vision/patches-column-major",
        OPS,
        "x = x.transpose(0, 2, 4, 1, 3, 5).reshape(B, gh * gw, C * patch * patch)",
        "x = x.transpose(0, 4, 2, 1, 3, 5).reshape(B, gh * gw, C * patch * patch)",
        VIS,
    ),
    M(
        "vision/bicubic-a-0.5",
        OPS,
        "A = dtype.type(-0.75)",
        "A = dtype.type(-0.5)",
        VIS,
    ),
    # ------------------------------------------------------------------ BERT text tower
    M(
        "bert/scores-divided-by-dh",
        TB,
        "attention(q, k, v, math.sqrt(q.shape[-1]), mask, divide=True)",
        "attention(q, k, v, q.shape[-1], mask, divide=True)",
        BERT,
    ),
    M(
        "bert/decoder-sees-next-token",
        TB,
        "allowed = allowed & (np.arange(Tk) <= past_len + np.arange(T)[:, None])  # causal",
        "allowed = allowed & (np.arange(Tk) <= past_len + np.arange(T)[:, None] + 1)",
        BERT,
    ),
    M(
        "bert/output-without-residual",
        TB,
        'out = layer_norm(linear(h, p["dense"]) + residual, p["LayerNorm"], cfg.layer_norm_eps)',
        'out = layer_norm(linear(h, p["dense"]), p["LayerNorm"], cfg.layer_norm_eps)',
        BERT,
    ),
    M(
        "bert/positions-restart-after-cache",
        TB,
        "position_ids = np.arange(past_len, past_len + T)[None, :]",
        "position_ids = np.arange(T)[None, :]",
        BERT,
    ),
    M(
        "bert/tanh-gelu",
        TB,
        'h = ACT2FN[cfg.hidden_act](linear(a, p["intermediate"]["dense"]))',
        'h = ACT2FN["gelu_new"](linear(a, p["intermediate"]["dense"]))',
        BERT,
    ),
    # ------------------------------------------------------------------ Q-Former
    M(
        "qformer/scale-off-by-one-head-dim",
        Q,
        "attention(q, k, v, q.shape[-1] ** -0.5, mask, return_probs=output_attentions)",
        "attention(q, k, v, (q.shape[-1] + 1) ** -0.5, mask, return_probs=output_attentions)",
        QF,
    ),
    M(
        "qformer/text-takes-query-ffn",
        Q,
        'yt = qformer_ffn(a[:, Q:], p, ("intermediate", "output"), cfg)',
        'yt = qformer_ffn(a[:, Q:], p, ("intermediate_query", "output_query"), cfg)',
        QF,
    ),
    M(
        "qformer/no-input-layernorm",
        Q,
        'x = tap("layernorm", layer_norm(x, p["layernorm"], cfg.layer_norm_eps))',
        'x = tap("layernorm", x)',
        QF,
    ),
    M(
        "qformer/cross-attention-in-odd-layers",
        Q,
        "if i % cfg.cross_attention_frequency == 0:",
        "if i % cfg.cross_attention_frequency == cfg.cross_attention_frequency - 1:",
        QF,
    ),
    # ------------------------------------------------------------------ OPT
    M(
        "opt/left-padding-shifts-positions",
        OP,
        "return (np.cumsum(m, axis=1) * m - 1)[:, past_len:]",
        "return (np.cumsum(m, axis=1) - 1)[:, past_len:]",
        OPT,
    ),
    M(
        "opt/position-offset-1",
        OP,
        "OFFSET = 2  #",
        "OFFSET = 1  #",
        OPT,
    ),
    M(
        "opt/scaling-uses-width",
        OP,
        "scaling = np.asarray((cfg.hidden_size // H) ** -0.5, x.dtype)",
        "scaling = np.asarray(cfg.hidden_size**-0.5, x.dtype)",
        OPT,
    ),
    M(
        "opt/causal-mask-excludes-self",
        OP,
        "allowed = (np.arange(S) <= past_len + np.arange(T)[:, None])[None, None]  # causal",
        "allowed = (np.arange(S) < past_len + np.arange(T)[:, None])[None, None]  # causal",
        OPT,
    ),
    M(
        "opt/no-final-layer-norm",
        OP,
        "    if cfg.do_layer_norm_before and not cfg._remove_final_layer_norm:\n        x = tap(",
        "    if False:\n        x = tap(",
        OPT,
    ),
    # ------------------------------------------------------------------ T5
    M(
        "t5/rms-variance-unbiased",
        T,
        "var = torch_float32_sum(x32 * x32) / np.float32(x.shape[-1])",
        "var = torch_float32_sum(x32 * x32) / np.float32(x.shape[-1] - 1)",
        T5,
    ),
    M(
        "t5/bucket-self-counts-as-after",
        T,
        "bucket += (rel > 0) * num_buckets",
        "bucket += (rel >= 0) * num_buckets",
        T5,
    ),
    M(
        "t5/log-buckets-span-from-zero",
        T,
        "scaled = log_ratio / np.float32(math.log(max_distance / max_exact))",
        "scaled = log_ratio / np.float32(math.log(max_distance))",
        T5,
    ),
    M(
        "t5/gate-on-the-wrong-branch",
        T,
        'h = act(linear(h, d["wi_0"])) * linear(h, d["wi_1"])',
        'h = linear(h, d["wi_0"]) * act(linear(h, d["wi_1"]))',
        T5,
    ),
    M(
        "t5/tied-head-not-rescaled",
        T,
        "h = h * np.asarray(cfg.d_model**-0.5, h.dtype)",
        "h = h * np.asarray(1.0, h.dtype)",
        T5,
    ),
    M(
        "t5/labels-minus-100-kept",
        T,
        "return np.where(out == -100, cfg.pad_token_id, out)",
        "return out",
        T5,
    ),
    # ------------------------------------------------------------------ BLIP-2 composition
    M(
        "blip2/prefix-scattered-in-reverse",
        B,
        "out[placeholders] = prefix.reshape(B * Q, D)",
        "out[placeholders] = prefix[:, ::-1].reshape(B * Q, D)",
        B2,
    ),
    M(
        "blip2/default-prompt-bos-first",
        B,
        "start = [token] * cfg.num_query_tokens + [bos]",
        "start = [bos] + [token] * cfg.num_query_tokens",
        B2,
    ),
    M(
        "blip2/embeds-placeholders-assumed-first",
        B,
        "placeholders = np.all(embeds == row, axis=-1)",
        "placeholders = np.broadcast_to(np.arange(embeds.shape[1]) < cfg.num_query_tokens, "
        "embeds.shape[:2])",
        B2,
    ),
    M(
        "blip2/query-mask-after-text",
        B,
        "mask = np.concatenate([np.ones((ids.shape[0], Qn), np.int64), mask], axis=1)",
        "mask = np.concatenate([mask, np.ones((ids.shape[0], Qn), np.int64)], axis=1)",
        B2,
    ),
    M(
        "blip2/qformer-pooler-mean",
        B,
        "last_hidden_state=query_output, pooler_output=query_output[:, 0]",
        "last_hidden_state=query_output, pooler_output=query_output.mean(1)",
        B2,
    ),
    # ------------------------------------------------------------------ generate
    M(
        "generate/length-penalty-counts-prompt",
        G,
        "s = top_scores / np.float32((cur + 1 - Tp) ** lpen)",
        "s = top_scores / np.float32((cur + 1) ** lpen)",
        GEN,
    ),
    M(
        "generate/beam-sampling-wrong-temperature",
        G,
        "p = softmax(acc_row.astype(np.float64))",
        "p = softmax(acc_row.astype(np.float64) / 0.7)",
        GEN,
    ),
    M(
        "generate/finished-rows-emit-eos",
        G,
        "tok = np.where(unfinished, tok, pad)",
        "tok = np.where(unfinished, tok, eos[0])",
        GEN,
    ),
    M(
        "generate/early-stopping-ignored",
        G,
        'done["finished"].all(-1, keepdims=True) & (early is True)',
        'done["finished"].all(-1, keepdims=True) & (early is None)',
        GEN,
    ),
    M(
        "generate/repetition-ignores-no-padding",
        G,
        "return np.repeat(np.argmax(mask != 0, axis=1), copies)",
        "return np.repeat(np.zeros(len(mask), np.int64), copies)",
        GEN + ("tests/test_opt.py", "tests/test_blip2_generation.py"),
    ),
    M(
        "generate/beam-candidates-k",
        G,
        "C = max(2, 1 + len(eos)) * K",
        "C = K",
        GEN,
    ),
    # ------------------------------------------------------------------ logits processors
    M(
        "logits/repetition-penalty-branches-swapped",
        L,
        "penalised = np.where(scores < 0, scores * penalty, scores / penalty)",
        "penalised = np.where(scores < 0, scores / penalty, scores * penalty)",
        LP,
    ),
    M(
        "logits/no-repeat-ngram-any-prefix-token",
        L,
        "hit = (windows[..., :-1] == prefix[:, None, :]).all(-1)",
        "hit = (windows[..., :-1] == prefix[:, None, :]).any(-1)",
        LP,
    ),
    M(
        "logits/top-k-drops-ties",
        L,
        "return np.where(scores < kth, NEG_INF, scores)",
        "return np.where(scores <= kth, NEG_INF, scores)",
        LP,
    ),
    M(
        "logits/top-p-strict",
        L,
        "remove_sorted = cum <= (1 - p)",
        "remove_sorted = cum < (1 - p) - 1e-3",
        LP,
    ),
    M(
        "logits/min-p-absolute",
        L,
        "remove = probs < np.float32(p) * probs.max(-1, keepdims=True)",
        "remove = probs < np.float32(p)",
        LP,
    ),
    M(
        "logits/typical-entropy-sign",
        L,
        "ent = -np.nansum(normalized * p, -1, keepdims=True)",
        "ent = np.nansum(normalized * p, -1, keepdims=True)",
        LP,
    ),
    M(
        "logits/cutoff-ignores-min-keep",
        L,
        "return np.where(remove & (scores < kth), NEG_INF, scores)",
        "return np.where(remove, NEG_INF, scores)",
        LP,
    ),
    M(
        "logits/eta-max-not-min",
        L,
        "np.minimum(eps, np.sqrt(eps) * np.exp(-entropy))",
        "np.maximum(eps, np.sqrt(eps) * np.exp(-entropy))",
        LP,
    ),
    M(
        "logits/sequence-bias-any-prefix-token",
        L,
        "match = (ids[:, T - n :] == np.asarray(seq[:-1])).all(-1)",
        "match = (ids[:, T - n :] == np.asarray(seq[:-1])).any(-1)",
        LP,
    ),
    M(
        "logits/forced-eos-one-step-late",
        L,
        "if ids.shape[1] == max_length - 1 else s",
        "if ids.shape[1] == max_length else s",
        LP,
    ),
    M(
        "logits/exponential-decay-one-step-more",
        L,
        "penalty = np.abs(s) * np.float32(pow(factor, steps) - 1)",
        "penalty = np.abs(s) * np.float32(pow(factor, steps + 1) - 1)",
        LP,
    ),
    M(
        "logits/begin-suppress-every-step",
        L,
        "if ids.shape[1] == begin else s",
        "if ids.shape[1] >= begin else s",
        LP,
    ),
    M(
        "logits/min-new-tokens-one-more",
        L,
        "if ids.shape[1] - prompt_len < min_new_tokens else s",
        "if ids.shape[1] - prompt_len <= min_new_tokens else s",
        LP,
    ),
    M(
        "logits/min-length-one-more",
        L,
        "if ids.shape[1] < min_length else s)",
        "if ids.shape[1] <= min_length else s)",
        LP,
    ),
    M(
        "logits/beam-sampling-keeps-one",
        L,
        "keep = len(eos_ids) + 1 if num_beams > 1 else 1",
        "keep = 1",
        LP,
    ),
    M(
        "logits/temperature-multiplies",
        L,
        "return scores / t",
        "return scores * t",
        LP,
    ),
    M(
        "logits/remove-invalid-inf-signs-swapped",
        L,
        "return np.where(out == np.inf, info.max, np.where(out == -np.inf, info.min, out))",
        "return np.where(out == np.inf, info.min, np.where(out == -np.inf, info.max, out))",
        LP,
    ),
    # ------------------------------------------------------------------ kernels
    M(
        "kernels/gelu-no-clamp-beyond-zmax",
        K,
        "e = min(max(e, -one), one)  #",
        "e = e  #",
        KERN + ("-k", "gelu"),
        numba_off=True,
    ),
    M(
        "kernels/gelu-erf-sign",
        K,
        "out[i] = half * v * (one + e)",
        "out[i] = half * v * (one - e)",
        KERN + ("-k", "gelu"),
        numba_off=True,
    ),
    M(
        "kernels/softmax-sum-off",
        K,
        "o[i] = e[i] / s",
        "o[i] = e[i] / (s + np.float32(1e-6))",
        KERN + ("-k", "softmax"),
        numba_off=True,
    ),
    M(
        "kernels/softmax-sum-misses-last-column",
        K,
        "s = _sum(e)",
        "s = _sum(e[: N - 1])",
        KERN + ("-k", "softmax"),
        numba_off=True,
    ),
    M(
        "kernels/layer-norm-eps-outside-sqrt",
        K,
        "return mean, np.float32(np.sqrt(np.float32(q / N) + eps))",
        "return mean, np.float32(np.sqrt(np.float32(q / N)) + eps)",
        KERN + ("-k", "layer_norm"),
        numba_off=True,
    ),
    M(
        "kernels/attention-scale-always-folded-into-q",
        K,
        "exact = math.frexp(scale)[0] == 0.5",
        "exact = True",
        KERN + ("-k", "attention"),
    ),
    M(
        "kernels/stored-bf16-shift-15",  # the intrinsic's code, so run compiled
        K,
        "return builder.bitcast(builder.shl(bits, bits.type(16)), f32)",
        "return builder.bitcast(builder.shl(bits, bits.type(15)), f32)",
        KERN + ("-k", "matmul_stored"),
    ),
    M(
        "kernels/stored-block4-drops-a-short-tail",
        K,
        "for k in range(min(4, hi - o)):",
        "for k in range(min(4, hi - o) // 4 * 4):",
        KERN + ("-k", "matmul_stored"),
        numba_off=True,
    ),
    M(
        "kernels/stored-block-scale-of-next-row",
        K,
        "out[m, o] = s * scale[o]",
        "out[m, o] = s * scale[min(o + 1, W.shape[0] - 1)]",
        KERN + ("-k", "matmul_stored"),
        numba_off=True,
    ),
    M(
        "ops/layer-norm-eps-outside-sqrt",
        OPS,
        'return xc / np.sqrt(var + eps) * p["weight"] + p["bias"]',
        'return xc / (np.sqrt(var) + eps) * p["weight"] + p["bias"]',
        F64,
    ),
    M(
        "ops/softmax-without-max-shift",
        OPS,
        "e = np.subtract(x, x.max(axis=axis, keepdims=True), out=out)",
        "e = np.subtract(x, x.min(axis=axis, keepdims=True), out=out)",
        F64,
    ),
]


def area(m):
    return m.name.split("/")[0]


def tracked_files(root):
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout
    return [f for f in out.decode().split("\0") if f]


def scratch_copy(root):
    dest = Path(tempfile.mkdtemp(prefix="minblip-mutants-"))
    for rel in tracked_files(root):
        src = root / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def stale(mutants, root):
    """Names of mutations whose old text no longer occurs exactly once, with the count."""
    bad = []
    for m in mutants:
        path = root / m.file
        n = path.read_text().count(m.old) if path.is_file() else 0
        if n != 1:
            bad.append(f"{m.name}: {m.file} holds the old text {n} times")
    return bad


def run_tests(scratch, tests, numba_off):
    env = dict(os.environ, PYTHONPATH=str(scratch), HYPOTHESIS_PROFILE="ci")
    env.pop("NUMBA_DISABLE_JIT", None)
    if numba_off:
        env["NUMBA_DISABLE_JIT"] = "1"
    cmd = [PYTHON, "-m", "pytest", "-x", "-q", "-rf", "-p", "no:cacheprovider", *tests]
    try:
        res = subprocess.run(
            cmd, cwd=scratch, env=env, capture_output=True, text=True, timeout=TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return "timeout"
    if res.returncode == 0:
        return None
    failed = re.findall(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", res.stdout, re.M)
    return failed[0] if failed else f"pytest exit {res.returncode}: " + res.stdout[-300:]


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds: the running pytest is killed, the copy removed


def main(argv=None):
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", action="append", default=[], help="run mutations whose name has this")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--check", action="store_true", help="check every mutation still applies")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.k or any(k in m.name for k in args.k)]
    names = [m.name for m in MUTANTS]
    assert len(names) == len(set(names)), "duplicate mutation names"
    if args.list:
        for m in chosen:
            jit = " [NUMBA_DISABLE_JIT=1]" if m.numba_off else ""
            print(f"{m.name:52} {m.file:28} {' '.join(m.tests)}{jit}")
        counts = {}
        for m in chosen:
            counts[area(m)] = counts.get(area(m), 0) + 1
        print(f"{len(chosen)} mutations: " + ", ".join(f"{a} {n}" for a, n in counts.items()))
        return 0
    bad = stale(chosen, ROOT)
    if bad:
        print("refusing stale mutation(s):\n  " + "\n  ".join(bad))
        return 2
    if args.check:
        print(f"{len(chosen)} mutations apply")
        return 0
    scratch = scratch_copy(ROOT)
    start, survivors = time.perf_counter(), []
    print(f"{len(chosen)} mutations on a scratch copy at {scratch}", flush=True)
    try:
        for i, m in enumerate(chosen, 1):
            path = scratch / m.file
            original = path.read_text()
            path.write_text(original.replace(m.old, m.new, 1))
            t0 = time.perf_counter()
            try:
                caught = run_tests(scratch, m.tests, m.numba_off)
            finally:
                path.write_text(original)
            verdict = f"caught by {caught}" if caught else "SURVIVED"
            if not caught:
                survivors.append(m.name)
            print(
                f"[{i:2}/{len(chosen)}] {m.name:58} {verdict} ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    mins = (time.perf_counter() - start) / 60
    print(
        f"{len(chosen) - len(survivors)}/{len(chosen)} caught, {len(survivors)} survived "
        f"({mins:.1f} min)" + ("".join(f"\n  survivor: {s}" for s in survivors))
    )
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
