"""BLIP-2 from the command line and the one-call API, against transformers (golden/blip2_pipeline):
a photo file -> Blip2Processor (the checkpoint's real OPT / T5 tokenizer) -> tiny
Blip2ForConditionalGeneration whose vocabulary is that tokenizer's -> generate -> words.
`minblip caption` / `minblip ask` print what the Python API gives, which is what transformers
gives; `minblip info` counts what the safetensors headers hold; `minblip match` refuses BLIP-2."""

import json
import shutil

import numpy as np
import pytest
from golden_utils import GOLDEN, case_dirs, load_case, model_dir
from safetensors import safe_open

import minblip
from minblip.__main__ import main
from minblip.pipeline import answer_prompt

CASES = case_dirs("blip2_pipeline")
QUESTION = "what is on the table?"


def folder_of(case):
    """The materialized tiny BLIP-2 folder with its kind's real tokenizer beside it."""
    meta, _, _ = load_case(case)
    folder = model_dir(case)
    tok = GOLDEN / "blip2_processor" / meta["pipeline"]["kind"]
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if not (folder / name).exists():
            shutil.copy(tok / name, folder / name)
    return folder


def _case(name):
    return next(c for c in CASES if c.name == name)


def _photo(meta):
    return str(GOLDEN / "images" / meta["pipeline"]["image"])


def test_the_cases_ask_with_the_cli_prompt():
    """The golden prompts are the model-card format the CLI builds from the question."""
    asks = [c for c in CASES if load_case(c)[0]["pipeline"]["prompt"] is not None]
    assert asks and all(
        load_case(c)[0]["pipeline"]["prompt"] == answer_prompt(QUESTION) for c in asks
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_api_matches_transformers(case):
    """Blip2Processor + generate + batch_decode on the folder: transformers' ids and words."""
    meta, _, expected = load_case(case)
    spec = meta["pipeline"]
    folder = folder_of(case)
    model = minblip.Blip2ForConditionalGeneration.from_pretrained(folder)
    processor = minblip.Blip2Processor.from_pretrained(folder)
    inputs = processor(images=_photo(meta), text=spec["prompt"])
    ids = model.generate(**inputs, **meta["kwargs"])
    np.testing.assert_array_equal(ids, expected["out"])
    assert processor.batch_decode(ids, skip_special_tokens=True) == spec["decoded"]
    new = ids[:, spec["generated_from"] :]
    assert processor.batch_decode(new, skip_special_tokens=True) == spec["decoded_new"]


def _cli(meta, folder, *extra):
    spec, kwargs = meta["pipeline"], meta["kwargs"]
    flags = ["--model", str(folder), "--json", "--max-new-tokens", str(kwargs["max_new_tokens"])]
    flags += ["--num-beams", str(kwargs.get("num_beams", 1)), *extra]
    if spec["prompt"] is None:
        return main(["caption", _photo(meta), *flags])
    return main(["ask", _photo(meta), QUESTION, *flags])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_cli_prints_the_api_and_transformers_text(case, capsys):
    meta, _, expected = load_case(case)
    spec = meta["pipeline"]
    folder = folder_of(case)
    assert _cli(meta, folder) == 0
    row = json.loads(capsys.readouterr().out)
    want = spec["decoded_new"][0].strip()  # the new text alone, not the prompt
    settings = {
        k: meta["kwargs"][k] for k in ("max_new_tokens", "num_beams") if k in meta["kwargs"]
    }
    if spec["prompt"] is None:
        assert set(row) == {"path", "caption", "token_ids", "mean_logprob"}
        assert row["caption"] == want
        assert minblip.caption(_photo(meta), model=folder, **settings) == want
    else:
        assert set(row) == {"path", "question", "answer", "token_ids"}
        assert row["answer"] == want and row["question"] == QUESTION
        assert minblip.answer(_photo(meta), QUESTION, model=folder, **settings) == (
            want,
            row["token_ids"],
        )
    # token_ids: generate's row as transformers returns it (no eos was reached in 8 steps)
    assert row["token_ids"] == [int(t) for t in expected["out"][0]]


@pytest.mark.parametrize("name", ["opt_caption", "t5_caption", "opt_ask_beams", "t5_ask_beams"])
def test_mean_logprob_equals_a_teacher_forced_pass(name):
    """caption_one reads the new tokens' log-probabilities off generate's own logits (beam rows
    picked by beam_indices); one teacher-forced forward over the same ids gives them too."""
    from minblip.pipeline import caption_one, load_captioner

    meta, _, _ = load_case(_case(name))
    spec = meta["pipeline"]
    model, processor = load_captioner(str(folder_of(_case(name))))
    _, ids, mean_logprob = caption_one(
        _photo(meta), model, processor, spec["prompt"], **meta["kwargs"]
    )
    n = spec["generated_from"]
    ids = np.array([ids])
    inputs = processor(images=_photo(meta), text=spec["prompt"])
    if spec["kind"] == "opt":  # the row itself is the decoder's input; logits[t] predict t + 1
        logits = model(pixel_values=inputs["pixel_values"], input_ids=ids).logits[0]
        logits, targets = logits[n - 1 : -1], ids[0, n:]
    else:  # the prompt (or Q placeholders + </s>, as 5.23 builds it) feeds T5's encoder
        prompt = inputs.get("input_ids")
        if prompt is None:
            cfg = model.config
            prompt = np.array([[cfg.image_token_index] * cfg.num_query_tokens + [1]])
        logits = model(
            pixel_values=inputs["pixel_values"], input_ids=prompt, decoder_input_ids=ids[:, :-1]
        ).logits[0]
        targets = ids[0, 1:]
    logits = logits.astype(np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    teacher = logp[np.arange(len(targets)), targets].mean()
    np.testing.assert_allclose(mean_logprob, teacher, atol=1e-5)


def test_verbose_names_the_model_and_prints_the_prompt(capsys):
    meta, _, _ = load_case(_case("opt_ask"))
    assert _cli(meta, folder_of(_case("opt_ask")), "--verbose") == 0
    err = capsys.readouterr().err
    assert "BLIP-2 with OPT" in err and "'Question: what is on the table? Answer:'" in err
    meta, _, _ = load_case(_case("t5_caption"))
    assert _cli(meta, folder_of(_case("t5_caption")), "--verbose") == 0
    err = capsys.readouterr().err
    assert "BLIP-2 with T5" in err and "prompt none" in err


def test_match_refuses_a_blip2_checkpoint_by_name(capsys):
    meta, _, _ = load_case(_case("opt_caption"))
    folder = folder_of(_case("opt_caption"))
    assert main(["match", _photo(meta), "a cup", "--model", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "Blip2ForConditionalGeneration" in err and "BlipForImageTextRetrieval" in err
    assert "Traceback" not in err


def _header_counts(files):
    """Parameters per part and dtype names, read through the safetensors library."""
    parts, dtypes = {}, set()
    for path in files:
        with safe_open(path, "np") as f:
            for key in f.keys():
                s = f.get_slice(key)
                head = key.split(".")[0]
                part = "qformer + query_tokens" if head in ("qformer", "query_tokens") else head
                parts[part] = parts.get(part, 0) + int(np.prod(s.get_shape()))
                dtypes.add(s.get_dtype())
    return parts, dtypes


@pytest.mark.parametrize("kind", ["opt", "t5"])
def test_info_counts_every_part_of_a_blip2_folder(kind, capsys):
    folder = folder_of(_case(f"{kind}_caption"))
    assert main(["info", str(folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    parts, dtypes = _header_counts([folder / "model.safetensors"])
    assert info["parameters"] == parts
    assert set(parts) == {
        "vision_model",
        "qformer + query_tokens",
        "language_projection",
        "language_model",
    }
    assert info["total_parameters"] == sum(parts.values())
    assert (
        info["total_parameters"]
        == minblip.Blip2ForConditionalGeneration.from_pretrained(folder).num_parameters()
    )
    assert info["dtype"] == {"F32": info["total_parameters"]} and dtypes == {"F32"}
    assert info["parameter_bytes"] == {k: 4 * n for k, n in parts.items()}
    assert info["config"]["language_model"]["model_type"] == kind
    assert info["config"]["qformer"]["num_query_tokens"] == 4
    assert info["size_on_disk_bytes"] == (folder / "model.safetensors").stat().st_size
    assert main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "language_model" in out and "qformer + query_tokens" in out and "MiB" in out


def test_info_reads_a_sharded_folder_from_its_headers(tmp_path, capsys):
    """Three shards + model.safetensors.index.json (tensors stored as float16 in one shard):
    the same counts as the single file, every shard's bytes, both dtypes."""
    from safetensors.numpy import save_file

    src = folder_of(_case("opt_caption"))
    with safe_open(src / "model.safetensors", "np") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    keys = sorted(tensors)
    shards = [keys[0::3], keys[1::3], keys[2::3]]
    weight_map = {}
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-00003.safetensors"
        dtype = np.float16 if i == 2 else np.float32
        save_file({k: tensors[k].astype(dtype) for k in shard}, str(tmp_path / name))
        weight_map.update((k, name) for k in shard)
    index = {"metadata": {}, "weight_map": weight_map}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    shutil.copy(src / "config.json", tmp_path / "config.json")
    assert main(["info", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    files = sorted(tmp_path.glob("model-*.safetensors"))
    parts, dtypes = _header_counts(files)
    assert info["parameters"] == parts == _header_counts([src / "model.safetensors"])[0]
    assert info["files"] == [f.name for f in files]
    assert info["size_on_disk_bytes"] == sum(f.stat().st_size for f in files)
    assert set(info["dtype"]) == {"F32", "F16"} == dtypes
    assert sum(info["dtype"].values()) == info["total_parameters"]


@pytest.mark.parametrize(
    "config, words",
    [
        (
            {"model_type": "blip-2", "architectures": ["Blip2ForImageTextRetrieval"]},
            ["Blip2ForImageTextRetrieval", "no language model", "Blip2ForConditionalGeneration"],
        ),
        ({"model_type": "clip"}, ["'clip'", '"blip"', '"blip-2"']),
    ],
)
def test_caption_and_ask_refuse_other_checkpoints_by_name(tmp_path, capsys, config, words):
    (tmp_path / "config.json").write_text(json.dumps(config))
    photo = str(GOLDEN / "images" / "coffee.png")
    assert main(["caption", photo, "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words) and "Traceback" not in err
    if config["model_type"] == "blip-2":
        assert main(["ask", photo, QUESTION, "--model", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert all(w in err for w in words)


def test_an_empty_caption_is_explained_on_stderr(monkeypatch, capsys):
    """A random-weight full-size folder repeats </s> (skipped by decoding): the empty line
    gets a note instead of looking like a crash."""
    import minblip.pipeline

    case = _case("opt_caption")
    meta, _, _ = load_case(case)
    monkeypatch.setattr(minblip.pipeline, "caption_one", lambda *a, **k: ("", [2, 2], -0.5))
    assert main(["caption", _photo(meta), "--model", str(folder_of(case))]) == 0
    out, err = capsys.readouterr()
    assert out == "\n" and "the text is empty" in err and "special token" in err
