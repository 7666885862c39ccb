"""docs/img's mask pictures are what tools/draw_masks.py draws today, from minblip's own mask
functions (BLIP's self_mask, the Q-Former's padding_mask) and, for the two pre-training masks
transformers does not have, the structure the BLIP-2 paper and LAVIS give."""

import importlib.util
import pathlib

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _tool():
    spec = importlib.util.spec_from_file_location("draw_masks", ROOT / "tools" / "draw_masks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_blip_masks_are_causal_and_bidirectional():
    (dec, dec_labels), (enc, enc_labels) = _tool().blip_text_masks().values()
    T = len(dec_labels)
    assert (dec == (np.arange(T)[None, :] <= np.arange(T)[:, None])).all()
    assert enc.shape == (T, T) and enc.all()
    assert dec_labels[0] == "[DEC]" and enc_labels[0] == "[CLS]"


def test_qformer_masks_have_the_papers_structure():
    tool = _tool()
    (itc, _), (itm, _), (itg, _) = tool.qformer_masks().values()
    Q = tool.Q
    q, t = slice(0, Q), slice(Q, None)
    T = itg.shape[0] - Q
    assert itm.all()  # bi-directional: every position reads every position
    assert itc[q, q].all() and itc[t, t].all() and not itc[q, t].any() and not itc[t, q].any()
    assert itg[q, q].all() and not itg[q, t].any()  # queries never read the text
    assert itg[t, q].all()  # text reads every query
    assert (itg[t, t] == np.tril(np.ones((T, T), bool))).all()  # and the text so far


def test_the_pictures_in_docs_are_the_tools_drawing_and_small():
    for name, image in _tool().drawings().items():
        path = ROOT / "docs" / "img" / name
        on_disk = np.asarray(Image.open(path).convert("RGB"))
        assert (on_disk == np.asarray(image.convert("RGB"))).all(), (
            f"{path} is stale: rerun `python tools/draw_masks.py`"
        )
        assert path.stat().st_size < 50_000
