"""`minblip explain --question` (BLIP VQA) and `minblip match --explain` (BLIP ITM), on the tiny
golden models (golden/blip_tasks/vqa_forward_labels, itm_head): the maps drawn are the
attentions the model's own text towers return, and those attentions are the ones its forward
pass used (probabilities x values reproduce the traced cross-attention context); the files are
written with the sizes the layout gives; --out is neither created for a refused model nor
overwritten without --overwrite; bad input is a named error with exit status 2.

The tiny models have a 99-token vocabulary, so each folder gets a vocab.txt of 99 tokens
(BERT's specials, a few words, [unused] fill): a test input, not an expected value."""

import json
import shutil

import numpy as np
import pytest
from golden_utils import GOLDEN, model_dir
from PIL import Image
from test_explain import assert_renders

from minblip import BlipForImageTextRetrieval, BlipForQuestionAnswering, BlipProcessor
from minblip.__main__ import main
from minblip.errors import InputError
from minblip.explain import (
    FILES,
    TILE,
    itm_attention,
    question_attention,
    question_panel,
    render_panel_png,
)
from minblip.ops import merge_heads
from minblip.text_bert import project_kv
from minblip.trace import record

PHOTO = GOLDEN / "images" / "coffee.png"
WORDS = "what is on the table ? a cup of coffee dog cat how many are there red blue".split()
QUESTION = "what is on the table?"
TEXT = "a cup of coffee"


def _folder(src, dst):
    """The tiny model with a 99-token BERT vocabulary and a processor sized to its images."""
    out = shutil.copytree(src, dst)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    vocab += [f"[unused{i}]" for i in range(99 - len(vocab))]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (out / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True})
    )
    side = json.loads((out / "config.json").read_text())["vision_config"]["image_size"]
    (out / "preprocessor_config.json").write_text(
        json.dumps({"size": {"height": side, "width": side}})
    )
    return out


@pytest.fixture(scope="module")
def vqa_folder(tmp_path_factory):
    src = model_dir(GOLDEN / "blip_tasks" / "vqa_forward_labels")
    return _folder(src, tmp_path_factory.mktemp("vqa") / "m")


@pytest.fixture(scope="module")
def itm_folder(tmp_path_factory):
    src = model_dir(GOLDEN / "blip_tasks" / "itm_head")
    return _folder(src, tmp_path_factory.mktemp("itm") / "m")


@pytest.fixture(scope="module")
def vqa(vqa_folder):
    return (
        BlipForQuestionAnswering.from_pretrained(vqa_folder),
        BlipProcessor.from_pretrained(vqa_folder),
    )


@pytest.fixture(scope="module")
def itm(itm_folder):
    return (
        BlipForImageTextRetrieval.from_pretrained(itm_folder),
        BlipProcessor.from_pretrained(itm_folder),
    )


def _picked(att, layer):
    """(L, H, T, K) -> (T, K) as the page says: heads averaged, layers averaged or one."""
    return att.mean(axis=1).mean(axis=0) if layer is None else att[layer].mean(axis=0)


def _context_matches(probs, states, block, H, traced):
    """probs @ values of `states` through `block`'s key/value weights is the traced context."""
    _, v = project_kv(states, block, H)
    np.testing.assert_allclose(merge_heads(probs @ v), traced, atol=1e-6, rtol=0)


@pytest.mark.parametrize("layer", [None, 0, -1])
def test_vqa_maps_are_the_towers_returned_cross_attentions(vqa, layer):
    model, processor = vqa
    r = question_attention(model, processor, str(PHOTO), QUESTION, layer, max_new_tokens=4)
    enc = np.stack([c[0] for c in r["encoder_cross_attentions"]])  # (L, H, Tq, N)
    dec = np.stack([c[0] for c in r["decoder_cross_attentions"]])  # (L, H, T, Tq)
    L, H, Tq, N = enc.shape
    assert N == 1 + 4 * 4 and Tq == len(r["question_tokens"]) == len(r["question_ids"])
    assert r["question_tokens"] == ["[CLS]", "what", "is", "on", "the", "table", "?", "[SEP]"]
    assert dec.shape[:3] == (L, H, len(r["token_ids"])) and dec.shape[3] == Tq
    q = _picked(enc, layer)
    np.testing.assert_array_equal(r["question_maps"], q[:, 1:].reshape(Tq, 4, 4))
    np.testing.assert_array_equal(r["question_cls"], q[:, 0])
    d = _picked(dec, layer)
    assert r["positions"] == list(range(1, len(r["token_ids"])))
    for w, p in enumerate(r["positions"]):
        np.testing.assert_array_equal(r["word_question"][w], d[p - 1])
    np.testing.assert_allclose(r["word_question"].sum(1), 1, atol=1e-6)
    assert r["layer_label"] == (
        "mean of the 2 layers" if layer is None else f"layer {layer % 2} of 2"
    )


def test_vqa_attentions_are_the_ones_generate_and_forward_used(vqa):
    """The answer is generate's; the probabilities, times the values the forward pass made,
    give back the cross-attention contexts traced in that forward pass (question encoder over
    the image, answer decoder over the question encoding)."""
    model, processor = vqa
    r = question_attention(model, processor, str(PHOTO), QUESTION, max_new_tokens=4)
    inputs = processor(images=str(PHOTO), text=QUESTION)
    ids = model.generate(**inputs, max_new_tokens=4)[0]
    np.testing.assert_array_equal(r["token_ids"], ids[: len(r["token_ids"])])
    with record() as acts:
        model(**inputs, decoder_input_ids=r["token_ids"][None])
    image, question = acts["vision_model"], acts["text_encoder"]
    H = model.config.text_config.num_attention_heads
    for i, probs in enumerate(r["encoder_cross_attentions"]):
        block = model.params["text_encoder"]["encoder"]["layer"][i]["crossattention"]["self"]
        traced = acts[f"text_encoder.encoder.layer.{i}.crossattention.self"]
        _context_matches(probs, image, block, H, traced)
    for i, probs in enumerate(r["decoder_cross_attentions"]):
        layer = model.params["text_decoder"]["bert"]["encoder"]["layer"][i]
        traced = acts[f"text_decoder.bert.encoder.layer.{i}.crossattention.self"]
        _context_matches(probs, question, layer["crossattention"]["self"], H, traced)


@pytest.mark.parametrize("layer", [None, 1])
def test_itm_maps_are_the_encoders_returned_cross_attentions(itm, layer):
    model, processor = itm
    r = itm_attention(model, processor, str(PHOTO), TEXT, layer)
    att = np.stack([c[0] for c in r["cross_attentions"]])  # (L, H, T, N)
    L, H, T, N = att.shape
    assert r["words"] == ["[CLS]", "a", "cup", "of", "coffee", "[SEP]"] and T == 6
    picked = _picked(att, layer)
    np.testing.assert_array_equal(r["maps"], picked[:, 1:].reshape(T, 4, 4))
    np.testing.assert_array_equal(r["cls"], picked[:, 0])
    # the score is the model's own ITM score, and the attentions are those its forward used
    text = processor(text=[TEXT])
    pixels = processor(images=str(PHOTO))["pixel_values"]
    with record() as acts:
        logits = model(**text, pixel_values=pixels, use_itm_head=True).itm_score[0]
    np.testing.assert_allclose(r["itm_logits"], logits, atol=1e-6)
    assert r["itm_probability"] == pytest.approx(np.exp(logits[1]) / np.exp(logits).sum())
    for i, probs in enumerate(r["cross_attentions"]):
        block = model.params["text_encoder"]["encoder"]["layer"][i]["crossattention"]["self"]
        traced = acts[f"text_encoder.encoder.layer.{i}.crossattention.self"]
        _context_matches(probs, acts["vision_model"], block, H, traced)
    assert "not GradCAM" in r["drawn"] and f"layers: {r['layer_label']}" in r["drawn"]


def test_wrong_model_classes_and_layers_are_named(vqa, itm):
    (vqa_model, vqa_processor), (itm_model, itm_processor) = vqa, itm
    with pytest.raises(InputError, match="BlipForQuestionAnswering.*got BlipForImageTextRetrieval"):
        question_attention(itm_model, itm_processor, str(PHOTO), QUESTION)
    with pytest.raises(InputError, match="ITM head.*got BlipForQuestionAnswering"):
        itm_attention(vqa_model, vqa_processor, str(PHOTO), TEXT)
    with pytest.raises(InputError, match="--layer 2: the text encoder has 2 layers"):
        itm_attention(itm_model, itm_processor, str(PHOTO), TEXT, layer=2)
    with pytest.raises(InputError, match="--layer -3: the question encoder and answer decoder"):
        question_attention(vqa_model, vqa_processor, str(PHOTO), QUESTION, layer=-3)


def test_explain_question_cli_writes_files_and_refuses_to_overwrite(vqa, vqa_folder, tmp_path):
    out = tmp_path / "deep" / "out"
    argv = ["explain", str(PHOTO), "--model", str(vqa_folder), "--out", str(out)]
    argv += ["--question", QUESTION]
    assert main(argv + ["--max-new-tokens", "4"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    r = question_attention(*vqa, str(PHOTO), QUESTION, max_new_tokens=4)
    with np.load(out / "explain.npz") as f:
        np.testing.assert_array_equal(f["question_maps"], r["question_maps"])
        np.testing.assert_array_equal(f["word_question"], r["word_question"])
        assert list(f["question_tokens"]) == r["question_tokens"]
        meta = json.loads(str(f["meta"]))
    assert meta["question"] == QUESTION and meta["answer"] == r["answer"]
    photo = Image.open(PHOTO).convert("RGB")
    png = Image.open(out / "explain.png")
    assert png.size == render_panel_png(photo, question_panel(r)).size
    Tq = len(r["question_tokens"])
    assert png.width >= 6 + min(8, Tq) * (160 + 6)  # 160-px tiles, 8 a row
    page = (out / "explain.html").read_text()
    assert page.count("<figure>") == Tq and page.count("data:image/png;base64,") == Tq
    assert f"question: {QUESTION}" in page.replace("&#x27;", "'").replace("&quot;", '"')
    assert "never the image" in page and "<script" not in page and "http" not in page
    assert page.count("<tr>") == 1 + len(r["words"])  # the column header, a row per word
    before = (out / "explain.png").read_bytes()
    assert main(argv) == 2  # exists: refused, untouched
    assert (out / "explain.png").read_bytes() == before
    assert main(argv + ["--overwrite", "--max-new-tokens", "2"]) == 0
    assert (out / "explain.png").read_bytes() != before


def test_match_explain_cli_writes_files_and_refuses_to_overwrite(itm, itm_folder, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["match", str(PHOTO), "--text", TEXT, "--model", str(itm_folder), "--explain"]
    argv += ["--out", str(out)]
    assert main(argv) == 0
    r = itm_attention(*itm, str(PHOTO), TEXT)
    assert capsys.readouterr().out.startswith(f"{r['itm_probability']:.4f}  {TEXT}")
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    with np.load(out / "explain.npz") as f:
        np.testing.assert_array_equal(f["maps"], r["maps"])
        np.testing.assert_array_equal(f["cls"], r["cls"])
        meta = json.loads(str(f["meta"]))
    assert meta["itm_probability"] == r["itm_probability"] and meta["text"] == TEXT
    png = Image.open(out / "explain.png")
    cells = 1 + len(r["words"])  # the photo, then a tile per token
    assert png.width == 8 + 4 * (TILE + 8)
    tile_h = round(TILE * Image.open(PHOTO).height / Image.open(PHOTO).width)
    assert png.height > -(-cells // 4) * (tile_h + 36 + 8)
    page = (out / "explain.html").read_text()
    assert page.count("<figure") == cells and "ITM probability of a match" in page
    assert "not GradCAM" in page and "<script" not in page
    before = (out / "explain.png").read_bytes()
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert (out / "explain.png").read_bytes() == before
    assert main(argv + ["--overwrite", "--layer", "0"]) == 0
    assert (out / "explain.png").read_bytes() != before
    capsys.readouterr()
    assert main(argv + ["--overwrite", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["itm_probability"] == r["itm_probability"] and len(row["written"]) == 3
    # the plain ranking still works, positional and --text texts together
    assert main(["match", str(PHOTO), "a dog", "--text", TEXT, "--model", str(itm_folder)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def _refused(argv, capsys, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("minblip: error:")
    for n in needles:
        assert n in err, err


def test_bad_input_is_named_and_leaves_no_out_folder(vqa_folder, itm_folder, tmp_path, capsys):
    out = tmp_path / "never"
    caption = model_dir(GOLDEN / "caption" / "forward_labels")  # no tokenizer beside it
    base = ["--out", str(out)]
    # a model refused for want of a tokenizer: --out not created (it was, before the model)
    _refused(["explain", str(PHOTO), "--model", str(caption), *base], capsys, "tokenizer")
    # --question on a captioning checkpoint, on a retrieval one
    for folder in (caption, itm_folder):
        argv = ["explain", str(PHOTO), "--model", str(folder), "--question", "what?", *base]
        _refused(argv, capsys, "--question", "BlipForQuestionAnswering")
    # explain on a VQA / ITM checkpoint without --question: what to do instead
    _refused(["explain", str(PHOTO), "--model", str(vqa_folder), *base], capsys, "--question Q")
    _refused(["explain", str(PHOTO), "--model", str(itm_folder), *base], capsys, "match")
    # --explain on checkpoints without an ITM head
    for folder in (vqa_folder, caption):
        argv = ["match", str(PHOTO), TEXT, "--model", str(folder), "--explain", *base]
        _refused(argv, capsys, "cannot score image-text matches", "BlipForImageTextRetrieval")
    # one text to explain, at least one text to match; --question and --prompt together
    argv = ["match", str(PHOTO), "a", "b", "--model", str(itm_folder), "--explain", *base]
    _refused(argv, capsys, "--explain draws the map of one text; got 2")
    _refused(["match", str(PHOTO), "--model", str(itm_folder)], capsys, "at least one TEXT")
    argv = ["explain", str(PHOTO), "--model", str(vqa_folder), "--question", "q", "--prompt", "p"]
    _refused(argv + base, capsys, "--question and --prompt")
    # a bad layer is found after loading, before writing
    argv = ["match", str(PHOTO), TEXT, "--model", str(itm_folder), "--explain", "--layer", "5"]
    _refused(argv + base, capsys, "--layer 5")
    assert not out.exists()


@pytest.mark.parametrize("command", ["question", "match"])
def test_pages_render_in_headless_chromium(command, vqa_folder, itm_folder, tmp_path):
    out = tmp_path / "out"
    if command == "question":
        argv = ["explain", str(PHOTO), "--model", str(vqa_folder), "--question", QUESTION]
    else:
        argv = ["match", str(PHOTO), TEXT, "--model", str(itm_folder), "--explain"]
    assert main(argv + ["--out", str(out)]) == 0
    assert_renders(out / "explain.html", tmp_path)
