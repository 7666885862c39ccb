"""`--num-return-sequences` on caption / ask, and bad files among good ones in a folder run
(decompression bombs, zero-byte, truncated, non-image) (minblip/caption_files.py, issue 11).

Expected ids come from the models' own generate with the same options (golden-tested against
transformers in test_generation.py / test_beam_sampling.py / test_blip2_generation.py): every
written sequence must be generate's row, in generate's order; nothing is typed by hand."""

import csv
import json
import shutil
import struct
import zlib

import numpy as np
import pytest
from golden_utils import GOLDEN, case_dirs, load_case, model_dir, tiny_blip_captioner

from minblip.__main__ import main
from minblip.pipeline import answer_prompt, load_captioner, prompt_length, trim_caption

PHOTOS = sorted(p for p in (GOLDEN / "images").iterdir() if p.suffix == ".png")
BLIP2 = {c.name: c for c in case_dirs("blip2_pipeline")}


@pytest.fixture(scope="module")
def blip(tmp_path_factory):
    """The tiny BLIP captioning folder with the BLIP tokenizer beside it."""
    return tiny_blip_captioner(tmp_path_factory.mktemp("blip") / "tiny")


@pytest.fixture(scope="module")
def opt(tmp_path_factory):
    """A tiny BLIP-2 OPT folder with its real tokenizer beside it."""
    case = BLIP2["opt_caption"]
    folder = tmp_path_factory.mktemp("blip2") / "opt"
    shutil.copytree(model_dir(case), folder)
    tok = GOLDEN / "blip2_processor" / load_case(case)[0]["pipeline"]["kind"]
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tok / name, folder / name)
    return folder


def photo_folder(tmp_path, n=len(PHOTOS)):
    root = tmp_path / "photos"
    root.mkdir()
    for p in PHOTOS[:n]:
        shutil.copy(p, root / p.name)
    return root


def generated(folder, path, prompt=None, **gen):
    """generate's rows for one image with these options -> [(new text, trimmed ids)], and the
    sequences_scores under beam search (else None)."""
    model, processor = load_captioner(str(folder))
    inputs = processor(images=str(path), text=prompt)
    out = model.generate(**inputs, **gen, return_dict_in_generate=True, output_scores=True)
    n = prompt_length(model, inputs, prompt)
    rows = []
    for seq in out.sequences:
        ids = trim_caption(seq, n, model)
        rows.append((processor.decode(ids[n:], skip_special_tokens=True).strip(), ids.tolist()))
    scores = out.get("sequences_scores")
    return rows, None if scores is None else scores.tolist()


BEAMS = ["--num-beams", "3", "--num-return-sequences", "2", "--max-new-tokens", "6"]
BEAM_GEN = {"num_beams": 3, "num_return_sequences": 2, "max_new_tokens": 6}


@pytest.mark.parametrize("batch", ["1", "3"])
def test_beams_write_every_sequence(batch, blip, tmp_path, capsys):
    root = photo_folder(tmp_path)
    jl, cs = tmp_path / "c.jsonl", tmp_path / "c.csv"
    argv = ["caption", str(root), "--model", str(blip), *BEAMS, "--batch-size", batch]
    argv += ["--output", "txt", "--output", "jsonl", str(jl), "--output", "csv", str(cs)]
    assert main(argv) == 0
    records = [json.loads(line) for line in jl.read_text(encoding="utf-8").splitlines()]
    with open(cs, newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert len(records) == len(table) == 2 * len(PHOTOS)
    for path in sorted(root.glob("*.png")):
        rows, scores = generated(blip, path, **BEAM_GEN)
        mine = [r for r in records if r["path"] == str(path)]
        assert [r["sequence"] for r in mine] == [0, 1]
        assert [r["caption"] for r in mine] == [text for text, _ in rows]
        np.testing.assert_allclose([r["score"] for r in mine], scores, atol=1e-5)
        cells = [r for r in table if r["path"] == str(path)]
        assert [(c["sequence"], c["caption"]) for c in cells] == [
            (str(r["sequence"]), r["caption"]) for r in mine
        ]
        side = path.with_suffix(".txt").read_text(encoding="utf-8")
        assert side == "\n".join(text for text, _ in rows) + "\n"  # one caption a line
    # stdout --json: generate's very rows
    photo = sorted(root.glob("*.png"))[0]
    assert main(["caption", str(photo), "--model", str(blip), *BEAMS, "--json"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rows, scores = generated(blip, photo, **BEAM_GEN)
    assert [p["token_ids"] for p in printed] == [ids for _, ids in rows]
    assert [p["sequence"] for p in printed] == [0, 1]


def test_a_rerun_resumes_with_every_sequence(blip, tmp_path, capsys):
    root = photo_folder(tmp_path)
    jl = tmp_path / "c.jsonl"
    argv = ["caption", str(root), "--model", str(blip), *BEAMS, "--output", "jsonl", str(jl)]
    assert main(argv) == 0
    before = jl.read_text(encoding="utf-8")
    # drop one image's second sequence: the rerun makes that image again, nothing else
    lines = before.splitlines(keepends=True)
    gone = json.loads(lines[3])
    jl.write_text("".join(lines[:3] + lines[4:]), encoding="utf-8")
    capsys.readouterr()
    assert main(argv) == 0
    assert f"{len(PHOTOS) - 1} of {len(PHOTOS)} image(s) already captioned" in (
        capsys.readouterr().err
    )
    after = [json.loads(line) for line in jl.read_text(encoding="utf-8").splitlines()]
    assert len(after) == 2 * len(PHOTOS)
    assert sorted(map(json.dumps, after)) == sorted(
        map(json.dumps, [json.loads(line) for line in lines])
    )
    assert gone in after


def test_sampled_sequences_are_generates_draws(blip, tmp_path, capsys):
    photo = PHOTOS[0]
    flags = ["--do-sample", "--seed", "7", "--num-return-sequences", "3", "--max-new-tokens", "6"]
    assert main(["caption", str(photo), "--model", str(blip), *flags, "--json"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rows, scores = generated(
        blip, photo, do_sample=True, seed=7, num_return_sequences=3, max_new_tokens=6
    )
    assert scores is None and all("score" not in p for p in printed)
    assert [p["token_ids"] for p in printed] == [ids for _, ids in rows]
    assert [p["caption"] for p in printed] == [text for text, _ in rows]


def test_ask_writes_every_sequence(opt, tmp_path):
    root = photo_folder(tmp_path, 2)
    jl = tmp_path / "a.jsonl"
    question = "what is on the table?"
    argv = ["ask", str(root), question, "--model", str(opt), *BEAMS, "--output", "jsonl", str(jl)]
    assert main(argv) == 0
    records = [json.loads(line) for line in jl.read_text(encoding="utf-8").splitlines()]
    for path in sorted(root.glob("*.png")):
        rows, scores = generated(opt, path, answer_prompt(question), **BEAM_GEN)
        mine = [r for r in records if r["path"] == str(path)]
        assert [(r["question"], r["sequence"]) for r in mine] == [(question, 0), (question, 1)]
        assert [r["caption"] for r in mine] == [text for text, _ in rows]
        np.testing.assert_allclose([r["score"] for r in mine], scores, atol=1e-5)


def test_more_sequences_than_beams_is_a_named_error(blip, capsys):
    argv = ["caption", str(PHOTOS[0]), "--model", str(blip), "--num-return-sequences", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "num_return_sequences=2" in err and "Traceback" not in err


def png_declaring(width, height):
    """A PNG whose header declares width x height, with one tiny IDAT chunk."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_bad_files_among_good_ones(blip, tmp_path, capsys):
    """Every good image captioned; each bad one named on stderr and in an error record saying
    why; exit status 1. A decompression bomb is named as such, with its declared size."""
    root = photo_folder(tmp_path)
    bad = {
        "bomb.png": (png_declaring(50000, 50000), "decompression bomb: 50000×50000"),
        "mid_bomb.png": (png_declaring(10000, 10000), "decompression bomb: 10000×10000"),
        "empty.png": (b"", "empty (0 bytes)"),
        "text.png": (b"just some text", "not a readable image"),
        "truncated.png": (PHOTOS[0].read_bytes()[:300], "truncated or corrupt"),
    }
    for name, (content, _) in bad.items():
        (root / name).write_bytes(content)
    jl = tmp_path / "c.jsonl"
    argv = ["caption", str(root), "--model", str(blip), "--max-new-tokens", "4"]
    assert main([*argv, "--output", "jsonl", str(jl), "--batch-size", "3"]) == 1
    err = capsys.readouterr().err
    records = {
        json.loads(line)["path"]: json.loads(line)
        for line in jl.read_text(encoding="utf-8").splitlines()
    }
    for name, (_, why) in bad.items():
        record = records[str(root / name)]
        assert "caption" not in record and why in record["error"], record
        assert name in err and why in err
    for p in PHOTOS:
        assert records[str(root / p.name)]["caption"]
    assert f"{len(bad)} of {len(bad) + len(PHOTOS)} image(s) failed" in err
    assert "Traceback" not in err


def test_blip_vqa_writes_every_sequence(tmp_path):
    """BLIP VQA (the tiny golden folder; a 99-word vocab so the question's ids fit it): each
    record is a row of BlipForQuestionAnswering.generate with the same options."""
    from minblip.pipeline import load_task_model

    folder = tmp_path / "vqa"
    shutil.copytree(GOLDEN / "blip_tasks" / "vqa_forward_labels" / "model", folder)
    words = "[PAD] [UNK] [CLS] [SEP] [MASK] what is on the table a cup".split()
    words += [f"w{i}" for i in range(99 - len(words))]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    config = {"tokenizer_class": "BertTokenizer", "do_lower_case": True}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    root = photo_folder(tmp_path, 2)
    jl = tmp_path / "a.jsonl"
    question = "what is on the table?"
    argv = ["ask", str(root), question, "--model", str(folder), *BEAMS, "--output", "jsonl"]
    assert main([*argv, str(jl)]) == 0
    records = [json.loads(line) for line in jl.read_text(encoding="utf-8").splitlines()]
    vqa, processor = load_task_model("BlipForQuestionAnswering", str(folder))
    for path in sorted(root.glob("*.png")):
        rows = vqa.generate(**processor(images=str(path), text=question), **BEAM_GEN)
        want = [processor.decode(r, skip_special_tokens=True).strip() for r in rows]
        mine = [r for r in records if r["path"] == str(path)]
        assert [(r["sequence"], r["caption"]) for r in mine] == list(enumerate(want))
