"""Captioning a folder to files (minblip/caption_files.py, issue 11): sidecars, JSONL / CSV
records, --existing, resume after an interruption, atomic writes, --batch-size.

Expected captions come from the one-call API on the same tiny golden folders (minblip.caption,
itself golden-tested against transformers in test_pipeline.py / test_cli_blip2.py); nothing
here is typed by hand."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from golden_utils import GOLDEN, case_dirs, load_case, model_dir, tiny_blip_captioner

import minblip
from minblip import caption_files
from minblip.__main__ import main
from minblip.caption_files import caption_batch, write_atomic
from minblip.pipeline import caption_one, load_captioner

ROOT = GOLDEN.parent
PHOTOS = sorted(p for p in (GOLDEN / "images").iterdir() if p.suffix == ".png")
GEN = ["--max-new-tokens", "6"]  # short captions keep the tests fast
BLIP2 = {c.name: c for c in case_dirs("blip2_pipeline")}


@pytest.fixture(scope="module")
def blip(tmp_path_factory):
    """The tiny BLIP captioning folder with the BLIP tokenizer beside it."""
    return tiny_blip_captioner(tmp_path_factory.mktemp("blip") / "tiny")


def blip2_folder(tmp_path, kind):
    """A tiny BLIP-2 folder (OPT or T5) with its real tokenizer beside it."""
    case = BLIP2[f"{kind}_caption"]
    folder = tmp_path / f"blip2-{kind}"
    shutil.copytree(model_dir(case), folder)
    tok = GOLDEN / "blip2_processor" / load_case(case)[0]["pipeline"]["kind"]
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tok / name, folder / name)
    return folder


def photo_folder(tmp_path, copies=1, name="photos"):
    """The golden photos (copies times, the copies in a subfolder each)."""
    root = tmp_path / name
    for c in range(copies):
        sub = root if c == 0 else root / f"copy{c:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        for p in PHOTOS:
            shutil.copy(p, sub / p.name)
    return root


def api_captions(model, photos, **kwargs):
    kwargs.setdefault("max_new_tokens", 6)
    return dict(
        zip(map(str, photos), minblip.caption([str(p) for p in photos], model=model, **kwargs))
    )


def images_in(root):
    return sorted(p for p in root.rglob("*.png"))


@pytest.mark.parametrize("kind", ["blip", "opt", "t5"])
def test_sidecars_hold_the_api_captions(kind, blip, tmp_path):
    model = blip if kind == "blip" else blip2_folder(tmp_path, kind)
    root = photo_folder(tmp_path)
    # `--output txt FOLDER`: the folder typed after --output txt is an image folder, not a file
    assert main(["caption", "--model", str(model), *GEN, "--output", "txt", str(root)]) == 0
    want = api_captions(model, images_in(root))
    for path in images_in(root):
        assert path.with_suffix(".txt").read_text(encoding="utf-8") == want[str(path)] + "\n"


def test_caption_extension_prefix_and_suffix(blip, tmp_path):
    root = photo_folder(tmp_path)
    args = [
        "--output",
        "txt",
        "--caption-extension",
        "caption",
        "--prefix",
        "photo of ",
        "--suffix",
        ".",
    ]
    assert main(["caption", str(root), "--model", str(blip), *GEN, *args]) == 0
    want = api_captions(blip, images_in(root))
    for path in images_in(root):
        assert not path.with_suffix(".txt").exists()
        got = path.with_suffix(".caption").read_text(encoding="utf-8")
        assert got == f"photo of {want[str(path)]}.\n"


def test_jsonl_and_csv_records(blip, tmp_path):
    """One record per image in both files; CSV quotes a caption holding commas, quotes and a
    newline and reads back to the JSONL's values."""
    root = photo_folder(tmp_path)
    jl, cs = tmp_path / "c.jsonl", tmp_path / "c.csv"
    prefix = 'tag, "quoted"\nnext line: '
    argv = ["caption", str(root), "--model", str(blip), *GEN, "--num-beams", "2"]
    argv += ["--output", "jsonl", str(jl), "--output", "csv", str(cs), "--prefix", prefix]
    assert main(argv) == 0
    rows = [json.loads(line) for line in jl.read_text(encoding="utf-8").splitlines()]
    model, processor = load_captioner(str(blip))
    assert [r["path"] for r in rows] == [str(p) for p in images_in(root)]
    for r in rows:
        text, _, mean_logprob = caption_one(
            r["path"], model, processor, max_new_tokens=6, num_beams=2
        )
        assert r["caption"] == prefix + text
        assert r["mean_logprob"] == pytest.approx(mean_logprob, abs=1e-6)
        assert r["model"] == str(blip) and "error" not in r
        assert r["options"] == {
            "prompt": None,
            "prefix": prefix,
            "suffix": "",
            "num_beams": 2,
            "max_new_tokens": 6,
        }
    with open(cs, newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == list(caption_files.RECORD_FIELDS)
    for r, t in zip(rows, table, strict=True):
        assert t["path"] == r["path"] and t["caption"] == r["caption"]
        assert json.loads(t["options"]) == r["options"]
        assert float(t["mean_logprob"]) == r["mean_logprob"]
        assert t["question"] == t["error"] == ""


def test_existing_modes_never_lose_a_caption_unless_asked(blip, tmp_path):
    root = photo_folder(tmp_path)
    photo = images_in(root)[0]
    side = photo.with_suffix(".txt")
    new = api_captions(blip, [photo])[str(photo)]

    def run(*extra):
        return main(["caption", str(photo), "--model", str(blip), *GEN, "--output", "txt", *extra])

    side.write_text("old caption\n", encoding="utf-8")
    assert run() == 0 and side.read_text() == "old caption\n"  # skip is the default
    assert run("--existing", "append") == 0
    assert side.read_text() == f"old caption, {new}\n"
    assert run("--existing", "append") == 0  # a rerun does not add it twice
    assert side.read_text() == f"old caption, {new}\n"
    side.write_text("old caption\n", encoding="utf-8")
    assert run("--existing", "prepend", "--separator", " | ") == 0
    assert side.read_text() == f"{new} | old caption\n"
    assert run("--existing", "overwrite") == 0 and side.read_text() == f"{new}\n"


def test_records_resume_and_retry_errors(blip, tmp_path, capsys):
    """A rerun captions only what the file does not hold; a bad image is an error record (exit
    1), retried on the next run and replaced, never duplicated."""
    root = photo_folder(tmp_path)
    (root / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "c.jsonl"
    argv = ["caption", str(root), "--model", str(blip), *GEN, "--output", "jsonl", str(out)]
    first = images_in(root)[:2]
    assert main([argv[0], *map(str, first), *argv[2:]]) == 0
    assert len(out.read_text().splitlines()) == 2
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "2 of 5 image(s) already captioned" in err and "broken.png" in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 5 and sum("error" in r for r in rows) == 1
    bad = next(r for r in rows if "error" in r)
    assert bad["path"].endswith("broken.png") and "caption" not in bad
    assert main(argv) == 1  # the bad image is tried again, its record replaced
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows
    want = api_captions(blip, [p for p in images_in(root) if p.name != "broken.png"])
    assert {r["path"]: r["caption"] for r in rows if "error" not in r} == want


def test_a_sidecar_that_cannot_be_written_is_named_and_the_run_goes_on(blip, tmp_path, capsys):
    root = photo_folder(tmp_path)
    photos = images_in(root)
    photos[0].with_suffix(".txt").mkdir()  # a folder where the sidecar should go
    assert (
        main(
            [
                "caption",
                str(root),
                "--model",
                str(blip),
                *GEN,
                "--output",
                "txt",
                "--existing",
                "overwrite",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert f"could not write {photos[0].with_suffix('.txt')}" in err and "Traceback" not in err
    want = api_captions(blip, photos[1:])
    for p in photos[1:]:
        assert p.with_suffix(".txt").read_text() == want[str(p)] + "\n"


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--output", "jsonl"], "needs a file name"),
        (["--output", "xml", "x.xml"], "expected txt, jsonl FILE or csv FILE"),
        (["--output", "jsonl", "{tmp}/a.jsonl", "--existing", "append"], "apply to --output txt"),
        (["--output", "txt", "--output", "txt"], "given twice"),
        (["--top-k", "5"], "apply with --do-sample"),
    ],
)
def test_bad_output_options_are_named(argv, words, blip, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["caption", str(PHOTOS[0]), "--model", str(blip), *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_a_record_file_that_is_not_ours_is_refused_not_overwritten(blip, tmp_path, capsys):
    out = tmp_path / "c.jsonl"
    out.write_text("these are my notes\n")
    argv = ["caption", str(PHOTOS[0]), "--model", str(blip), *GEN, "--output", "jsonl", str(out)]
    assert main(argv) == 2
    assert "line 1 is not JSON" in capsys.readouterr().err
    assert out.read_text() == "these are my notes\n"


def test_write_atomic_leaves_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "a.txt"
    path.write_text("old\n")
    os.chmod(path, 0o640)

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(caption_files.os, "replace", fail)
    with pytest.raises(OSError):
        write_atomic(path, "new\n")
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["a.txt"]
    monkeypatch.undo()
    write_atomic(path, "new\n")
    assert path.read_text() == "new\n" and os.listdir(tmp_path) == ["a.txt"]
    assert path.stat().st_mode & 0o777 == 0o640  # the file keeps its permissions


def _start(argv):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "minblip", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_sidecars(root, n, proc, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if len(list(root.rglob("*.txt"))) >= n:
            return
        time.sleep(0.01)
    pytest.fail(f"the run ended (or stalled) before {n} sidecars: {proc.poll()}")


def _check_complete(root, out, want):
    """Every sidecar and every record holds a whole caption, the API's."""
    for side in root.rglob("*.txt"):
        assert side.read_text() == want[side.with_suffix(".png").name] + "\n"
    rows = [json.loads(line) for line in out.read_text().splitlines()]  # each line whole
    for r in rows:
        assert r["caption"] == want[os.path.basename(r["path"])]
    assert len({r["path"] for r in rows}) == len(rows)
    return rows


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_leaves_complete_files_and_the_rerun_finishes(
    how, blip, tmp_path, capsys
):
    """A real `python -m minblip` process is signalled mid-run; the rerun (in-process: the same
    main() the entry point calls, without a second interpreter start) finishes the folder."""
    # 24 images: after the 8th sidecar the child still has ~0.25 s of work (16 captions of 3
    # beams x 20 tokens, ~16 ms CPU each), 25x the parent's 10-ms poll, so the signal lands
    # mid-run; every image more is work the in-process rerun repeats
    root = photo_folder(tmp_path, copies=6)
    out = tmp_path / "c.jsonl"
    want = {
        p.name: c
        for p, c in zip(
            PHOTOS,
            minblip.caption(list(map(str, PHOTOS)), model=blip, max_new_tokens=20, num_beams=3),
        )
    }
    argv = [
        "caption",
        str(root),
        "--model",
        str(blip),
        "--max-new-tokens",
        "20",
        "--num-beams",
        "3",
    ]
    argv += ["--output", "txt", "--output", "jsonl", str(out)]
    proc = _start(argv)
    _wait_for_sidecars(root, 8, proc)
    proc.send_signal(how)
    _, err = proc.communicate(timeout=60)
    total = len(images_in(root))
    done = len(list(root.rglob("*.txt")))
    assert 8 <= done < total
    if how == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        rows = _check_complete(root, out, want) if out.exists() else []
        assert len(rows) <= done
    else:  # saved, counted and said
        assert proc.returncode == 130, err
        assert f"interrupted: {done} of {total} image(s) done and saved" in err
        assert "Traceback" not in err
        assert len(_check_complete(root, out, want)) == done
        assert not [f for f in os.listdir(root) if f.endswith(".minblip-tmp")]
    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    rows = _check_complete(root, out, want)
    assert len(rows) == total == len(list(root.rglob("*.txt")))


@pytest.mark.parametrize("kind", ["blip", "opt", "t5"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_a_batch_captions_as_one_at_a_time(kind, num_beams, blip, tmp_path):
    """caption_batch (one generate call for all images) gives each image caption_one's caption,
    token ids and (to float32 rounding) mean log-probability."""
    model_folder = blip if kind == "blip" else blip2_folder(tmp_path, kind)
    model, processor = load_captioner(str(model_folder))
    photos = [str(p) for p in PHOTOS]
    gen = {"max_new_tokens": 8, "num_beams": num_beams}
    batch = caption_batch(photos, model, processor, **gen)
    for photo, (text, ids, mean) in zip(photos, batch, strict=True):
        alone = caption_one(photo, model, processor, **gen)
        assert (text, ids) == alone[:2]
        np.testing.assert_allclose(mean, alone[2], atol=1e-5)


def test_batch_size_on_the_cli(blip, tmp_path, capsys):
    root = photo_folder(tmp_path)
    (root / "broken.png").write_bytes(b"")  # a bad image inside a batch is named alone
    out1, out3 = tmp_path / "one.jsonl", tmp_path / "three.jsonl"
    base = [
        "caption",
        str(root),
        "--model",
        str(blip),
        *GEN,
        "--num-beams",
        "2",
        "--output",
        "jsonl",
    ]
    assert main([*base, str(out1)]) == 1
    assert main([*base, str(out3), "--batch-size", "3"]) == 1
    assert "broken.png" in capsys.readouterr().err
    one = [json.loads(line) for line in out1.read_text().splitlines()]
    three = [json.loads(line) for line in out3.read_text().splitlines()]
    for a, b in zip(one, three, strict=True):
        assert a["path"] == b["path"] and a.get("caption") == b.get("caption")
        assert a.get("error", "")[:20] == b.get("error", "")[:20]


def test_generation_options_reach_generate(blip, tmp_path, capsys):
    """The CLI's options are transformers' generate arguments: its captions are the API's with
    the same keywords; sampling with a seed repeats itself."""
    photo = str(PHOTOS[1])
    flags = ["--min-new-tokens", "4", "--repetition-penalty", "1.3", "--no-repeat-ngram-size", "2"]
    assert main(["caption", photo, "--model", str(blip), "--max-new-tokens", "12", *flags]) == 0
    want = minblip.caption(
        photo,
        model=blip,
        max_new_tokens=12,
        min_new_tokens=4,
        repetition_penalty=1.3,
        no_repeat_ngram_size=2,
    )
    assert capsys.readouterr().out.strip() == want
    words = want.split()
    pairs = list(zip(words, words[1:]))
    assert len(pairs) == len(set(pairs))  # no 2-gram of tokens repeats (one word: one token)
    sample = ["caption", photo, "--model", str(blip), *GEN, "--do-sample", "--top-k", "20"]
    assert main([*sample, "--seed", "7"]) == 0 and main([*sample, "--seed", "7"]) == 0
    a, b = capsys.readouterr().out.splitlines()
    assert (
        a
        == b
        == minblip.caption(photo, model=blip, max_new_tokens=6, do_sample=True, top_k=20, seed=7)
    )


@pytest.mark.parametrize("kind", ["opt", "t5"])
def test_ask_a_folder_several_questions_to_jsonl_and_resume(kind, tmp_path, capsys):
    """One record per image and question, the answer minblip.answer gives; a rerun with one
    more question answers only that one."""
    model = blip2_folder(tmp_path, kind)
    root = photo_folder(tmp_path)
    qfile = tmp_path / "questions.txt"
    qfile.write_text("# what to ask\nwhat is on the table?\n\nwhat color is it?\n")
    out = tmp_path / "answers.jsonl"
    argv = ["ask", str(root), "--model", str(model), "--max-new-tokens", "5"]
    argv += ["--questions", str(qfile), "--output", "jsonl", str(out)]
    assert main(argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    questions = ["what is on the table?", "what color is it?"]
    assert [(r["path"], r["question"]) for r in rows] == [
        (str(p), q) for p in images_in(root) for q in questions
    ]
    for r in rows:
        text, _ = minblip.answer(r["path"], r["question"], model=model, max_new_tokens=5)
        assert r["caption"] == text and np.isfinite(r["mean_logprob"])
    capsys.readouterr()
    assert main([*argv, "--question", "how many cups?"]) == 0
    assert "8 of 12 answer(s) already recorded" in capsys.readouterr().err
    again = [json.loads(line) for line in out.read_text().splitlines()]
    assert again[: len(rows)] == rows and len(again) == 12
    assert {r["question"] for r in again[len(rows) :]} == {"how many cups?"}


def test_ask_several_questions_to_stdout(tmp_path, capsys):
    model = blip2_folder(tmp_path, "opt")
    photo = str(PHOTOS[0])
    argv = ["ask", photo, "what is this?", "--question", "where is it?", "--model", str(model)]
    assert main([*argv, "--max-new-tokens", "4", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["question"] for r in rows] == ["what is this?", "where is it?"]
    for r in rows:
        assert (
            r["caption"] == minblip.answer(photo, r["question"], model=model, max_new_tokens=4)[0]
        )


def _gen(*argv):
    """caption_files.generation_kwargs for a caption command line (and the prompt it leaves)."""
    from minblip.__main__ import build_parser

    args = build_parser().parse_args(["caption", "x.png", *argv])
    return caption_files.generation_kwargs(args), args.prompt


@pytest.mark.parametrize("name", sorted(caption_files.PRESETS))
def test_a_preset_is_its_generate_settings(name, tmp_path):
    """--preset NAME captions as the API does with the preset's documented settings (on the
    tiny BLIP-2 OPT folder: its real tokenizer can read blip-paper's prompt, which the tiny BLIP
    folder's 99-token vocabulary cannot)."""
    preset = caption_files.PRESETS[name]
    blip = blip2_folder(tmp_path, "opt")
    out = tmp_path / "c.jsonl"
    argv = ["caption", str(PHOTOS[0]), "--model", str(blip), "--preset", name]
    assert main([*argv, "--output", "jsonl", str(out)]) == 0
    row = json.loads(out.read_text())
    want = minblip.caption(
        str(PHOTOS[0]), model=blip, prompt=preset.get("prompt"), **preset["generate"]
    )
    assert row["caption"] == want and row["options"]["prompt"] == preset.get("prompt")
    assert preset["source"]  # each preset says where it comes from


def test_options_given_win_over_the_preset():
    gen, prompt = _gen("--preset", "blip-paper", "--num-beams", "1", "--max-new-tokens", "6")
    assert gen == {"num_beams": 1, "max_new_tokens": 6, "min_length": 5}
    assert prompt == caption_files.PRESETS["blip-paper"]["prompt"]
    gen, prompt = _gen("--preset", "blip-paper", "--prompt", "a photo of", "--min-new-tokens", "2")
    assert prompt == "a photo of" and "min_length" not in gen and gen["min_new_tokens"] == 2


def _repeated_trigram(ids):
    grams = [tuple(ids[i : i + 3]) for i in range(len(ids) - 2)]
    return len(grams) != len(set(grams))


def test_the_dataset_preset_stops_repeats(blip):
    """On the golden photos the tiny random-weight model repeats itself under transformers'
    defaults (hf); the dataset preset's no_repeat_ngram_size forbids any token 3-gram twice.
    Random weights say nothing about caption quality: this shows the mechanism only."""
    model, processor = load_captioner(str(blip))
    hf, _ = _gen("--preset", "hf")
    dataset, _ = _gen("--preset", "dataset")
    plain = [caption_one(str(p), model, processor, **hf)[1] for p in PHOTOS]
    fixed = [caption_one(str(p), model, processor, **dataset)[1] for p in PHOTOS]
    assert any(_repeated_trigram(ids[1:]) for ids in plain)
    assert not any(_repeated_trigram(ids[1:]) for ids in fixed)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--preset", "nope"], "invalid choice: 'nope'"),
        (["--shard", "3/2"], "expected i/n with 1 <= i <= n"),
        (["--shard", "0/2"], "expected i/n with 1 <= i <= n"),
    ],
)
def test_bad_preset_and_shard_are_named(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        main(["caption", str(PHOTOS[0]), *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_shards_split_a_folder_without_overlap(blip, tmp_path):
    """--shard 1/3 .. 3/3 write disjoint records that together are the whole folder's, each the
    caption of a run over everything."""
    root = photo_folder(tmp_path, copies=2)
    whole = tmp_path / "all.jsonl"
    base = ["caption", str(root), "--model", str(blip), *GEN, "--output", "jsonl"]
    assert main([*base, str(whole)]) == 0
    parts = []
    for i in (1, 2, 3):
        out = tmp_path / f"part{i}.jsonl"
        assert main([*base, str(out), "--shard", f"{i}/3"]) == 0
        parts.append([json.loads(line) for line in out.read_text().splitlines()])
    assert all(parts) and sum(map(len, parts)) == len(images_in(root))
    rows = {r["path"]: r["caption"] for r in map(json.loads, whole.read_text().splitlines())}
    assert {r["path"]: r["caption"] for p in parts for r in p} == rows
