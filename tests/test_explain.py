"""`minblip explain`: per generated word, the decoder's cross-attention over the image patches,
drawn over the photo. On the tiny golden captioning model (golden/caption/forward_labels):
the maps are the model's own returned attentions (heads averaged, layer chosen), the files are
written with the sizes the layout gives, nothing is overwritten without --overwrite, a model
without cross-attention is refused by name, and the HTML page renders in headless Chromium."""

import json
import shutil
import subprocess

import numpy as np
import pytest
from golden_utils import GOLDEN
from PIL import Image

from minblip import BlipForConditionalGeneration, BlipProcessor, BlipVisionModel
from minblip.__main__ import main
from minblip.errors import InputError
from minblip.explain import TILE, caption_attention, colormap, overlay, render_png, stretch

PHOTO = GOLDEN / "images" / "coffee.png"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The tiny captioning model with the BLIP tokenizer and a 32-px image processor beside it."""
    out = shutil.copytree(
        GOLDEN / "caption" / "forward_labels" / "model", tmp_path_factory.mktemp("e") / "m"
    )
    for f in (GOLDEN / "tokenizer" / "blip").iterdir():
        shutil.copy(f, out / f.name)
    side = json.loads((out / "config.json").read_text())["vision_config"]["image_size"]
    (out / "preprocessor_config.json").write_text(
        json.dumps({"size": {"height": side, "width": side}})
    )
    return out


@pytest.fixture(scope="module")
def loaded(folder):
    return BlipForConditionalGeneration.from_pretrained(folder), BlipProcessor.from_pretrained(
        folder
    )


@pytest.mark.parametrize("layer", [None, 0, 1, -1])
def test_maps_are_the_returned_cross_attentions(loaded, layer):
    model, processor = loaded
    r = caption_attention(model, processor, str(PHOTO), layer=layer, max_new_tokens=5)
    ids, pos = r["token_ids"], r["positions"]
    assert ids[0] == model.config.text_config.bos_token_id and pos[0] == 1
    att = np.stack([c[0] for c in r["cross_attentions"]])  # (L, H, T, N)
    L, H, T, N = att.shape
    assert T == len(ids) and N == 1 + 4 * 4  # 32-px image, 8-px patches: [CLS] + 4 x 4
    picked = att.mean(axis=1).mean(axis=0) if layer is None else att[layer].mean(axis=0)
    for w, p in enumerate(pos):
        np.testing.assert_array_equal(r["maps"][w], picked[p - 1, 1:].reshape(4, 4))
        assert r["cls"][w] == picked[p - 1, 0]
        np.testing.assert_allclose(r["maps"][w].sum() + r["cls"][w], 1.0, atol=1e-5)
    assert r["layer_label"] == (
        "mean of the 2 layers" if layer is None else f"layer {layer % 2} of 2"
    )


def test_the_teacher_forced_pass_is_what_generate_computed(loaded):
    """The attentions come from a second pass over the caption; its logits choose every word
    the caption has, so it is the computation generate did step by step."""
    model, processor = loaded
    r = caption_attention(model, processor, str(PHOTO), max_new_tokens=5)
    ids = r["token_ids"][None]
    logits = model(pixel_values=processor(images=str(PHOTO))["pixel_values"], input_ids=ids).logits
    for p in r["positions"]:
        assert logits[0, p - 1].argmax() == ids[0, p]


def test_cli_writes_png_html_npz_and_refuses_to_overwrite(folder, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["explain", str(PHOTO), "--model", str(folder), "--out", str(out)]
    assert main(argv + ["--max-new-tokens", "5"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["explain.html", "explain.npz", "explain.png"]
    with np.load(out / "explain.npz") as f:
        maps, words = f["maps"], list(f["words"])
    model, processor = BlipForConditionalGeneration.from_pretrained(folder), None
    processor = BlipProcessor.from_pretrained(folder)
    r = caption_attention(model, processor, str(PHOTO), max_new_tokens=5)
    np.testing.assert_array_equal(maps, r["maps"])
    assert words == r["words"] and len(words) == 5
    png = Image.open(out / "explain.png")
    cols = min(4, 1 + len(words))
    assert png.width == 8 + cols * (TILE + 8)
    photo = Image.open(PHOTO)
    tile_h = round(TILE * photo.height / photo.width)
    rows = -(-(1 + len(words)) // cols)
    assert png.height > rows * (tile_h + 36 + 8)
    page = (out / "explain.html").read_text()
    assert page.count("<figure") == 1 + len(words) and page.count("data:image/png;base64,") == 6
    assert "<script" not in page and "http" not in page.replace('lang="en"', "")
    # a second run without --overwrite is refused and leaves the files alone
    before = (out / "explain.png").read_bytes()
    capsys.readouterr()
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "explain.png").read_bytes() == before
    assert main(argv + ["--overwrite", "--max-new-tokens", "2"]) == 0
    assert (out / "explain.png").read_bytes() != before


def test_heatmap_pixels_follow_the_map(loaded):
    """The tile is the photo blended with colormap(map stretched to [0, 1]): where the map is
    highest the tile is nearest yellow, where lowest nearest the photo darkened to purple."""
    model, processor = loaded
    r = caption_attention(model, processor, str(PHOTO), max_new_tokens=1)
    flat = Image.new("RGB", (64, 64), (128, 128, 128))

    tile = np.asarray(overlay(flat, stretch(r["maps"][0])), np.float64)
    hi = np.unravel_index(np.argmax(r["maps"][0]), (4, 4))
    lo = np.unravel_index(np.argmin(r["maps"][0]), (4, 4))
    centre = lambda ij: tile[ij[0] * 16 + 8, ij[1] * 16 + 8]  # noqa: E731
    yellow = colormap(1.0).astype(np.float64)
    assert np.linalg.norm(centre(hi) - yellow) < np.linalg.norm(centre(lo) - yellow)
    np.testing.assert_array_equal(colormap([0.0, 1.0]), [[68, 1, 84], [253, 231, 37]])
    assert render_png(Image.open(PHOTO), r).mode == "RGB"


def test_a_model_without_cross_attention_is_refused(tmp_path, capsys):
    vision = BlipVisionModel.from_pretrained(GOLDEN / "vision" / "tiny_b1" / "model")
    with pytest.raises(InputError, match="cross-attends to the image.*BlipVisionModel"):
        caption_attention(vision, None, str(PHOTO))
    folder = GOLDEN / "vision" / "tiny_b1" / "model"
    assert main(["explain", str(PHOTO), "--model", str(folder), "--out", str(tmp_path)]) == 2
    assert "captioning takes" in capsys.readouterr().err


def test_bad_layer_is_named(loaded):
    model, processor = loaded
    with pytest.raises(InputError, match="--layer 2: the text decoder has 2 layers"):
        caption_attention(model, processor, str(PHOTO), layer=2)


def assert_renders(page, tmp_path):
    """Render the HTML file `page` in headless Chromium and check the screenshot is not blank
    (also used by tests/test_explain_tasks.py for the --question and match --explain pages)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, (
        "chromium is not installed: this test renders explain.html in headless Chromium. "
        "Install it (Debian: apt-get install -y chromium) to run the test suite."
    )
    shot = tmp_path / "shot.png"
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1000,800",
        page.as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), f"chromium wrote no screenshot: {done.stderr[-2000:]}"
    pixels = np.asarray(Image.open(shot).convert("RGB"), np.float64)
    assert pixels.shape[:2] == (800, 1000)
    # non-blank: the inlined tiles draw the photo's colours, far from the white page
    not_white = (pixels < 235).any(axis=2).mean()
    assert not_white > 0.05 and pixels.std() > 20


def test_html_page_renders_in_headless_chromium(folder, tmp_path):
    out = tmp_path / "out"
    assert main(["explain", str(PHOTO), "--model", str(folder), "--out", str(out)]) == 0
    assert_renders(out / "explain.html", tmp_path)
