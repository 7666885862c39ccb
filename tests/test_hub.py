"""The error for a hub id that is not cached names where minblip looked, which files, and the
command of the installed huggingface_hub that fetches them (`hf download`)."""

from importlib.metadata import entry_points

import pytest

from minblip.__main__ import main
from minblip.errors import CheckpointError
from minblip.hub import ALLOW, resolve


def test_not_cached_names_hf_download_and_where_it_looked(tmp_path):
    with pytest.raises(CheckpointError) as e:
        resolve("someone/not-cached", cache_dir=tmp_path, local_files_only=True)
    msg = str(e.value)
    include = " ".join(f"--include '{p}'" for p in ALLOW)
    assert f"hf download someone/not-cached {include}" in msg
    assert str(tmp_path) in msg and "huggingface-cli" not in msg
    assert all(p in msg for p in ALLOW)


def test_the_installed_huggingface_hub_ships_hf():
    scripts = {ep.name for ep in entry_points(group="console_scripts")}
    assert "hf" in scripts


def test_the_cli_says_it_without_a_traceback(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["info", "someone/not-cached"]) == 2
    err = capsys.readouterr().err
    assert "hf download someone/not-cached" in err and "Traceback" not in err
