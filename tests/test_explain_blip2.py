"""`minblip explain` for BLIP-2, on golden/blip2_generation's tiny OPT and T5 models: the query
maps are the Q-Former's own cross-attention (recomputed probabilities that reproduce the
context the model computed), the word x query table is the language model's returned
attention at the placeholder columns, the files are written and nothing is overwritten."""

import json
import shutil

import numpy as np
import pytest
from golden_utils import GOLDEN
from PIL import Image

from minblip import Blip2ForConditionalGeneration, BlipForConditionalGeneration
from minblip.__main__ import main
from minblip.errors import InputError
from minblip.explain import (
    FILES,
    qformer_cross_attention,
    query_attention,
    render_queries_png,
    write_query_explanation,
)
from minblip.ops import merge_heads
from minblip.preprocess import BlipImageProcessor
from minblip.trace import record

PHOTO = GOLDEN / "images" / "coffee.png"


def _model(kind):
    return Blip2ForConditionalGeneration.from_pretrained(
        GOLDEN / "blip2_generation" / f"{kind}_forward" / "model"
    )


def _pixels(model):
    side = model.config.vision_config.image_size
    photo = Image.open(PHOTO).convert("RGB")
    return BlipImageProcessor(size={"height": side, "width": side})(photo)["pixel_values"]


@pytest.mark.parametrize("kind", ["opt", "t5"])
def test_query_probabilities_reproduce_the_models_cross_attention(kind):
    model = _model(kind)
    image = model.get_image_features(pixel_values=_pixels(model)).last_hidden_state
    with record() as acts:
        model.image_prefix(image)
    cross = qformer_cross_attention(model, image)
    assert cross
    for i, probs, v in cross:
        np.testing.assert_allclose(probs.sum(-1), 1, atol=1e-6)
        context = merge_heads(probs @ v)  # b h q dh -> b q (h dh)
        traced = acts[f"qformer.encoder.layer.{i}.crossattention.attention"]
        np.testing.assert_allclose(context, traced, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["opt", "t5"])
def test_maps_are_the_returned_attentions(kind):
    model = _model(kind)
    pixels = _pixels(model)
    r = query_attention(model, pixels, max_new_tokens=4)
    Q = model.config.num_query_tokens
    W = len(r["positions"])
    assert W >= 1 and r["query_maps"].shape[0] == Q and r["word_queries"].shape == (W, Q)
    image = model.get_image_features(pixel_values=pixels).last_hidden_state
    probs = np.mean([p[0].mean(axis=0) for _, p, _ in qformer_cross_attention(model, image)], 0)
    np.testing.assert_allclose(r["query_maps"].reshape(Q, -1), probs[:, 1:], atol=1e-7)
    np.testing.assert_allclose(r["query_cls"], probs[:, 0], atol=1e-7)
    ids = r["token_ids"][None]
    token = model.config.image_token_index
    if kind == "opt":
        out = model(pixel_values=pixels, input_ids=ids, output_attentions=True)
        att, cols = out.language_model_outputs.attentions, np.nonzero(ids[0] == token)[0]
    else:
        prompt = np.array([[token] * Q + [model.config.text_config.bos_token_id]])
        out = model(
            pixel_values=pixels, input_ids=prompt, decoder_input_ids=ids, output_attentions=True
        )
        att, cols = out.language_model_outputs.cross_attentions, np.arange(Q)
    for w, p in enumerate(r["positions"]):
        expected = np.mean([a[0][:, p - 1][:, cols].mean(axis=0) for a in att], axis=0)
        np.testing.assert_allclose(r["word_queries"][w], expected, atol=1e-7)
    np.testing.assert_allclose(r["query_share"], r["word_queries"].sum(1), atol=1e-7)


def test_layer_choice_and_bad_inputs():
    model = _model("opt")
    pixels = _pixels(model)
    one = query_attention(model, pixels, layer=0, max_new_tokens=2)
    assert one["layer_label"].startswith("Q-Former layer 0")
    with pytest.raises(InputError, match="cross-attention layers"):
        query_attention(model, pixels, layer=7, max_new_tokens=2)
    blip = BlipForConditionalGeneration.from_pretrained(
        GOLDEN / "caption" / "forward_labels" / "model"
    )
    with pytest.raises(InputError, match="Blip2ForConditionalGeneration"):
        query_attention(blip, pixels)


def test_files_written(tmp_path):
    model = _model("t5")
    photo = Image.open(PHOTO).convert("RGB")
    r = query_attention(model, _pixels(model), max_new_tokens=3)
    words = [f"w{i}" for i in range(len(r["positions"]))]
    written = write_query_explanation(tmp_path, photo, r, words)
    assert [p.name for p in written] == list(FILES)
    png = Image.open(tmp_path / "explain.png")
    assert png.size == render_queries_png(photo, r, words).size
    page = (tmp_path / "explain.html").read_text()
    assert "<script" not in page and "http" not in page
    assert page.count("<figure>") == model.config.num_query_tokens
    saved = np.load(tmp_path / "explain.npz")
    np.testing.assert_array_equal(saved["word_queries"], r["word_queries"])
    np.testing.assert_array_equal(saved["query_maps"], r["query_maps"])


@pytest.fixture
def folder(tmp_path):
    """The tiny OPT BLIP-2 with a GPT-2 tokenizer and a processor config beside it."""
    out = shutil.copytree(GOLDEN / "blip2_generation" / "opt_forward" / "model", tmp_path / "m")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(GOLDEN / "blip2_processor" / "opt" / f, out / f)
    cfg = json.loads((out / "config.json").read_text())
    side = cfg["vision_config"]["image_size"]
    (out / "processor_config.json").write_text(
        json.dumps(
            {
                "image_processor": {"size": {"height": side, "width": side}},
                "num_query_tokens": cfg["num_query_tokens"],
            }
        )
    )
    return out


def test_cli(folder, tmp_path, capsys):
    out = tmp_path / "explained"
    args = ["explain", str(PHOTO), "--model", str(folder), "--out", str(out)]
    assert main(args + ["--max-new-tokens", "3"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert "wrote" in capsys.readouterr().out
    assert main(args) != 0  # exists: refused without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--max-new-tokens", "2"]) == 0


def test_cli_question_asks_through_the_prompt_ask_builds(tmp_path, capsys):
    """--question with BLIP-2: the "Question: Q Answer:" prompt of `minblip ask`; the page
    shows the question and the prompt; the table is query_attention's for that prompt."""
    from golden_utils import model_dir

    from minblip.pipeline import answer_prompt, load_captioner

    # the tiny OPT BLIP-2 whose vocabulary is the real tokenizer's (a question's ids fit)
    folder = shutil.copytree(model_dir(GOLDEN / "blip2_pipeline" / "opt_caption"), tmp_path / "m")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(GOLDEN / "blip2_processor" / "opt" / f, folder / f)
    out = tmp_path / "asked"
    q = "what is in the cup?"
    argv = ["explain", str(PHOTO), "--model", str(folder), "--out", str(out), "--question", q]
    assert main(argv + ["--max-new-tokens", "3"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    model, processor = load_captioner(str(folder))
    prompt = answer_prompt(q)
    inputs = processor(images=str(PHOTO), text=prompt)
    r = query_attention(model, inputs["pixel_values"], inputs["input_ids"], max_new_tokens=3)
    with np.load(out / "explain.npz") as f:
        np.testing.assert_array_equal(f["word_queries"], r["word_queries"])
        np.testing.assert_array_equal(f["token_ids"], r["token_ids"])
        meta = json.loads(str(f["meta"]))
    assert meta["question"] == q and meta["prompt"] == prompt == f"Question: {q} Answer:"
    page = (out / "explain.html").read_text()
    assert f"question: {q}" in page and "prompt: Question: " in page
    capsys.readouterr()
    assert main(argv + ["--prompt", "a"]) == 2  # --question and --prompt: one of them
    assert "--question and --prompt" in capsys.readouterr().err
