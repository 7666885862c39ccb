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
    L = tcfg.num_hidden_layers
    if layer is not None and not -L <= layer < L:
        raise InputError(f"--layer {layer}: the text decoder has {L} layers (0 .. {L - 1})")
    inputs = processor(images=image, text=prompt)
    gen = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
    ids = model.generate(**inputs, **gen)[:1]  # (1, T): [DEC] prompt caption [SEP] (pad)
    n_prompt = 1 if prompt is None else inputs["input_ids"].shape[1] - 1  # [DEC] + prompt
    ends = np.nonzero(ids[0, n_prompt:] == tcfg.sep_token_id)[0]
    T = n_prompt + (int(ends[0]) if ends.size else ids.shape[1] - n_prompt)  # [SEP] excluded
    ids = ids[:, : T + (1 if ends.size else 0)]
    image_embeds = model(pixel_values=inputs["pixel_values"], input_ids=ids).image_embeds
    decoder = BlipTextLMHeadModel(tcfg, model.params["text_decoder"])
    out = decoder(input_ids=ids, encoder_hidden_states=image_embeds, output_attentions=True)
    cross = out.cross_attentions  # L x (1, H, T, N)
    positions = list(range(n_prompt, T))
    att = np.stack([c[0] for c in cross])  # (L, H, T, N)
    att = att.mean(axis=1)  # heads averaged -> (L, T, N)
    att = att.mean(axis=0) if layer is None else att[layer]  # (T, N)
    chosen = att[[p - 1 for p in positions]]  # (W, N): the position that chose each word
    g = int(round(np.sqrt(chosen.shape[1] - 1)))
    if g * g != chosen.shape[1] - 1:
        raise InputError(f"{chosen.shape[1] - 1} image patches do not form a square grid")
    label = f"mean of the {L} layers" if layer is None else f"layer {layer % L} of {L}"
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


def tiles(photo, result):
    """(photo tile, [(word tile, word, note)]) as PIL images TILE wide. Each word's map is
    stretched from its own min to its max, and both are written on the tile: a near-uniform
    map (min close to max) is then visibly so in numbers though the colours span the scale."""
    h = max(1, round(TILE * photo.height / photo.width))
    base = photo.convert("RGB").resize((TILE, h), Image.BICUBIC)
    out = []
    for word, m, c in zip(result["words"], result["maps"], result["cls"]):
        tile = overlay(base, stretch(m))
        note = f"{m.min():.4f} .. {m.max():.4f}  [CLS] {c:.1%}"
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
    head = textwrap.wrap(f"caption: {result['caption']}", chars)
    notes = textwrap.wrap(
        "cross-attention of the decoder position that chose each word, over the image "
        f"patches; heads averaged; layers: {result['layer_label']}. Colour: viridis, dark "
        "= the tile's min, yellow = its max (both written under the tile); [CLS] = the share "
        "given to the image's [CLS] token.",
        int(chars * 1.35),
    )
    head_h = 10 + 20 * len(head) + 15 * len(notes) + 16
    sheet = Image.new("RGB", (width, head_h + rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    write_heading(draw, pad, head, notes, (font, small), 15)
    bar = colormap(np.linspace(0, 1, 120))[None].repeat(8, axis=0)  # the colour key
    sheet.paste(Image.fromarray(bar), (sheet.width - 120 - pad, head_h - 12))
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
<h1>Where each word looked</h1>
<p class="caption">Caption: {words}</p>
<p>Each tile is the cross-attention of the decoder position that chose the word, over the
image patches: heads averaged; layers: {esc(result["layer_label"])}. Colour (viridis) runs
from dark at the tile's own minimum to yellow at its maximum, both written under the tile;
[CLS] is the share given to the image's [CLS] token, which has no place on the photo.</p>
<div class="grid">
{chr(10).join(figures)}
</div></body></html>
"""


def check_out_dir(out, overwrite):
    """Create out; refuse (InputError) to replace any of FILES there without overwrite."""
    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    taken = [f for f in FILES if (out / f).exists()]
    if taken and not overwrite:
        raise InputError(f"{out / taken[0]} exists; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_explanation(out, photo, result, title="minblip explain"):
    """Write explain.png, explain.html and explain.npz into the folder out (which must exist)."""
    out = pathlib.Path(out)
    render_png(photo, result).save(out / "explain.png")
    (out / "explain.html").write_text(render_html(photo, result, title), encoding="utf-8")
    np.savez(
        out / "explain.npz",
        words=np.array(result["words"]),
        token_ids=result["token_ids"],
        maps=result["maps"],
        cls=result["cls"],
        meta=np.array(json.dumps({"layers": result["layer_label"], "caption": result["caption"]})),
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
    g = int(round(np.sqrt(probs.shape[1] - 1)))
    if g * g != probs.shape[1] - 1:
        raise InputError(f"{probs.shape[1] - 1} image patches do not form a square grid")
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


QTILE = 112  # a query's tile: 32 of them fit in a page 8 wide


def render_queries_png(photo, result, words, columns=8):
    """One PNG: a tile per learned query (its cross-attention over the photo), then a table,
    a row per generated word, a cell per query: the attention the word's position gave that
    query's placeholder, coloured from the row's min to its max."""
    font, small = _font(15), _font(11)
    h = max(1, round(QTILE * photo.height / photo.width))
    base = photo.convert("RGB").resize((QTILE, h), Image.BICUBIC)
    maps = result["query_maps"]
    Q = len(maps)
    pad, label_h = 6, 16
    cols = min(columns, Q)
    rows = -(-Q // cols)
    width = max(pad + cols * (QTILE + pad), 520)
    head = [f"caption: {' '.join(words)}"]
    notes = textwrap.wrap(
        f"Top: which image patches each of the {Q} learned queries reads (Q-Former cross-"
        f"attention, heads averaged; {result['layer_label']}), each tile from its own min "
        "(dark) to max (yellow). Bottom: per generated word, the attention the language model "
        "position that chose it gave to each query's placeholder "
        f"({result['lm_label']}), each row from its min to its max; share = the row's sum.",
        max(40, int((width - 2 * pad) / 6.2)),
    )
    head_h = 8 + 20 * len(head) + 14 * len(notes) + 8
    cell = max(6, min(16, (width - 150) // Q))
    table_h = 20 + (cell + 2) * len(words) + 10
    grid_h = rows * (h + label_h + pad)
    sheet = Image.new("RGB", (width, head_h + grid_h + table_h), "white")
    draw = ImageDraw.Draw(sheet)
    write_heading(draw, pad, head, notes, (font, small), 14)
    for i, m in enumerate(maps):
        x = pad + (i % cols) * (QTILE + pad)
        y = head_h + (i // cols) * (h + label_h + pad)
        sheet.paste(overlay(base, stretch(m)), (x, y))
        draw.text(
            (x, y + h + 1), f"q{i}  [CLS] {result['query_cls'][i]:.0%}", fill="black", font=small
        )
    y0 = head_h + grid_h
    x0 = 140
    for j in range(0, Q, 4):  # query numbers over every 4th column
        draw.text((x0 + j * cell, y0 + 2), f"q{j}", fill=(90, 90, 90), font=small)
    for w, (word, row, share) in enumerate(
        zip(words, result["word_queries"], result["query_share"])
    ):
        y = y0 + 18 + w * (cell + 2)
        draw.text((pad, y), f"{word[:12]}  {share:.0%}", fill="black", font=small)
        colours = colormap(stretch(row))
        for j, c in enumerate(colours):
            draw.rectangle(
                [x0 + j * cell, y, x0 + (j + 1) * cell - 2, y + cell - 1],
                fill=tuple(int(v) for v in c),
            )
    return sheet


def render_queries_html(photo, result, words, title):
    """A self-contained page: the query tiles inlined, the word x query table as coloured
    cells (inline styles), no script, no network."""
    esc = html.escape
    h = max(1, round(QTILE * photo.height / photo.width))
    base = photo.convert("RGB").resize((QTILE, h), Image.BICUBIC)
    tiles = "\n".join(
        f'<figure><img src="{_data_uri(overlay(base, stretch(m)))}" alt="query {i}">'
        f"<figcaption>q{i} <small>[CLS] {c:.0%}</small></figcaption></figure>"
        for i, (m, c) in enumerate(zip(result["query_maps"], result["query_cls"]))
    )
    rows = []
    for word, row, share in zip(words, result["word_queries"], result["query_share"]):
        cells = "".join(
            f'<td title="q{j}: {v:.4f}" style="background:rgb{tuple(int(x) for x in c)}"></td>'
            for j, (v, c) in enumerate(zip(row, colormap(stretch(row))))
        )
        rows.append(f"<tr><th>{esc(word)}</th><td class=s>{share:.0%}</td>{cells}</tr>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 6px; }}
figure {{ margin: 0; width: {QTILE}px; font-size: 12px; }}
img {{ display: block; width: {QTILE}px; }}
table {{ border-collapse: collapse; margin-top: 1em; }}
td {{ width: 14px; height: 14px; padding: 0; }}
th, td.s {{ text-align: left; font-weight: normal; padding-right: 8px; width: auto; }}
</style></head><body>
<h1>Where the queries looked, and which queries each word read</h1>
<p>Caption: {esc(" ".join(words))}</p>
<p>Tiles: the Q-Former cross-attention of each learned query over the image patches, heads
averaged; {esc(result["layer_label"])}; each tile from its own minimum (dark) to maximum
(yellow); [CLS] is the share given to the image's [CLS] token.</p>
<div class="grid">
{tiles}
</div>
<p>Table: per generated word, the attention the language-model position that chose it gave to
each query's placeholder ({esc(result["lm_label"])}), each row from its minimum to its maximum
(hover a cell for the value); the percentage is the row's sum, the rest went to text.</p>
<table>
{chr(10).join(rows)}
</table></body></html>
"""


def write_query_explanation(out, photo, result, words, title="minblip explain"):
    """Write explain.png, explain.html and explain.npz (BLIP-2) into the folder out."""
    out = pathlib.Path(out)
    render_queries_png(photo, result, words).save(out / "explain.png")
    page = render_queries_html(photo, result, words, title)
    (out / "explain.html").write_text(page, encoding="utf-8")
    np.savez(
        out / "explain.npz",
        words=np.array(words),
        token_ids=result["token_ids"],
        query_maps=result["query_maps"],
        query_cls=result["query_cls"],
        word_queries=result["word_queries"],
        meta=np.array(json.dumps({"layers": result["layer_label"], "lm": result["lm_label"]})),
    )
    return [out / f for f in FILES]


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
