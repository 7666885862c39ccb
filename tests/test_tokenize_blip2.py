"""BLIP-2's tokenizers (GPT-2 BPE for OPT, T5 Unigram for Flan-T5) against transformers 5.23.0:
golden/blip2_processor/cases.json "tokenizers", one block per tokenizer folder (opt_hub: the
facebook/opt files vocab.json + merges.txt; opt / t5: tokenizer.json as 5.23 saves it)."""

import json
import shutil

import numpy as np
import pytest
from golden_utils import GOLDEN

import minblip
from minblip.tokenize import GPT2Tokenizer, T5Tokenizer, load_tokenizer

ROOT = GOLDEN / "blip2_processor"
CASES = json.loads((ROOT / "cases.json").read_text())
FOLDERS = sorted(CASES["tokenizers"])
_cache = {}


def tok_of(folder):
    if folder not in _cache:
        _cache[folder] = load_tokenizer(ROOT / folder)
    return _cache[folder]


def _encode_params():
    for folder in FOLDERS:
        for i, case in enumerate(CASES["tokenizers"][folder]["encode"]):
            yield pytest.param(folder, case, id=f"{folder}-{case['call']}-{i}")


def _decode_params():
    for folder in FOLDERS:
        for i, case in enumerate(CASES["tokenizers"][folder]["decode"]):
            yield pytest.param(folder, case, id=f"{folder}-{i}")


def test_dispatch_picks_transformers_class():
    for folder in FOLDERS:
        assert type(tok_of(folder)).__name__ == CASES["tokenizers"][folder]["class"]


@pytest.mark.parametrize("folder, case", list(_encode_params()))
def test_encode_matches_transformers(folder, case):
    tok = tok_of(folder)
    args = (case["text"],) if "text_pair" not in case else (case["text"], case["text_pair"])
    got = tok(*args, **case["kwargs"])
    want = case["expected"]
    assert list(got) == list(want)
    for k in want:
        assert np.asarray(got[k]).tolist() == want[k], k
    if case["kwargs"].get("return_tensors") == "np":
        assert all(v.dtype == np.int64 for v in got.values())


@pytest.mark.parametrize("folder, case", list(_decode_params()))
def test_decode_matches_transformers(folder, case):
    assert tok_of(folder).decode(case["ids"], **case["kwargs"]) == case["expected"]


@pytest.mark.parametrize("folder", FOLDERS)
def test_properties_match_transformers(folder):
    tok = tok_of(folder)
    props = dict(CASES["tokenizers"][folder]["properties"])
    assert len(tok) == props.pop("len")
    ids = props.pop("ids_of_tokens")
    assert {t: tok.convert_tokens_to_ids(t) for t in ids} == ids
    tokens = props.pop("tokens_of_ids")
    assert tok.convert_ids_to_tokens(list(range(6)) + [len(tok) - 1]) == tokens
    assert sorted(tok.all_special_tokens) == props.pop("all_special_tokens")
    for k, v in props.items():
        assert getattr(tok, k) == v, k


def test_batch_decode_of_arrays():
    tok = tok_of("opt")
    enc = tok(["a dog", "a big black cat"], padding=True, padding_side="left", return_tensors="np")
    assert tok.batch_decode(enc["input_ids"], skip_special_tokens=True) == [
        "a dog",
        "a big black cat",
    ]


def test_missing_files_name_the_fix(tmp_path):
    with pytest.raises(minblip.TokenizerError, match="vocab.json"):
        GPT2Tokenizer.from_pretrained(tmp_path)
    (tmp_path / "spiece.model").write_bytes(b"")
    with pytest.raises(minblip.TokenizerError, match="only spiece.model.*save_pretrained"):
        T5Tokenizer.from_pretrained(tmp_path)
    with pytest.raises(minblip.TokenizerError, match="cannot tell"):
        load_tokenizer(tmp_path)


def test_wrong_model_kind_is_named(tmp_path):
    shutil.copy(ROOT / "t5" / "tokenizer.json", tmp_path)
    with pytest.raises(minblip.TokenizerError, match="Unigram model, but GPT2Tokenizer"):
        GPT2Tokenizer.from_pretrained(tmp_path)


def test_dispatch_by_model_type_and_unknown_class(tmp_path):
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(ROOT / "opt_hub" / f, tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "opt"}))
    assert isinstance(load_tokenizer(tmp_path), GPT2Tokenizer)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "XTokenizer"}))
    with pytest.raises(minblip.TokenizerError, match="XTokenizer"):
        load_tokenizer(tmp_path)
