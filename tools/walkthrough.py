"""Print (or write into docs/walkthrough.md) the walkthrough's output blocks, from a run.

    python tools/walkthrough.py            # print every block
    python tools/walkthrough.py --write    # replace the blocks in docs/walkthrough.md

Each block of docs/walkthrough.md sits between `<!-- walkthrough:NAME -->` and the closing
fence of the ```text block that follows it; blocks() computes them all: the symbols of the tiny
golden models and of the hub checkpoints (from their configs), one photo through BLIP
captioning and through BLIP-2 (OPT and T5) with every recorded module's shape
(minblip.trace.record()), and the parameter counts of the real checkpoints from the key
listings expected_shapes(config) (no weights needed). tests/test_walkthrough.py regenerates
them and fails when the doc's text differs.
"""

import argparse
import pathlib
import re
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout
from minblip import Blip2ForConditionalGeneration, BlipForConditionalGeneration, trace  # noqa: E402
from minblip.config import blip2_config_from_dict, blip_config_from_dict  # noqa: E402
from minblip.preprocess import BlipImageProcessor  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # tools/
import fullsize  # noqa: E402
import fullsize_blip2  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "walkthrough.md"
PHOTO = ROOT / "golden" / "images" / "coffee.png"
TINY_BLIP = ROOT / "golden" / "caption" / "forward_labels" / "model"
TINY_BLIP2 = {
    "opt": ROOT / "golden" / "blip2_generation" / "opt_forward" / "model",
    "t5": ROOT / "golden" / "blip2_generation" / "t5_forward" / "model",
}
NEW_TOKENS = 3  # a short generate: the tiny models' words mean nothing, their shapes do

# The hub configs (the values ../shared/spec/checkpoints.md §2 gives for each repository's
# config.json); fields they leave out take transformers' class defaults, as in the real files.
BLIP_TEXT, BLIP_VISION_BASE = fullsize.TEXT, fullsize.VISION  # blip-image-captioning-base
BLIP_VISION_LARGE = dict(
    BLIP_VISION_BASE,
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
)
OPT_2_7B = fullsize_blip2.OPT_2_7B
FLAN_T5_XL = fullsize_blip2.FLAN_T5_XL


def hub_configs():
    """{repo: (model class, config)} of the four checkpoints the walkthrough counts."""

    def blip(vision):
        d = dict(model_type="blip", text_config=BLIP_TEXT, vision_config=vision)
        return BlipForConditionalGeneration, blip_config_from_dict(d)

    def blip2(text, token, decoder_only):
        d = dict(
            model_type="blip-2",
            num_query_tokens=32,
            image_text_hidden_size=256,
            image_token_index=token,
            use_decoder_only_language_model=decoder_only,
            text_config=text,
        )
        return Blip2ForConditionalGeneration, blip2_config_from_dict(d)

    return {
        "Salesforce/blip-image-captioning-base": blip(BLIP_VISION_BASE),
        "Salesforce/blip-image-captioning-large": blip(BLIP_VISION_LARGE),
        "Salesforce/blip2-opt-2.7b": blip2(OPT_2_7B, 50265, True),
        "Salesforce/blip2-flan-t5-xl": blip2(FLAN_T5_XL, 32100, False),
    }


# ----------------------------------------------------------------------------- formatting


def table(rows):
    """Left-aligned columns, two spaces apart; numbers right-aligned."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [
            c.rjust(w) if re.fullmatch(r"[\d,.+]+", c) else c.ljust(w) for c, w in zip(r, widths)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def shape(a):
    return "(" + ", ".join(str(n) for n in np.shape(a)) + ")"


STACK = re.compile(r"^(.*?\.(?:layers|layer|block))\.(\d+)(\..*)?$")


def trace_lines(acts):
    """Every recorded module with its shape, in call order; a layer whose modules and shapes
    repeat layer 0's of the same stack is folded into one line saying so."""
    groups = {}  # (stack, i) -> [(suffix, shape)]
    for key, a in acts.items():
        m = STACK.match(key)
        if m:
            groups.setdefault((m.group(1), int(m.group(2))), []).append((m.group(3), shape(a)))
    rows, folded = [], {}
    for key, a in acts.items():
        m = STACK.match(key)
        if m and int(m.group(2)) > 0:
            stack, i = m.group(1), int(m.group(2))
            if groups[(stack, i)] == groups[(stack, 0)]:
                folded.setdefault(stack, []).append(i)
                continue
        if not m:  # leaving a stack: say which layers repeated layer 0
            for stack in [s for s in folded if key.startswith(s.rsplit(".", 1)[0])]:
                rows.append([f"{stack}.{_span(folded.pop(stack))}", "as layer 0"])
        rows.append([key, shape(a)])
    for stack, idx in folded.items():
        rows.append([f"{stack}.{_span(idx)}", "as layer 0"])
    return table(rows)


def _span(idx):
    idx = sorted(set(idx))
    return str(idx[0]) if len(idx) == 1 else f"{idx[0]}..{idx[-1]}"


def photo_and_pixels(side):
    photo = Image.open(PHOTO)
    pixels = BlipImageProcessor(size={"height": side, "width": side})(photo)["pixel_values"]
    return photo, pixels


# ----------------------------------------------------------------------------- blocks


# (symbol, meaning, its value from a config): the vision tower's rows, BLIP's and BLIP-2's alike
VISION_SYMBOLS = [
    ("S", "image side", lambda c: c.vision_config.image_size),
    ("P", "patch side", lambda c: c.vision_config.patch_size),
    (
        "N",
        "image tokens",
        lambda c: (c.vision_config.image_size // c.vision_config.patch_size) ** 2 + 1,
    ),
    ("Dv", "vision width", lambda c: c.vision_config.hidden_size),
    ("Lv", "vision layers", lambda c: c.vision_config.num_hidden_layers),
]


def blip_symbols():
    """The notation's symbols for the tiny captioning model and the two hub captioners."""
    tiny = BlipForConditionalGeneration.from_pretrained(TINY_BLIP).config
    hub = hub_configs()
    cols = [("tiny golden", tiny)] + [(repo.split("-")[-1], hub[repo][1]) for repo in list(hub)[:2]]
    rows = [["symbol", "meaning"] + [name for name, _ in cols]]
    for sym, meaning, get in VISION_SYMBOLS + [
        ("Dt", "text width", lambda c: c.text_config.hidden_size),
        ("Lt", "text layers", lambda c: c.text_config.num_hidden_layers),
        ("H", "text heads", lambda c: c.text_config.num_attention_heads),
        ("F", "text FFN width", lambda c: c.text_config.intermediate_size),
        ("V", "vocabulary", lambda c: c.text_config.vocab_size),
    ]:
        rows.append([sym, meaning] + [get(c) for _, c in cols])
    return table(rows)


def blip_run():
    model = BlipForConditionalGeneration.from_pretrained(TINY_BLIP)
    side = model.config.vision_config.image_size
    photo, pixels = photo_and_pixels(side)
    ids = model.generate(pixel_values=pixels, max_new_tokens=NEW_TOKENS)
    with trace.record() as acts:
        out = model(pixel_values=pixels, input_ids=ids)
    head = [
        f"photo: {PHOTO.name}, {photo.width}x{photo.height} {photo.mode}",
        f"pixel_values: {shape(pixels)} {pixels.dtype}",
        f"generate(max_new_tokens={NEW_TOKENS}) -> input_ids {shape(ids)}: {ids[0].tolist()}"
        f"  (starts with bos_token_id {model.config.text_config.bos_token_id}, the tiny config's "
        "[DEC])",
        f"forward(pixel_values, input_ids): {len(acts)} modules recorded",
        "",
        trace_lines(acts),
        "",
        "outputs: " + ", ".join(f"{k} {shape(v)}" for k, v in out.items()),
    ]
    return "\n".join(head)


def blip2_symbols():
    tiny = {
        k: Blip2ForConditionalGeneration.from_pretrained(f).config for k, f in TINY_BLIP2.items()
    }
    hub = list(hub_configs().values())
    cols = [("tiny OPT", tiny["opt"]), ("tiny T5", tiny["t5"])]
    cols += [("opt-2.7b", hub[2][1]), ("flan-t5-xl", hub[3][1])]

    def lm_width(c):
        return getattr(c.text_config, "hidden_size", None) or c.text_config.d_model

    def lm_layers(c):
        t = c.text_config
        return getattr(t, "num_hidden_layers", None) or f"{t.num_layers}+{t.num_decoder_layers}"

    rows = [["symbol", "meaning"] + [n for n, _ in cols]]
    for sym, meaning, get in VISION_SYMBOLS + [
        ("Q", "learned queries", lambda c: c.num_query_tokens),
        ("Dq", "Q-Former width", lambda c: c.qformer_config.hidden_size),
        ("Lq", "Q-Former layers", lambda c: c.qformer_config.num_hidden_layers),
        ("Dl", "language model width", lm_width),
        ("Ll", "language model layers", lm_layers),
        ("V", "language model vocabulary", lambda c: c.text_config.vocab_size),
    ]:
        rows.append([sym, meaning] + [get(c) for _, c in cols])
    return table(rows)


def blip2_run(kind):
    model = Blip2ForConditionalGeneration.from_pretrained(TINY_BLIP2[kind])
    cfg = model.config
    photo, pixels = photo_and_pixels(cfg.vision_config.image_size)
    ids = model.generate(pixel_values=pixels, max_new_tokens=NEW_TOKENS)
    Q, token = cfg.num_query_tokens, cfg.image_token_index
    if kind == "opt":  # generate returned the prompt (Q placeholders + bos) and the new ids
        call = dict(input_ids=ids)
        said = f"generate -> input_ids {shape(ids)}: {ids[0].tolist()}"
        said += f"  ({Q} x <image> = {token}, bos, new)"
    else:  # T5: the encoder reads Q placeholders + bos, as generate builds it; then the decoder
        prompt = np.array([[token] * Q + [cfg.text_config.bos_token_id]])
        call = dict(input_ids=prompt, decoder_input_ids=ids)
        said = (
            f"encoder input_ids {shape(prompt)}: {prompt[0].tolist()}"
            f"  ({Q} x <image> = {token}, bos)\n"
            f"generate -> decoder ids {shape(ids)}: {ids[0].tolist()}  (decoder_start, new)"
        )
    with trace.record() as acts:
        out = model(pixel_values=pixels, **call)
    query_output, prefix = model.image_prefix(out.vision_outputs.last_hidden_state)
    lines = [
        f"photo: {PHOTO.name} -> pixel_values {shape(pixels)}",
        f"query_tokens: {shape(model.params['query_tokens'])}",
        said,
        f"forward: {len(acts)} modules recorded",
        "",
        trace_lines(acts),
        "",
        f"image_prefix: queries read the image {shape(query_output)}, "
        f"language_projection -> {shape(prefix)}",
        "logits: " + shape(out.logits),
    ]
    return "\n".join(lines)


# What each optional key (cls.optional_keys: a file may leave it out) is, so that the count
# below counts a tied tensor once, as transformers' num_parameters() does: "own" is a tensor of
# its own (stored under this name or an alias), "copy of K" the same tensor as K, "ignored" a
# key 5.23 (and minblip) never reads.
TIES = {
    "text_decoder.cls.predictions.decoder.weight": "copy of "
    "text_decoder.bert.embeddings.word_embeddings.weight",
    "text_decoder.cls.predictions.decoder.bias": "copy of text_decoder.cls.predictions.bias",
    "text_decoder.cls.predictions.bias": "own",
    "language_model.lm_head.weight": None,  # OPT: tied; Flan-T5: its own (tie_word_embeddings)
    "language_model.encoder.embed_tokens.weight": "copy of language_model.shared.weight",
    "language_model.decoder.embed_tokens.weight": "copy of language_model.shared.weight",
    "language_model.decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight": (
        "ignored"
    ),
}


def tie(key, cfg):
    if key != "language_model.lm_head.weight":
        return TIES[key]
    if cfg.text_config.tie_word_embeddings:
        embed = "model.decoder.embed_tokens" if cfg.text_config.model_type == "opt" else "shared"
        return f"copy of language_model.{embed}.weight"
    return "own"


def parameters():
    """Per checkpoint: the parameters of every key of expected_shapes(config), by top-level
    part; then the distinct count, each tied tensor once (TIES)."""
    rows = [["checkpoint", "part", "tensors", "parameters"]]
    for repo, (cls, cfg) in hub_configs().items():
        shapes = {k: int(np.prod(s)) for k, s in cls.expected_shapes(cfg).items()}
        parts = {}
        for key, n in shapes.items():
            part = parts.setdefault(key.split(".")[0], [0, 0])
            part[0] += 1
            part[1] += n
        name = repo.split("/")[1]
        for part, (k, n) in parts.items():
            rows.append([name, part, k, f"{n:,}"])
            name = ""
        rows.append(["", "every key listed", len(shapes), f"{sum(shapes.values()):,}"])
        distinct = dict(shapes)
        for key in cls.optional_keys(cfg):
            what = tie(key, cfg)
            if what.startswith("copy of "):
                assert shapes[what[8:]] == shapes[key], (key, what)  # a copy has the same size
            if what != "own":
                del distinct[key]
        rows.append(["", "distinct (ties once)", len(distinct), f"{sum(distinct.values()):,}"])
    return table(rows)


def blocks():
    """{name: text} of every printed block of docs/walkthrough.md."""
    return {
        "blip-symbols": blip_symbols(),
        "blip-run": blip_run(),
        "blip2-symbols": blip2_symbols(),
        "blip2-opt-run": blip2_run("opt"),
        "blip2-t5-run": blip2_run("t5"),
        "parameters": parameters(),
    }


# a marker, a ```text fence, then any lines up to the closing fence
BLOCK = re.compile(r"(<!-- walkthrough:([\w-]+) -->\n```text\n)((?:(?!```).*\n)*)(```)")


def doc_blocks(text):
    """{name: text} of the blocks as docs/walkthrough.md prints them."""
    return {m.group(2): m.group(3).removesuffix("\n") for m in BLOCK.finditer(text)}


def rewrite(text, new):
    return BLOCK.sub(lambda m: m.group(1) + new[m.group(2)] + "\n" + m.group(4), text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="update docs/walkthrough.md")
    args = parser.parse_args()
    new = blocks()
    if args.write:
        text = DOC.read_text()
        missing = set(new) - set(doc_blocks(text))
        if missing:
            raise SystemExit(f"{DOC}: no <!-- walkthrough:NAME --> block for {sorted(missing)}")
        DOC.write_text(rewrite(text, new))
        print(f"{DOC}: {len(new)} blocks written")
    else:
        for name, text in new.items():
            print(f"<!-- walkthrough:{name} -->\n```text\n{text}\n```\n")


if __name__ == "__main__":
    main()
