"""Draw the attention masks of BLIP's text tower and of BLIP-2's Q-Former into docs/img/.

    python tools/draw_masks.py            # writes docs/img/blip_text_masks.png, qformer_masks.png

A mask is drawn as a grid: row = the position that attends (query), column = the position it
may read (key); a filled cell is allowed (additive 0), a pale one blocked (additive finfo.min).

From minblip's own functions: BLIP's causal (decoder) and bidirectional (encoder) self-masks are
minblip/text_bert.py's self_mask, and the Q-Former's ITM mask is minblip/qformer.py's
padding_mask, the only mask transformers' Blip2QFormerModel applies. The Q-Former's ITC and ITG
masks belong to pre-training, which transformers (and so minblip) does not implement: they are
built here as the BLIP-2 paper (Fig. 2) describes and LAVIS' Qformer.py builds them (ITC: queries
and text run as two separate passes, so each sees only itself; ITG: LAVIS'
get_extended_attention_mask with has_query, "UniLM style": queries see the queries, text sees
every query and the text up to itself).

tests/test_draw_masks.py checks the masks against the functions and the PNGs against a redraw.
"""

import pathlib
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # this checkout
from minblip.qformer import padding_mask  # noqa: E402
from minblip.text_bert import self_mask  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img"
CAPTION = ["a", "dog", "on", "the", "beach"]  # BLIP: after [DEC] (decoder) or [CLS] (encoder)
Q = 4  # Q-Former queries drawn (32 on the hub)
QUERIES = [f"q{i}" for i in range(Q)]
WORDS = ["a", "dog", "runs"]  # after [CLS] (ITC, ITM) or [DEC] (ITG, BLIP-2 paper §3.2)

ALLOWED = {"query": (59, 81, 139), "text": (33, 144, 141)}  # viridis blue and teal
BLOCKED = (236, 236, 236)
CELL = 22


def allowed(additive):
    """An additive mask (0 or finfo.min) broadcast to (Tq, Tk) -> bool, True where allowed."""
    return np.asarray(additive)[0, 0] == 0


def blip_text_masks():
    """{title: ((T, T) bool, labels)} from text_bert.self_mask, without padding."""
    T = 1 + len(CAPTION)
    ones = np.ones((1, T), np.int64)
    return {
        "decoder (captioning, LM): causal": (
            allowed(self_mask(None, T, 0, True, np.float32)),
            ["[DEC]"] + CAPTION,
        ),
        "encoder (ITM, ITC, VQA): bidirectional": (
            allowed(self_mask(ones, T, 0, False, np.float32)),
            ["[CLS]"] + CAPTION,
        ),
    }


def qformer_masks():
    """{title: ((Q+T, Q+T) bool, labels)}: ITM from qformer.padding_mask, ITC and ITG as LAVIS
    builds them."""
    n = Q + 1 + len(WORDS)
    itm = allowed(padding_mask(np.ones((1, n), np.int64), np.float32)).repeat(n, axis=0)
    is_query = np.arange(n) < Q
    itc = is_query[:, None] == is_query[None, :]  # two separate passes: each sees itself
    causal = np.arange(n)[None, :] <= np.arange(n)[:, None]
    itg = np.where(is_query[:, None], is_query[None, :], is_query[None, :] | causal)
    return {
        "ITC: uni-modal (built as LAVIS)": (itc, QUERIES + ["[CLS]"] + WORDS),
        "ITM: bi-directional (qformer.padding_mask)": (itm, QUERIES + ["[CLS]"] + WORDS),
        "ITG: causal on text (built as LAVIS)": (itg, QUERIES + ["[DEC]"] + WORDS),
    }


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _vertical(text, font, fill):
    """text written bottom-to-top, as an RGBA image to paste above a column."""
    box = font.getbbox(text)
    img = Image.new("RGBA", (box[2] + 2, box[3] + 2), (255, 255, 255, 0))
    ImageDraw.Draw(img).text((0, 0), text, fill=fill, font=font)
    return img.rotate(90, expand=True)


def draw(panels, n_query, title, note):
    """One PNG: a panel per mask ({title: (grid, labels)}) side by side, rows and columns
    labelled."""
    font, small = _font(13), _font(11)
    n = len(next(iter(panels.values()))[1])
    left, top = 48, 92
    grid_w = left + n * CELL
    panel_w = max(grid_w, *(int(font.getlength(name)) for name in panels)) + 28
    width = max(12 + panel_w * len(panels), int(_font(15).getlength(title)) + 24)
    height = top + n * CELL + 46
    sheet = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(sheet)
    d.text((12, 6), title, fill="black", font=_font(15))
    for p, (name, (grid, labels)) in enumerate(panels.items()):
        x0 = 12 + p * panel_w + left
        d.text((x0 - left, 30), name, fill="black", font=font)
        for j, lab in enumerate(labels):  # key labels above their columns, upwards
            label = _vertical(lab, small, (80, 80, 80))
            sheet.paste(label, (x0 + j * CELL + 4, top - 4 - label.height), label)
        for i, lab in enumerate(labels):
            y = top + i * CELL
            d.text((x0 - left, y + 5), lab, fill=(80, 80, 80), font=small)
            for j in range(n):
                kind = "query" if i < n_query else "text"
                fill = ALLOWED[kind] if grid[i, j] else BLOCKED
                x = x0 + j * CELL
                d.rectangle([x, y, x + CELL - 2, y + CELL - 2], fill=fill)
        if 0 < n_query < n:  # the query | text boundary
            b = n_query * CELL - 1
            d.line([x0 + b, top - 2, x0 + b, top + n * CELL], fill="black")
            d.line([x0 - 2, top + b, x0 + n * CELL, top + b], fill="black")
    d.text((12, height - 38), note, fill=(60, 60, 60), font=small)
    d.text((12, height - 22), "rows attend, columns are read", fill=(60, 60, 60), font=small)
    return sheet.quantize(colors=32)  # flat colours: a palette PNG stays a few KB


def drawings():
    """{file name: PIL image} of every picture this tool writes."""
    return {
        "blip_text_masks.png": draw(
            blip_text_masks(),
            0,
            "BLIP text tower self-attention masks (minblip/text_bert.py::self_mask)",
            "filled = may attend (additive 0), pale = blocked (finfo.min)",
        ),
        "qformer_masks.png": draw(
            qformer_masks(),
            Q,
            f"Q-Former self-attention masks in pre-training ({Q} of the 32 queries, then text)",
            "blue rows: learned queries; teal rows: text. filled = may attend, pale = blocked",
        ),
    }


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, image in drawings().items():
        image.save(OUT / name, optimize=True)
        print(f"{OUT / name}: {image.width}x{image.height}, {(OUT / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
