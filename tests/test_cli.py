"""The minblip command line: info, help, and errors as exit status 2 with a message."""

import json
import os
import subprocess
import sys

import minblip
from minblip.__main__ import main


def test_info_counts_every_parameter(tiny_vision_dir, capsys):
    assert main(["info", str(tiny_vision_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    model = minblip.BlipVisionModel.from_pretrained(tiny_vision_dir)
    assert info["total_parameters"] == model.num_parameters()
    assert info["model_type"] == "blip_vision_model"
    assert info["size_on_disk_bytes"] == (tiny_vision_dir / "model.safetensors").stat().st_size
    assert set(info["parameters"]) == {"embeddings", "encoder", "post_layernorm"}


def test_info_human_readable(tiny_vision_dir, capsys):
    assert main(["info", str(tiny_vision_dir)]) == 0
    out = capsys.readouterr().out
    assert "blip_vision_model" in out and "total" in out and "MiB" in out


def test_info_on_missing_folder_fails_cleanly(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "Traceback" not in err


def test_a_reader_that_goes_away_ends_the_command_quietly(tiny_vision_dir):
    """`minblip info FOLDER | head`: the pipe's reader is gone before minblip writes; exit status
    141 (as a shell reports SIGPIPE), no traceback."""
    r, w = os.pipe()
    os.close(r)  # the reader went away: every write to w fails with EPIPE
    proc = subprocess.run(
        [sys.executable, "-m", "minblip", "info", str(tiny_vision_dir)],
        stdout=w,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(w)
    assert proc.returncode == 141, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
