"""The BLIP tokenizer against transformers 5.23.0 (golden/tokenizer/cases.json): ids, masks,
token types and decoded strings, from tokenizer.json and from the vocab.txt-only fallback."""

import functools
import json
import shutil

import numpy as np
import pytest
from golden_utils import GOLDEN
from hypothesis import given
from hypothesis import strategies as st

import minblip
from minblip.tokenize import BertTokenizer

FOLDER = GOLDEN / "tokenizer" / "blip"
CASES = json.loads((GOLDEN / "tokenizer" / "cases.json").read_text())


@pytest.fixture(scope="module", params=["tokenizer.json", "vocab.txt only"])
def tok(request, tmp_path_factory):
    if request.param == "tokenizer.json":
        return BertTokenizer.from_pretrained(FOLDER)
    folder = tmp_path_factory.mktemp("vocab_only")
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(FOLDER / name, folder / name)
    return BertTokenizer.from_pretrained(folder)


def _id(case):
    text = case["text"] if isinstance(case["text"], str) else "batch"
    return f"{case['call']}:{text[:20]!r}"


@pytest.mark.filterwarnings("ignore:Token indices")
@pytest.mark.parametrize("case", CASES["encode"], ids=_id)
def test_encode_matches_transformers(tok, case):
    got = tok(case["text"], **case["kwargs"])
    want = case["expected"]
    assert set(got) == set(want)
    for k in want:
        assert np.asarray(got[k]).tolist() == want[k], k


@pytest.mark.parametrize(
    "case",
    CASES["decode"],
    ids=lambda c: (
        f"{c['ids'][:3]}-{c['skip_special_tokens']}"
        + ("-clean" if c.get("clean_up_tokenization_spaces") else "")
    ),
)
def test_decode_matches_transformers(tok, case):
    kw = {k: case[k] for k in ("skip_special_tokens", "clean_up_tokenization_spaces") if k in case}
    assert tok.decode(case["ids"], **kw) == case["expected"]


@pytest.mark.parametrize("case", CASES["vocab_only"], ids=lambda c: repr(c["text"])[:20])
def test_vocab_txt_alone_gets_transformers_defaults(case, tmp_path):
    """No tokenizer_config.json: lower casing, the [CLS]/[SEP] templates (pairs' token types)
    and padding side are BertTokenizer's defaults."""
    shutil.copy(FOLDER / "vocab.txt", tmp_path / "vocab.txt")
    got = BertTokenizer.from_pretrained(tmp_path)(case["text"], **case["kwargs"])
    assert {k: np.asarray(v).tolist() for k, v in got.items()} == case["expected"]


def test_properties_match_transformers(tok):
    props = dict(CASES["properties"])
    assert tok.convert_ids_to_tokens([0, 100, 101, 102, 103, 30522, 30523]) == props.pop(
        "tokens_of_special_ids"
    )
    assert len(tok) == props.pop("len")
    for k, v in props.items():
        assert getattr(tok, k) == v, k


def test_over_long_text_warns_and_the_model_refuses_it():
    tok = BertTokenizer.from_pretrained(FOLDER)
    with pytest.warns(UserWarning, match="longer than"):
        ids = tok(" ".join(["word"] * 600), return_tensors="np")["input_ids"]
    assert ids.shape[1] > tok.model_max_length


def test_batch_decode_and_processor_drop_token_types():
    processor = minblip.BlipProcessor(
        minblip.BlipImageProcessor(), BertTokenizer.from_pretrained(FOLDER)
    )
    enc = processor(text=["a dog", "a big cat"], padding=True)
    assert set(enc) == {"input_ids", "attention_mask"} and enc["input_ids"].dtype == np.int64
    assert processor.batch_decode(enc["input_ids"], skip_special_tokens=True) == [
        "a dog",
        "a big cat",
    ]


@functools.cache
def _bert_tokenizer():
    return BertTokenizer.from_pretrained(FOLDER)  # once: hypothesis calls the test 100 times


@given(
    st.lists(
        st.sampled_from(["a", "dog", "sits", "on", "the", "beach", "with", "her", "red", "ball"]),
        min_size=1,
        max_size=12,
    )
)
def test_lowercase_words_round_trip(words):
    tok = _bert_tokenizer()
    text = " ".join(words)
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text


@pytest.mark.parametrize(
    "files, match",
    [((), "no tokenizer.json or vocab.txt"), (("tokenizer.json",), "cannot be read")],
)
def test_missing_or_corrupt_files(tmp_path, files, match):
    for f in files:
        (tmp_path / f).write_text("{ not json")
    with pytest.raises(minblip.TokenizerError, match=match):
        BertTokenizer.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"padding": "sideways"}, "padding"),
        ({"truncation": "maybe"}, "truncation"),
        ({"return_tensors": "pt"}, "NumPy"),
        ({"colour": 1}, "unknown"),
    ],
)
def test_bad_arguments(kwargs, match):
    tok = BertTokenizer.from_pretrained(FOLDER)
    with pytest.raises(minblip.InputError, match=match):
        tok(["a", "b c"], **kwargs)


def test_ragged_batch_as_array_needs_padding():
    with pytest.raises(minblip.InputError, match="padding=True"):
        BertTokenizer.from_pretrained(FOLDER)(["a", "b c d"], return_tensors="np")
