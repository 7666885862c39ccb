"""Blip2Processor against transformers 5.23.0 (golden/blip2_processor/cases.json "processor"):
real photos from golden/images through the checkpoint folders' image processor (364 px for the
OPT folder, as blip2-opt-6.7b-coco; 224 px for T5), text through their tokenizers, with the
<image> placeholders inserted as 5.23 inserts them, compared field by field (pixel_values by
shape, dtype and sha256 of the bytes: exact)."""

import functools
import hashlib
import json

import numpy as np
import pytest
from golden_utils import GOLDEN

import minblip
from minblip.preprocess import BlipImageProcessor
from minblip.tokenize import load_tokenizer

ROOT = GOLDEN / "blip2_processor"
CASES = json.loads((ROOT / "cases.json").read_text())["processor"]


def make(case):
    return _make(case["how"], case["folder"], json.dumps(case["init"]))


@functools.cache  # one processor per recipe, shared by its cases: calls do not change it
def _make(how, folder, init):
    if how == "from_pretrained":
        return minblip.Blip2Processor.from_pretrained(ROOT / folder)
    init = json.loads(init)
    return minblip.Blip2Processor(
        BlipImageProcessor(size=init["size"]),
        load_tokenizer(ROOT / folder),
        num_query_tokens=init["num_query_tokens"],
    )


@pytest.mark.parametrize(
    "case",
    CASES,
    ids=[f"{c['folder']}-{c['init'] and c['init']['num_query_tokens']}-{c['name']}" for c in CASES],
)
def test_processor_matches_transformers(case):
    processor = make(case)
    images = [str(GOLDEN / "images" / f) for f in case["images"]]
    got = processor(
        images=(images[0] if len(images) == 1 else images) if images else None,
        text=case["text"],
        return_tensors="np",
        **case["kwargs"],
    )
    want = case["expected"]
    assert list(got) == list(want)
    for k, v in want.items():
        a = got[k]
        if k == "pixel_values":
            assert [list(a.shape), a.dtype.name] == [v["shape"], v["dtype"]]
            assert hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() == v["sha256"]
        else:
            assert a.dtype == np.int64 and a.tolist() == v, k
    if case["decoded"] is not None:
        ids = got["input_ids"]
        assert processor.batch_decode(ids, skip_special_tokens=True) == case["decoded"]["skip"]
        assert processor.batch_decode(ids) == case["decoded"]["keep"]


def test_from_pretrained_reads_processor_config():
    opt = minblip.Blip2Processor.from_pretrained(ROOT / "opt")
    t5 = minblip.Blip2Processor.from_pretrained(ROOT / "t5", num_query_tokens=4)
    assert opt.num_query_tokens == 32 and t5.num_query_tokens == 4
    assert opt.image_processor.size == {"height": 364, "width": 364}
    assert t5.image_processor.size == {"height": 224, "width": 224}
    assert type(opt.tokenizer).__name__ == "GPT2Tokenizer"
    assert type(t5.tokenizer).__name__ == "T5Tokenizer"


def test_tokenizer_without_image_token_gets_one_at_the_end():
    tok = load_tokenizer(ROOT / "opt_hub")
    n = len(tok)
    assert tok.convert_tokens_to_ids("<image>") == tok.unk_token_id
    minblip.Blip2Processor(BlipImageProcessor(size=224), tok, num_query_tokens=2)
    assert tok.convert_tokens_to_ids("<image>") == n and len(tok) == n + 1


def test_bad_calls_are_named():
    processor = minblip.Blip2Processor.from_pretrained(ROOT / "opt")
    with pytest.raises(minblip.InputError, match="images, text, or both"):
        processor()
    with pytest.raises(minblip.InputError, match="list of strings"):
        processor(text=[1, 2])
    with pytest.raises(minblip.InputError, match="padding=True"):
        processor(text=["a", "a much longer text"])
    processor.num_query_tokens = None
    with pytest.raises(minblip.InputError, match="num_query_tokens"):
        processor(text="a", max_length=8)
