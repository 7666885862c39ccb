"""The whole path a user takes, against transformers (golden/pipeline): photo files ->
BlipProcessor -> model -> ids -> words; then the same through minblip.caption and the CLI.
pixel_values and input_ids are recomputed here by minblip's processor from the photos.

caption_greedy runs BLIP-base's full size on one photo (384-px class-default preprocessing); the
tiny_* cases (one per class and setting) run tiny models with the real BLIP vocabulary and 32-px
images, which compose the same steps at a fraction of the time, and serve the API and CLI tests."""

import json
import shutil

import numpy as np
import pytest
from golden_utils import GOLDEN, case_dirs, load_case, model_dir
from tolerances import for_case

import minblip
from minblip.__main__ import main

CASES = case_dirs("pipeline")


def folder_of(case):
    """The materialized model folder with the BLIP tokenizer beside it."""
    folder = model_dir(case)
    for f in (GOLDEN / "tokenizer" / "blip").iterdir():
        if f.is_file() and not (folder / f.name).exists():
            shutil.copy(f, folder / f.name)
    return folder


def _inputs(meta, processor):
    spec = meta["pipeline"]
    images = [str(GOLDEN / "images" / f) for f in spec["images"]]
    return processor(images=images, text=spec["text"], **spec["processor_kwargs"])


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_pipeline_matches_transformers(case):
    meta, _, expected = load_case(case)
    folder = folder_of(case)
    model = getattr(minblip, meta["class"]).from_pretrained(folder)
    processor = minblip.BlipProcessor.from_pretrained(folder)
    inputs = _inputs(meta, processor)
    if meta["method"] == "generate":
        ids = model.generate(**inputs, **meta["kwargs"])
        np.testing.assert_array_equal(ids, expected["out"])
        assert processor.batch_decode(ids, skip_special_tokens=True) == meta["pipeline"]["decoded"]
    else:
        got = model(**inputs, **meta["kwargs"]).itm_score
        full = not case.name.startswith("tiny_")
        np.testing.assert_allclose(got, expected["out.itm_score"], **for_case(meta, full))


def _case(name):
    return next(c for c in CASES if c.name == name)


def test_caption_api_and_cli_give_transformers_captions(capsys):
    case = _case("tiny_caption_greedy")
    meta, _, expected = load_case(case)
    folder = folder_of(case)
    photos = [str(GOLDEN / "images" / f) for f in meta["pipeline"]["images"]]
    want = [s.strip() for s in meta["pipeline"]["decoded"]]
    assert minblip.caption(photos[0], model=folder) == want[0]
    assert main(["caption", *photos[1:], "--model", str(folder), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["caption"] for r in rows] == want[1:]
    expected = {"out": expected["out"][1:]}
    for r, ids in zip(rows, expected["out"]):
        assert r["token_ids"] == [int(t) for t in ids[: len(r["token_ids"])]]
        assert np.isfinite(r["mean_logprob"]) and r["mean_logprob"] <= 0


def test_caption_cli_reports_unreadable_images_and_goes_on(tmp_path, capsys):
    case = _case("tiny_caption_greedy")
    folder = folder_of(case)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    good = GOLDEN / "images" / "coffee.png"
    shutil.copy(good, tmp_path / "coffee.png")
    assert main(["caption", str(tmp_path), "--model", str(folder)]) == 1
    out, err = capsys.readouterr()
    assert "coffee.png" in out and "broken.jpg" in err and "Traceback" not in err


def test_ask_and_match_cli(capsys):
    vqa = _case("tiny_vqa_greedy")
    meta, _, _ = load_case(vqa)
    photo = str(GOLDEN / "images" / meta["pipeline"]["images"][0])
    assert (
        main(["ask", photo, meta["pipeline"]["text"][0], "--model", str(folder_of(vqa)), "--json"])
        == 0
    )
    row = json.loads(capsys.readouterr().out)
    assert row["answer"] == meta["pipeline"]["decoded"][0].strip()

    itm = _case("tiny_itm")
    meta, _, expected = load_case(itm)
    photo = str(GOLDEN / "images" / meta["pipeline"]["images"][0])
    assert (
        main(["match", photo, *meta["pipeline"]["text"], "--model", str(folder_of(itm)), "--json"])
        == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    logits = expected["out.itm_score"]
    p = np.exp(logits[:, 1]) / np.exp(logits).sum(1)
    want = [meta["pipeline"]["text"][i] for i in np.argsort(-p)]
    assert [r["text"] for r in rows] == want
    np.testing.assert_allclose(
        sorted((r["itm_probability"] for r in rows), reverse=True), np.sort(p)[::-1], atol=1e-5
    )


def test_folder_without_preprocessor_config_uses_the_models_image_size(tmp_path):
    """The class default is 384 px; a 32-px tiny model would refuse such pixels, so the one-call
    API and the CLI size images to the checkpoint's own vision_config.image_size instead."""
    src = GOLDEN / "caption" / "forward_labels" / "model"
    folder = tmp_path / "tiny"
    shutil.copytree(src, folder)
    for f in (GOLDEN / "tokenizer" / "blip").iterdir():
        if f.is_file():
            shutil.copy(f, folder / f.name)
    assert not (folder / "preprocessor_config.json").exists()
    text = minblip.caption(str(GOLDEN / "images" / "coffee.png"), model=folder)
    assert isinstance(text, str)
    model, processor = minblip.pipeline.load_captioner(str(folder))
    side = model.config.vision_config.image_size
    assert side != 384 and processor.image_processor.size == {"height": side, "width": side}


@pytest.mark.parametrize("num_beams", [1, 3])
def test_mean_logprob_equals_a_teacher_forced_pass(num_beams):
    """caption_one reads the log-probabilities off generate's own logits (no second forward);
    they are those of one teacher-forced pass over the caption, to float32 rounding."""
    from minblip.pipeline import caption_one

    case = GOLDEN / "caption" / "forward_labels"
    model = minblip.BlipForConditionalGeneration.from_pretrained(model_dir(case))
    processor = minblip.BlipProcessor(
        minblip.BlipImageProcessor(size=32),
        minblip.BlipProcessor.from_pretrained(GOLDEN / "tokenizer" / "blip").tokenizer,
    )
    image = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    _, ids, mean_logprob = caption_one(image, model, processor, num_beams=num_beams)
    pixels = processor(images=image)["pixel_values"]
    logits = model(pixel_values=pixels, input_ids=np.array([ids])).logits[0].astype(np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    teacher = logp[np.arange(len(ids) - 1), ids[1:]].mean()
    np.testing.assert_allclose(mean_logprob, teacher, atol=1e-5)
