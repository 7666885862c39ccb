"""`--workers K` (minblip/workers.py, issue 11): K spawned processes write the same files, in the
same order, as one process does; resume still works; bad values and a failing worker are named.

Expected outputs come from --workers 1 on the same tiny golden folders (test_caption_files.py
checks those against the one-call API); nothing here is typed by hand."""

import json
import pathlib
import shutil

import pytest
from test_caption_files import GEN, PHOTOS, blip, blip2_folder, photo_folder  # noqa: F401

from minblip.__main__ import main
from minblip.workers import threads_per_worker


def test_workers_write_what_one_process_writes_and_resume(blip, tmp_path):  # noqa: F811
    """A dozen photos and a zero-byte one, sampled captions in batches of 2: JSONL and CSV byte
    for byte those of --workers 1, sidecars holding their captions, the bad file an error
    record in both; then a run interrupted after 6 records resumes under --workers 2 to the
    same file."""
    root = photo_folder(tmp_path, copies=3)
    (root / "empty.png").write_bytes(b"")
    # sampled in batches of 2: equal only if the workers make the batches one process makes
    base = ["caption", str(root), "--model", str(blip), *GEN, "--batch-size", "2"]
    base += ["--do-sample", "--seed", "3"]
    one = [tmp_path / "one.jsonl", tmp_path / "one.csv"]
    assert main([*base, "--output", "jsonl", str(one[0]), "--output", "csv", str(one[1])]) == 1
    two = [tmp_path / "two.jsonl", tmp_path / "two.csv"]
    argv = [*base, "--workers", "2", "--output", "txt"]
    argv += ["--output", "jsonl", str(two[0]), "--output", "csv", str(two[1])]
    assert main(argv) == 1
    for a, b in zip(one, two):
        assert b.read_bytes() == a.read_bytes()
    records = [json.loads(line) for line in one[0].read_text().splitlines()]
    assert len(records) == 13 and sum("error" in r for r in records) == 1
    for r in records:
        side = pathlib.Path(r["path"]).with_suffix(".txt")
        assert side.read_text() == r["caption"] + "\n" if "error" not in r else not side.exists()

    lines = two[0].read_text().splitlines(keepends=True)
    two[0].write_text("".join(lines[:6]))  # as a run killed after three batches leaves it
    assert main([*base, "--workers", "2", "--output", "jsonl", str(two[0])]) == 1
    assert two[0].read_bytes() == one[0].read_bytes()


def test_workers_print_what_one_process_prints(blip, tmp_path, capsys):  # noqa: F811
    root = photo_folder(tmp_path)
    base = ["caption", str(root), "--model", str(blip), *GEN, "--json"]
    assert main(base) == 0
    want = capsys.readouterr().out
    assert main([*base, "--workers", "2"]) == 0
    assert capsys.readouterr().out == want


def test_ask_with_workers_writes_what_one_process_writes(tmp_path):
    model = blip2_folder(tmp_path, "opt")
    root = photo_folder(tmp_path)
    base = ["ask", str(root), "--model", str(model), "--max-new-tokens", "4"]
    base += ["--question", "what is this?", "--question", "where is it?"]
    assert main([*base, "--output", "jsonl", str(tmp_path / "one.jsonl")]) == 0
    argv = [*base, "--workers", "2", "--output", "jsonl", str(tmp_path / "two.jsonl")]
    assert main(argv) == 0
    assert (tmp_path / "two.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()


@pytest.mark.parametrize("command", ["caption", "ask"])
@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_bad_workers_count_is_named(command, value, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, str(PHOTOS[0]), "--workers", value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --workers: must be an int >= 1 (processes), got '{value}'" in err
    assert "Traceback" not in err


def test_a_worker_that_cannot_load_the_model_is_named(blip, tmp_path, capsys):  # noqa: F811
    broken = tmp_path / "broken"
    shutil.copytree(blip, broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    root = photo_folder(tmp_path)
    out = tmp_path / "c.jsonl"
    argv = ["caption", str(root), "--model", str(broken), "--workers", "2"]
    assert main([*argv, "--output", "jsonl", str(out)]) == 2
    err = capsys.readouterr().err
    assert "minblip-worker-" in err and "(of 2) failed" in err and "model.safetensors" in err
    assert "Traceback" not in err


def test_threads_per_worker_split_the_cores(monkeypatch):
    monkeypatch.setattr("minblip.workers.cores", lambda: 8)
    assert [threads_per_worker(k) for k in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
