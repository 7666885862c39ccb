"""Where each word looked: BLIP captioning's cross-attention over the photo, as pictures.

    minblip explain photo.jpg --out photo-explained/

captions the photo (greedy), then runs the text decoder once more over the caption with
output_attentions (teacher forcing: the same computation generate did step by step) and takes
its cross-attention probabilities: per layer, per head, per text position, a distribution over
the N = 1 + g*g image tokens ([CLS] + a g x g grid of patches). The word at position t was chosen
from the logits of position t - 1, so position t - 1's attention is the one that "looked" for
it. Heads are averaged; layers are averaged unless one is asked for. The share that went to the
image's [CLS] token is printed per word (it has no place on the photo).

Writes <out>/explain.png (the photo, then one tile per word: the attention as a heatmap over
the photo), <out>/explain.html (the same tiles in one self-contained page: images inlined, no
script, no network) and <out>/explain.npz (the numbers drawn: words, token ids, maps, cls).
Drawn with Pillow and NumPy; the colour map (viridis) is the table below.

BLIP VQA (question_attention, `minblip explain IMAGE --question Q` on a BlipForQuestionAnswering
checkpoint): the answer decoder cross-attends to the question encoder's outputs, not to the image
(transformers 5.23 passes encoder_hidden_states=question_embeds), so no answer word has a map over
the photo. Drawn instead, and said so on the page: per question token, the question encoder's
cross-attention over the photo; per answer word, the decoder's cross-attention over the question
tokens. `--question` with a BLIP-2 checkpoint asks through the "Question: Q Answer:" prompt.

BLIP ITM (itm_attention, `minblip match IMAGE TEXT --explain`): the ITM probability, and per text
token the image-grounded text encoder's cross-attention over the photo (the [CLS] token's output
is what the ITM head reads). Attention, not GradCAM: GradCAM needs the score's gradient, and
minblip has no backward pass.

BLIP-2 (query_attention, the same command on a Blip2ForConditionalGeneration checkpoint): the
language model never sees the image, only Q learned queries' outputs in Q placeholder slots. So
the picture has two parts: per query, the Q-Former's cross-attention over the photo (which
regions that query reads), and per generated word, the attention the language model's choosing
position gave to each query's placeholder (OPT: self-attention; T5: the decoder's
cross-attention to the encoder).
"""

import base64
import html
import io
import json
import pathlib
import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .errors import InputError

# viridis (matplotlib's, sampled at 9 points, linearly interpolated between them): perceptually
# uniform and readable in grey, so a brighter tile means more attention for everyone.
VIRIDIS = np.array(
    [
        [68, 1, 84],
        [71, 44, 122],
        [59, 81, 139],
        [44, 113, 142],
        [33, 144, 141],
        [39, 173, 129],
        [92, 200, 99],
        [170, 220, 50],
        [253, 231, 37],
    ],
    dtype=np.float64,
)
TILE = 224  # width of one tile in pixels
FILES = ("explain.png", "explain.html", "explain.npz")


def colormap(v):
    """Values in [0, 1] (any shape) -> uint8 RGB (shape + (3,)) along VIRIDIS."""
    v = np.clip(np.asarray(v, np.float64), 0.0, 1.0) * (len(VIRIDIS) - 1)
    lo = np.minimum(np.floor(v).astype(int), len(VIRIDIS) - 2)
    frac = (v - lo)[..., None]
    return np.round(VIRIDIS[lo] * (1 - frac) + VIRIDIS[lo + 1] * frac).astype(np.uint8)


def _grid(n, what=None):
    """g, the side of the square of patches in n = 1 + g * g image tokens ([CLS] first); what
    (the attention read) leads the error when they do not form a square."""
    g = int(round(np.sqrt(n - 1)))
    if g * g != n - 1:
        where = "" if what is None else f"{what}: "
        raise InputError(f"{where}{n - 1} image patches do not form a square grid")
    return g


def _layer_pick(att, layer):
    """(L, H, T, K) -> (T, K): heads averaged, then the mean over layers or layer `layer`."""
    att = att.mean(axis=1)
    return att.mean(axis=0) if layer is None else att[layer]


def layer_label(layer, L, what):
    """--layer checked against the L layers of `what` (None: their mean; negative counts from
    the end) -> the label the drawings carry, e.g. "layer 1 of 2"."""
    if layer is not None and not -L <= layer < L:
        raise InputError(f"--layer {layer}: the {what} has {L} layers (0 .. {L - 1})")
    return f"mean of the {L} layers" if layer is None else f"layer {layer % L} of {L}"


def _generate_to_sep(model, inputs, max_new_tokens, sep_token_id, start):
    """The first row of model.generate(**inputs) cut after its first [SEP] at or after position
    start, and T, its length without that [SEP]. Shapes: ids (1, T) or (1, T + 1)."""
    gen = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
    ids = model.generate(**inputs, **gen)[:1]  # (1, T'): [DEC] prompt generated [SEP] (pad)
    ends = np.nonzero(ids[0, start:] == sep_token_id)[0]
    T = start + (int(ends[0]) if ends.size else ids.shape[1] - start)  # [SEP] excluded
    return ids[:, : T + (1 if ends.size else 0)], T


def caption_attention(model, processor, image, prompt=None, layer=None, max_new_tokens=None):
    """Caption one image and return what each generated word's position attended to.

    model: a BlipForConditionalGeneration; processor: its BlipProcessor. layer: None (mean
    over layers) or a layer index. Returns a dict: words, token_ids (the whole sequence from
    [DEC]), positions (index in token_ids of each word), maps (W, g, g) (heads averaged, layer
    choice applied, [CLS] left out), cls (W,) (the [CLS] share), layer_label, and
    cross_attentions (L x (1, H, T, N): the decoder's raw probabilities over the caption).
    """
    from .blip import BlipForConditionalGeneration, BlipTextLMHeadModel

    if not isinstance(model, BlipForConditionalGeneration):
        raise InputError(
            "explain needs a model whose text decoder cross-attends to the image (a BLIP "
            f"captioning checkpoint, BlipForConditionalGeneration); got {type(model).__name__}"
        )
    tcfg = model.config.text_config
    label = layer_label(layer, tcfg.num_hidden_layers, "text decoder")
    inputs = processor(images=image, text=prompt)
    n_prompt = 1 if prompt is None else inputs["input_ids"].shape[1] - 1  # [DEC] + prompt
    # (1, T): [DEC] prompt caption ([SEP])
    ids, T = _generate_to_sep(model, inputs, max_new_tokens, tcfg.sep_token_id, n_prompt)
    image_embeds = model(pixel_values=inputs["pixel_values"], input_ids=ids).image_embeds
    decoder = BlipTextLMHeadModel(tcfg, model.params["text_decoder"])
    out = decoder(input_ids=ids, encoder_hidden_states=image_embeds, output_attentions=True)
    cross = out.cross_attentions  # L x (1, H, T, N)
    positions = list(range(n_prompt, T))
    att = _layer_pick(np.stack([c[0] for c in cross]), layer)  # (L, H, T, N) -> (T, N)
    chosen = att[[p - 1 for p in positions]]  # (W, N): the position that chose each word
    g = _grid(chosen.shape[1])
    return {
        "words": [processor.decode([int(ids[0, p])]).strip() for p in positions],
        "caption": processor.decode(ids[0], skip_special_tokens=True).strip(),
        "token_ids": ids[0],
        "positions": positions,
        "maps": chosen[:, 1:].reshape(len(positions), g, g),  # w (gh gw) -> w gh gw
        "cls": chosen[:, 0],
        "layer_label": label,
        "cross_attentions": cross,
    }


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def overlay(photo, heat):
    """The photo (PIL RGB, tile-sized) with a (g, g) map in [0, 1] laid over it: upsampled
    bilinearly, coloured, blended more opaquely where attention is high."""
    w, h = photo.size
    up = Image.fromarray(heat.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR)
    v = np.clip(np.asarray(up, np.float64), 0, 1)[..., None]  # (h, w, 1)
    alpha = 0.25 + 0.6 * v
    mixed = np.asarray(photo, np.float64) * (1 - alpha) + colormap(v[..., 0]) * alpha
    return Image.fromarray(np.round(mixed).astype(np.uint8))


def stretch(m):
    """A map stretched to [0, 1] from its own minimum to its maximum (all 0 if flat)."""
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def _heading(result):
    """The lines that open the picture: the result's own heading, else the caption."""
    return result.get("heading") or [f"caption: {result['caption']}"]


def _drawn(result):
    """The sentence saying exactly which attention the tiles show."""
    return result.get("drawn") or (
        "Each tile: the cross-attention of the decoder position that chose the word, over the "
        f"image patches; heads averaged; layers: {result['layer_label']}."
    )


def tiles(photo, result):
    """(photo tile, [(word tile, word, note)]) as PIL images TILE wide. Each word's map is
    stretched from its own min to its max, and both are written on the tile: a near-uniform
    map (min close to max) is then visibly so in numbers though the colours span the scale."""
    h = max(1, round(TILE * photo.height / photo.width))
    base = photo.convert("RGB").resize((TILE, h), Image.BICUBIC)
    out = []
    for word, m, c in zip(result["words"], result["maps"], result["cls"]):
        tile = overlay(base, stretch(m))
        note = f"{m.min():.4f} .. {m.max():.4f}  image [CLS] {c:.1%}"
        out.append((tile, word, note))
    return base, out


def render_png(photo, result, columns=4):
    """One PNG grid: a title band (caption, what is drawn), the photo, then a tile per word."""
    base, word_tiles = tiles(photo, result)
    font, small = _font(15), _font(11)
    cells = [(base, "the photo", "")] + word_tiles
    cols = min(columns, len(cells))
    rows = -(-len(cells) // cols)
    pad, label_h = 8, 36
    cell_w, cell_h = TILE + pad, base.height + label_h + pad
    width = pad + cols * cell_w
    chars = max(20, (width - 2 * pad) // 8)  # ~8 px per character of the 15 px font
    head = [line for h in _heading(result) for line in textwrap.wrap(h, chars)]
    notes = textwrap.wrap(
        f"{_drawn(result)} Colour: viridis, dark = the tile's min, yellow = its max (both "
        "written under the tile); image [CLS] = the share given to the image's [CLS] token.",
        int(chars * 1.35),
    )
    head_h = 10 + 20 * len(head) + 15 * len(notes) + 16
    sheet = Image.new("RGB", (width, head_h + rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    write_heading(draw, pad, head, notes, (font, small), 15)
    bar = colormap(np.linspace(0, 1, 120))[None].repeat(8, axis=0)  # the colour key
    bar_x = sheet.width - 120 - pad - 26
    sheet.paste(Image.fromarray(bar), (bar_x, head_h - 12))
    draw.text((bar_x - 24, head_h - 15), "min", fill=(90, 90, 90), font=small)
    draw.text((bar_x + 124, head_h - 15), "max", fill=(90, 90, 90), font=small)
    for i, (tile, title, note) in enumerate(cells):
        x = pad + (i % cols) * cell_w
        y = head_h + (i // cols) * cell_h
        sheet.paste(tile, (x, y))
        draw.text((x, y + tile.height + 2), title, fill="black", font=font)
        draw.text((x, y + tile.height + 20), note, fill=(90, 90, 90), font=small)
    return sheet


def _data_uri(image):
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def render_html(photo, result, title):
    """A self-contained page: tiles inlined as data: URIs, plain CSS, no script, no network."""
    base, word_tiles = tiles(photo, result)
    esc = html.escape
    figures = [
        f'<figure><img src="{_data_uri(base)}" alt="the photo"><figcaption>the photo'
        "</figcaption></figure>"
    ]
    for i, (tile, word, note) in enumerate(word_tiles):
        figures.append(
            f'<figure id="w{i}"><img src="{_data_uri(tile)}" alt="attention for {esc(word)}">'
            f"<figcaption><b>{esc(word)}</b><br><small>{esc(note)}</small></figcaption></figure>"
        )
    words = " ".join(f'<a href="#w{i}">{esc(w)}</a>' for i, w in enumerate(result["words"]))
    heading = "\n".join(f"<p><b>{esc(h)}</b></p>" for h in _heading(result))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; background: #fff; color: #222; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 10px; }}
figure {{ margin: 0; width: {TILE}px; }}
figure:target {{ outline: 3px solid #fde725; }}
img {{ display: block; width: {TILE}px; }}
.caption a {{ color: #3b528b; text-decoration: none; padding: 0 2px; }}
.caption a:hover {{ background: #fde725; }}
</style></head><body>
<h1>{esc(result.get("h1", "Where each word looked"))}</h1>
{heading}
<p class="caption">Tiles: {words}</p>
<p>{esc(_drawn(result))} Colour (viridis) runs from dark at the tile's own minimum to yellow at
its maximum, both written under the tile; image [CLS] is the share given to the image's [CLS] token,
which has no place on the photo.</p>
<div class="grid">
{chr(10).join(figures)}
</div></body></html>
"""


def check_out_dir(out, overwrite):
    """Check out before any work: refuse (InputError) a file in its place, or any of FILES in it
    without overwrite. Nothing is created here: the folder is made by the write_* functions,
    once there is something to write (a model refused later leaves no empty folder behind)."""
    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    taken = [f for f in FILES if (out / f).exists()]
    if taken and not overwrite:
        raise InputError(f"{out / taken[0]} exists; pass --overwrite to replace it")
    return out


def _made(out):
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _meta(result):
    meta = {"layers": result["layer_label"], "caption": result["caption"]}
    if "itm_probability" in result:  # match --explain
        meta = {
            "layers": result["layer_label"],
            "text": result["text"],
            "itm_probability": result["itm_probability"],
            "itm_logits": [float(v) for v in result["itm_logits"]],
            "tiles": "text encoder cross-attention (ITM mode) over the image, per text token",
        }
    return meta


def write_explanation(out, photo, result, title="minblip explain"):
    """Write explain.png, explain.html and explain.npz into the folder out (made if missing)."""
    out = _made(out)
    render_png(photo, result).save(out / "explain.png")
    (out / "explain.html").write_text(render_html(photo, result, title), encoding="utf-8")
    np.savez(
        out / "explain.npz",
        words=np.array(result["words"]),
        token_ids=result["token_ids"],
        maps=result["maps"],
        cls=result["cls"],
        meta=np.array(json.dumps(_meta(result))),
    )
    return [out / f for f in FILES]


# ----------------------------------------------------------------------------- BLIP-2


def qformer_cross_attention(model, image):
    """The Q-Former's cross-attention probabilities when the learned queries read image.

    transformers' Blip2QFormerModel does not return them, so they are recomputed from the
    traced input of each cross-attention block (the queries after self-attention) with that
    block's own query and key weights: softmax(q k^T * Dh^-0.5), no mask (the image has none).
    tests/test_explain_blip2.py checks that probs @ v is the context the model computed.
    Returns [(layer index, probs (B, H, Q, N), values (B, H, N, Dh))] for the layers that have
    cross-attention.
    """
    from .ops import attention, linear, split_heads
    from .trace import record

    cfg = model.config.qformer_config
    Q = model.config.num_query_tokens
    with record() as acts:
        model.image_prefix(image)
    out = []
    for i, layer in enumerate(model.params["qformer"]["encoder"]["layer"]):
        if "crossattention" not in layer:
            continue
        x = acts[f"qformer.encoder.layer.{i}.attention"][:, :Q]  # (B, Q, Dq)
        a = layer["crossattention"]["attention"]
        H = cfg.num_attention_heads
        q = split_heads(linear(x, a["query"]), H)  # b q (h dh) -> b h q dh
        k = split_heads(linear(image, a["key"]), H)  # b n (h dh) -> b h n dh
        v = split_heads(linear(image, a["value"]), H)
        _, probs = attention(q, k, v, q.shape[-1] ** -0.5, None, return_probs=True)
        out.append((i, probs, v))
    return out


def query_attention(model, pixel_values, input_ids=None, layer=None, max_new_tokens=None):
    """BLIP-2, one image: which image patches each learned query reads, and which queries the
    language model read for each generated word.

    model: a Blip2ForConditionalGeneration (OPT or T5). pixel_values (1, 3, S, S); input_ids:
    the processor's prompt (Q placeholders + text), or None for a caption. layer: None (mean
    over the Q-Former's cross-attention layers and the language model's layers) or an index
    into the Q-Former's cross-attention layers. Returns a dict: token_ids (OPT: the whole
    sequence; T5: the decoder's), positions (index in token_ids of each word), query_maps
    (Q, g, g) and query_cls (Q,) (heads averaged; [CLS] share left off the grid), word_queries
    (W, Q): the attention the position that chose each word gave to each query's placeholder
    (heads and language-model layers averaged), query_share (W,) = its row sum, labels.
    """
    from .blip2 import Blip2ForConditionalGeneration

    if not isinstance(model, Blip2ForConditionalGeneration):
        raise InputError(
            "query_attention needs a BLIP-2 model with a language model "
            f"(Blip2ForConditionalGeneration); got {type(model).__name__}"
        )
    cfg = model.config
    Q, token = cfg.num_query_tokens, cfg.image_token_index
    lm = cfg.text_config
    decoder_only = lm.model_type == "opt"
    gen = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
    if input_ids is None:
        input_ids = np.array([[token] * Q + [lm.bos_token_id]], np.int64)  # as generate builds
    input_ids = np.asarray(input_ids)[:1]
    ids = model.generate(pixel_values=pixel_values, input_ids=input_ids, **gen)[:1]
    start = input_ids.shape[1] if decoder_only else 1  # first new id (T5: after decoder start)
    ends = np.nonzero(ids[0, start:] == lm.eos_token_id)[0]
    stop = start + (int(ends[0]) if ends.size else ids.shape[1] - start)  # eos left out
    ids = ids[:, :stop]
    positions = list(range(start, stop))
    if decoder_only:
        out = model(pixel_values=pixel_values, input_ids=ids, output_attentions=True)
        lm_att = out.language_model_outputs.attentions  # L x (1, H, T, T)
        columns = np.nonzero(ids[0] == token)[0]
    else:
        out = model(
            pixel_values=pixel_values,
            input_ids=input_ids,
            decoder_input_ids=ids,
            output_attentions=True,
        )
        lm_att = out.language_model_outputs.cross_attentions  # L x (1, H, T, Tenc)
        columns = np.nonzero(input_ids[0] == token)[0]
    if len(columns) != Q:
        raise InputError(f"input_ids hold {len(columns)} image placeholders ({token}); need {Q}")
    image = out.vision_outputs.last_hidden_state
    cross = qformer_cross_attention(model, image)
    n_cross = len(cross)
    if layer is not None and not -n_cross <= layer < n_cross:
        raise InputError(
            f"--layer {layer}: the Q-Former has {n_cross} cross-attention layers "
            f"(0 .. {n_cross - 1})"
        )
    probs = np.stack([p[0] for _, p, _ in cross]).mean(axis=1)  # (C, Q, N): heads averaged
    probs = probs.mean(axis=0) if layer is None else probs[layer]  # (Q, N)
    g = _grid(probs.shape[1])
    words = np.stack([a[0].mean(axis=0) for a in lm_att]).mean(axis=0)  # (T, Tk)
    chosen = words[[p - 1 for p in positions]][:, columns]  # (W, Q)
    if layer is None:
        label = f"mean of the Q-Former's {n_cross} cross-attention layers"
    else:
        label = f"Q-Former layer {cross[layer][0]} (cross-attention layer {layer % n_cross})"
    return {
        "token_ids": ids[0],
        "positions": positions,
        "query_maps": probs[:, 1:].reshape(Q, g, g),  # q (gh gw) -> q gh gw
        "query_cls": probs[:, 0],
        "word_queries": chosen,
        "query_share": chosen.sum(axis=1),
        "layer_label": label,
        "lm_label": f"mean of the language model's {len(lm_att)} layers, heads averaged",
    }


# ------------------------------------------------------------- two-part pages (BLIP-2, BLIP VQA)
#
# A "panel" is what both pages draw: tiles (K maps over the photo, each with a label and its
# [CLS] share), then a table (a row per generated word, a cell per tile: what the word's
# choosing position gave that tile's token). Its keys: heading (lines), h1, tiles_note, maps
# (K, g, g), labels (K,), cls (K,), tile (px), table_note, rows (W,), values (W, K), share (W,)
# or None, columns (K,) (column labels).

QTILE = 112  # a query's tile: 32 of them fit in a page 8 wide


def _table_cell(K, width):
    """Cell width of the word x tile table: wide enough to label columns when K is small."""
    return max(6, min(48, (width - 150) // K))


def render_panel_png(photo, panel, columns=8):
    """One PNG: the tiles (each its own min (dark) to max (yellow)), then the table (each row
    from its min to its max; with few columns, each cell also says its value)."""
    font, small = _font(15), _font(11)
    size = panel.get("tile", QTILE)
    h = max(1, round(size * photo.height / photo.width))
    base = photo.convert("RGB").resize((size, h), Image.BICUBIC)
    maps, K = panel["maps"], len(panel["maps"])
    pad, label_h = 6, 44
    cols = min(columns, K)
    rows = -(-K // cols)
    width = max(pad + cols * (size + pad), 520)
    wrap = max(40, int((width - 2 * pad) / 6.2))
    head = [line for h_ in panel["heading"] for line in textwrap.wrap(h_, int(wrap / 1.35))]
    notes = textwrap.wrap(f"Top: {panel['tiles_note']} Bottom: {panel['table_note']}", wrap)
    head_h = 8 + 20 * len(head) + 14 * len(notes) + 8
    cell = _table_cell(K, width)
    x0 = 140
    header_h = 18 if cell < 30 else 30
    table_h = header_h + (cell + 2) * len(panel["rows"]) + 10
    grid_h = rows * (h + label_h + pad)
    sheet = Image.new("RGB", (max(width, x0 + K * cell + pad), head_h + grid_h + table_h), "white")
    draw = ImageDraw.Draw(sheet)
    write_heading(draw, pad, head, notes, (font, small), 14)
    for i, (m, label, c) in enumerate(zip(maps, panel["labels"], panel["cls"])):
        x = pad + (i % cols) * (size + pad)
        y = head_h + (i // cols) * (h + label_h + pad)
        sheet.paste(overlay(base, stretch(m)), (x, y))
        draw.text((x, y + h + 1), label[: size // 6], fill="black", font=small)
        draw.text((x, y + h + 15), f"image [CLS] {c:.1%}", fill=(90, 90, 90), font=small)
        draw.text((x, y + h + 29), f"{m.min():.4f}..{m.max():.4f}", fill=(90, 90, 90), font=small)
    y0 = head_h + grid_h
    draw.text((pad, y0 + 2), panel.get("corner", ""), fill=(90, 90, 90), font=small)
    if cell < 30:  # too narrow to label each column: every 4th
        for j in range(0, K, 4):
            draw.text((x0 + j * cell, y0 + 2), panel["columns"][j], fill=(90, 90, 90), font=small)
    else:
        for j, label in enumerate(panel["columns"]):
            draw.text((x0 + j * cell, y0 + 2), label[: cell // 6], fill="black", font=small)
    share = panel.get("share")
    for w, (word, row) in enumerate(zip(panel["rows"], panel["values"])):
        y = y0 + header_h + w * (cell + 2)
        label = word[:12] if share is None else f"{word[:12]}  {share[w]:.0%}"
        draw.text((pad, y + max(0, cell // 2 - 6)), label, fill="black", font=small)
        for j, (v, c) in enumerate(zip(row, colormap(stretch(row)))):
            box = [x0 + j * cell, y, x0 + (j + 1) * cell - 2, y + cell - 1]
            draw.rectangle(box, fill=tuple(int(t) for t in c))
            if cell >= 30:  # dark text on the light (high) end of viridis, white on the dark
                ink = "black" if c.astype(int).sum() > 380 else "white"
                draw.text((box[0] + 3, box[1] + cell // 2 - 6), f"{v:.1%}", fill=ink, font=small)
    return sheet


def render_panel_html(photo, panel, title):
    """A self-contained page: the tiles inlined, the word x tile table as coloured cells
    (inline styles, the value in each cell's title), no script, no network."""
    esc = html.escape
    size = panel.get("tile", QTILE)
    h = max(1, round(size * photo.height / photo.width))
    base = photo.convert("RGB").resize((size, h), Image.BICUBIC)
    figures = "\n".join(
        f'<figure><img src="{_data_uri(overlay(base, stretch(m)))}" alt="{esc(label)}">'
        f"<figcaption>{esc(label)} <small>image [CLS] {c:.1%}<br>{m.min():.4f} .. "
        f"{m.max():.4f}</small></figcaption></figure>"
        for m, label, c in zip(panel["maps"], panel["labels"], panel["cls"])
    )
    head = "".join(f"<th>{esc(c)}</th>" for c in panel["columns"])
    share = panel.get("share")
    rows = [f"<tr><th></th>{'' if share is None else '<td></td>'}{head}</tr>"]
    wide = len(panel["columns"]) <= 16  # few columns: each cell says its value, as the PNG
    for w, (word, row) in enumerate(zip(panel["rows"], panel["values"])):
        cells = "".join(
            f'<td title="{esc(panel["columns"][j])}: {v:.4f}" class="{"v" if wide else ""}" '
            f'style="background:rgb{tuple(int(x) for x in c)};'
            f'color:{"#000" if c.astype(int).sum() > 380 else "#fff"}">'
            f"{f'{v:.1%}' if wide else ''}</td>"
            for j, (v, c) in enumerate(zip(row, colormap(stretch(row))))
        )
        s = "" if share is None else f"<td class=s>{share[w]:.0%}</td>"
        rows.append(f"<tr><th>{esc(word)}</th>{s}{cells}</tr>")
    heading = "\n".join(f"<p><b>{esc(line)}</b></p>" for line in panel["heading"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 6px; }}
figure {{ margin: 0; width: {size}px; font-size: 12px; }}
img {{ display: block; width: {size}px; }}
table {{ border-collapse: collapse; margin-top: 1em; }}
td {{ width: 14px; height: 14px; padding: 0; }}
th, td.s {{ text-align: left; font-weight: normal; padding-right: 8px; width: auto; }}
tr:first-child th {{ font-size: 11px; }}
td.v {{ width: 44px; height: 22px; font-size: 11px; text-align: center; }}
</style></head><body>
<h1>{esc(panel["h1"])}</h1>
{heading}
<p>Tiles: {esc(panel["tiles_note"])}</p>
<div class="grid">
{figures}
</div>
<p>Table: {esc(panel["table_note"])} (hover a cell for the value)</p>
<table>
{chr(10).join(rows)}
</table></body></html>
"""


def query_panel(result, words, question=None, prompt=None):
    """The BLIP-2 page: a tile per learned query, a row per generated word."""
    Q = len(result["query_maps"])
    if question is None:
        heading = [f"caption: {' '.join(words)}"]
    else:
        heading = [f"question: {question}", f"prompt: {prompt}", f"answer: {' '.join(words)}"]
    return {
        "h1": "Where the queries looked, and which queries each word read",
        "heading": heading,
        "tiles_note": f"which image patches each of the {Q} learned queries reads (Q-Former "
        f"cross-attention, heads averaged; {result['layer_label']}), each tile from its own "
        "min (dark) to max (yellow), both written under it; image [CLS] = the share given to "
        "the image's [CLS] token.",
        "maps": result["query_maps"],
        "labels": [f"q{i}" for i in range(Q)],
        "cls": result["query_cls"],
        "table_note": "per generated word, the attention the language-model position that "
        f"chose it gave to each query's placeholder ({result['lm_label']}), each row from its "
        "min to its max; the percentage is the row's sum, the rest went to text.",
        "corner": "word, share",
        "rows": words,
        "values": result["word_queries"],
        "share": result["query_share"],
        "columns": [f"q{j}" for j in range(Q)],
    }


def render_queries_png(photo, result, words, columns=8):
    """The BLIP-2 page as one PNG (render_panel_png of query_panel)."""
    return render_panel_png(photo, query_panel(result, words), columns)


def render_queries_html(photo, result, words, title):
    """The BLIP-2 page as HTML (render_panel_html of query_panel)."""
    return render_panel_html(photo, query_panel(result, words), title)


def write_panel(out, photo, panel, arrays, meta, title="minblip explain"):
    """Write explain.png, explain.html and explain.npz (arrays + meta as JSON) into out."""
    out = _made(out)
    render_panel_png(photo, panel).save(out / "explain.png")
    (out / "explain.html").write_text(render_panel_html(photo, panel, title), encoding="utf-8")
    np.savez(out / "explain.npz", **arrays, meta=np.array(json.dumps(meta)))
    return [out / f for f in FILES]


def write_query_explanation(
    out, photo, result, words, title="minblip explain", question=None, prompt=None
):
    """Write explain.png, explain.html and explain.npz (BLIP-2) into the folder out."""
    arrays = {
        "words": np.array(words),
        "token_ids": result["token_ids"],
        "query_maps": result["query_maps"],
        "query_cls": result["query_cls"],
        "word_queries": result["word_queries"],
    }
    meta = {"layers": result["layer_label"], "lm": result["lm_label"]}
    if question is not None:
        meta.update(question=question, prompt=prompt)
    return write_panel(
        out, photo, query_panel(result, words, question, prompt), arrays, meta, title
    )


# ----------------------------------------------------------------------------- BLIP VQA


def question_attention(model, processor, image, question, layer=None, max_new_tokens=None):
    """Answer a question with BLIP VQA and return the two attentions the answer went through.

    BLIP VQA's answer decoder never reads the image: its cross-attention reads the question
    encoder's outputs (transformers 5.23 BlipForQuestionAnswering: text_decoder(...,
    encoder_hidden_states=question_embeds)), and only the question encoder cross-attends to
    the image patches. So there is no answer-word-over-image attention to draw; what is drawn
    is (1) per question token, the question encoder's cross-attention over the image, and (2)
    per answer word, the answer decoder's cross-attention over the question tokens, at the
    position that chose the word.

    model: a BlipForQuestionAnswering; processor: its BlipProcessor. layer: None (mean over
    layers) or an index, applied to both towers (both have text_config's L layers). Returns a
    dict: question, answer, question_tokens (Tq,), question_ids (Tq,), token_ids (the answer
    from [DEC]), positions, words (W,), question_maps (Tq, g, g) and question_cls (Tq,)
    (heads averaged, layer choice applied, the image's [CLS] share left off the grid),
    word_question (W, Tq), layer_label, and the raw probabilities: encoder_cross_attentions
    L x (1, H, Tq, N) and decoder_cross_attentions L x (1, H, T, Tq).
    """
    from .blip import BlipTextLMHeadModel
    from .blip_tasks import BlipForQuestionAnswering

    if not isinstance(model, BlipForQuestionAnswering):
        raise InputError(
            "--question with a BLIP checkpoint needs a VQA model (BlipForQuestionAnswering, "
            f"e.g. Salesforce/blip-vqa-base); got {type(model).__name__}"
        )
    tcfg = model.config.text_config
    label = layer_label(layer, tcfg.num_hidden_layers, "question encoder and answer decoder")
    inputs = processor(images=image, text=question)
    # (1, T): [DEC] answer ([SEP])
    ids, T = _generate_to_sep(model, inputs, max_new_tokens, tcfg.sep_token_id, 1)
    image_embeds = model.vision_outputs(inputs["pixel_values"])[0]
    q_ids, q_mask = inputs["input_ids"][:1], inputs["attention_mask"][:1]
    # the very call forward and generate make (one question: no padding to mask)
    q = model._text("text_encoder", q_ids, q_mask, encoder_hidden_states=image_embeds)
    decoder = BlipTextLMHeadModel(tcfg, model.params["text_decoder"])
    out = decoder(
        input_ids=ids, encoder_hidden_states=q["last_hidden_state"], output_attentions=True
    )
    enc = np.stack([c[0] for c in q["cross_attentions"]])  # (L, H, Tq, N)
    dec = np.stack([c[0] for c in out.cross_attentions])  # (L, H, T, Tq)
    qmaps = _layer_pick(enc, layer)  # (Tq, N)
    g = _grid(qmaps.shape[1], "the question encoder's cross-attention")
    positions = list(range(1, T))
    chosen = _layer_pick(dec, layer)[[p - 1 for p in positions]]  # (W, Tq)
    words = [processor.decode([int(ids[0, p])]).strip() for p in positions]
    return {
        "question": question,
        "answer": processor.decode(ids[0, 1:], skip_special_tokens=True).strip(),  # after [DEC]
        "question_tokens": [processor.decode([int(t)]).strip() for t in q_ids[0]],
        "question_ids": q_ids[0],
        "token_ids": ids[0],
        "positions": positions,
        "words": words,
        "question_maps": qmaps[:, 1:].reshape(len(qmaps), g, g),  # t (gh gw) -> t gh gw
        "question_cls": qmaps[:, 0],
        "word_question": chosen,
        "layer_label": label,
        "encoder_cross_attentions": q["cross_attentions"],
        "decoder_cross_attentions": out.cross_attentions,
    }


def question_panel(result):
    """The BLIP VQA page: a tile per question token, a row per answer word."""
    L = result["layer_label"]
    return {
        "h1": "Where the question looked, and which question words the answer read",
        "heading": [f"question: {result['question']}", f"answer: {result['answer']}"],
        "tiles_note": "per question token, the question encoder's (text_encoder) cross-attention "
        f"over the image patches, heads averaged; {L}; each tile from its own min (dark) to max "
        "(yellow), both written under it; image [CLS] = the share given to the image's [CLS] "
        "token. BLIP VQA's answer decoder reads the question encoder's outputs, never the image, "
        "so no answer word has an attention over the photo of its own.",
        "maps": result["question_maps"],
        "labels": result["question_tokens"],
        "cls": result["question_cls"],
        "tile": 160,
        "table_note": "per answer word, the answer decoder's (text_decoder) cross-attention over "
        f"the question tokens at the position that chose the word, heads averaged; {L}; each "
        "row from its min to its max; every row sums to 100%.",
        "corner": "answer word",
        "rows": result["words"],
        "values": result["word_question"],
        "share": None,
        "columns": result["question_tokens"],
    }


def write_question_explanation(out, photo, result, title="minblip explain"):
    """Write explain.png, explain.html and explain.npz (BLIP VQA) into the folder out."""
    arrays = {
        "words": np.array(result["words"]),
        "token_ids": result["token_ids"],
        "question_tokens": np.array(result["question_tokens"]),
        "question_ids": result["question_ids"],
        "question_maps": result["question_maps"],
        "question_cls": result["question_cls"],
        "word_question": result["word_question"],
    }
    meta = {
        "layers": result["layer_label"],
        "question": result["question"],
        "answer": result["answer"],
        "tiles": "question encoder cross-attention over the image, per question token",
        "table": "answer decoder cross-attention over the question tokens, per answer word",
    }
    return write_panel(out, photo, question_panel(result), arrays, meta, title)


# ----------------------------------------------------------------------------- BLIP ITM


def itm_attention(model, processor, image, text, layer=None):
    """Score one text against one image with BLIP's ITM head and return the attention that
    read the image for it: the image-grounded text encoder's cross-attention (ITM mode, the
    same call as BlipForImageTextRetrieval(use_itm_head=True)), per text token over the image
    patches.

    The ITM head reads the encoder's output at the first token ([CLS]); that token's row is
    the most direct explanation of the score, the other tokens' rows show where each word
    looked while the encoder built it. GradCAM (BLIP's demo) would weight these maps by the
    gradient of the score, which needs a backward pass minblip does not have.

    model: a BlipForImageTextRetrieval; processor: its BlipProcessor; layer: None (mean over
    the encoder's layers) or an index. Returns a dict (the shape write_explanation draws): text,
    words (T,) (every token, [CLS] and [SEP] included), token_ids (T,), positions, maps (T, g,
    g), cls (T,) (heads averaged, layer choice applied), itm_logits (2,), itm_probability,
    layer_label, heading, drawn, h1, cross_attentions L x (1, H, T, N).
    """
    from .blip_tasks import BlipForImageTextRetrieval
    from .ops import linear

    if not isinstance(model, BlipForImageTextRetrieval):
        raise InputError(
            "--explain needs a model with an ITM head (BlipForImageTextRetrieval, e.g. "
            f"Salesforce/blip-itm-base-coco); got {type(model).__name__}"
        )
    label = layer_label(layer, model.config.text_config.num_hidden_layers, "text encoder")
    enc = processor(text=[text])
    pixels = processor(images=image)["pixel_values"]
    image_embeds = model.vision_outputs(pixels)[0]
    ids, mask = enc["input_ids"][:1], enc["attention_mask"][:1]
    out = model._text("text_encoder", ids, mask, encoder_hidden_states=image_embeds)
    logits = linear(out["last_hidden_state"][:, 0], model.params["itm_head"])[0]  # (2,)
    e = np.exp(logits - logits.max())
    prob = float(e[1] / e.sum())
    att = _layer_pick(np.stack([c[0] for c in out["cross_attentions"]]), layer)  # (T, N)
    g = _grid(att.shape[1], "the text encoder's cross-attention")
    words = [processor.decode([int(t)]).strip() for t in ids[0]]
    return {
        "text": text,
        "caption": text,
        "words": words,
        "token_ids": ids[0],
        "positions": list(range(len(words))),
        "maps": att[:, 1:].reshape(len(words), g, g),  # t (gh gw) -> t gh gw
        "cls": att[:, 0],
        "itm_logits": logits,
        "itm_probability": prob,
        "layer_label": label,
        "h1": "Where each word looked while the ITM score was computed",
        "heading": [f"text: {text}", f"ITM probability of a match: {prob:.4f}"],
        "drawn": "Each tile: the image-grounded text encoder's cross-attention (ITM mode) of "
        "that text token over the image patches; heads averaged; layers: "
        f"{label}. The ITM head reads the first token's ({words[0]}) output. An attention "
        "map, not GradCAM (no gradients here).",
        "cross_attentions": out["cross_attentions"],
    }


def write_heading(draw, x, head, notes, fonts, note_step):
    """The sheet's heading at (x, 6): head lines in black (20 px apart), then notes lines in
    grey, note_step px apart, in the second font (the smaller)."""
    y = 6
    for line in head:
        draw.text((x, y), line, fill="black", font=fonts[0])
        y += 20
    for line in notes:
        draw.text((x, y), line, fill=(60, 60, 60), font=fonts[1])
        y += note_step
