"""golden/tokenizer/: the BLIP tokenizer folder (tools/build_tokenizer.py) and what transformers
5.23.0's tokenizer makes of varied text: ids, masks, token types and decoded strings."""

import json
import sys
from pathlib import Path

import numpy as np

TEXTS = [
    "a picture of",
    "A Woman sitting on the BEACH with her dog.",
    "",
    "Café crème brûlée, naïve façade — Ångström",
    "北京欢迎你 东京 서울",
    "emoji 🙂🐶 and ♥ symbols",
    "Hello, world! It's a don't-stop (really?) \"quoted\" [bracketed] {braced} "
    "#hash @at 50% off...",
    "numbers 3.14159 1,000,000 2024-11-22 0x1F 1e-9",
    "whitespace\truns\n\nand   spaces   ",
    "control\x00chars\x07 and\u200bzero width",
    "supercalifragilisticexpialidocious unbelievably",
    "[CLS] literal [SEP] specials [DEC] [ENC] [PAD]",
    "x" * 120,
]
LONG = " ".join(["the dog runs on the beach"] * 120)  # 720 words: longer than the 512 table

CALLS = [
    ("single", {}),
    ("no_specials", {"add_special_tokens": False}),
    ("truncate_8", {"truncation": True, "max_length": 8}),
    ("max_length_only", {"max_length": 6}),
    ("pair", {"text_pair": "A Dog, on the beach."}),
    (
        "pair_truncate_10",
        {"text_pair": "A Dog, on the beach.", "truncation": True, "max_length": 10},
    ),
    (
        "extras",
        {"return_length": True, "return_offsets_mapping": True, "return_special_tokens_mask": True},
    ),
]
BATCH_CALLS = [
    ("pad_longest", {"padding": True}),
    ("pad_max_length", {"padding": "max_length", "max_length": 24, "truncation": True}),
    ("pad_multiple_8", {"padding": True, "pad_to_multiple_of": 8}),
    (
        "pad_extras",
        {
            "padding": True,
            "return_length": True,
            "return_offsets_mapping": True,
            "return_special_tokens_mask": True,
            "verbose": False,
        },
    ),
]
DECODE = [
    [30522, 1037, 3861, 1997, 1037, 3899, 102, 0, 0],
    [101, 7592, 1010, 2088, 999, 2009, 1005, 1055, 102],
    [30522, 30523, 103, 100, 1037, 2158, 1005, 1056, 102],
    [2009, 1005, 1055, 1037, 2204, 2154, 1012, 2129, 2024, 2017, 1029],
]


def build(root: Path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import build_tokenizer
    import tokenizers
    import transformers

    folder = build_tokenizer.build(root / "tokenizer" / "blip")
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    cases = []
    for text in TEXTS + [LONG]:
        for name, kw in CALLS:
            enc = tok(text, **kw)
            cases.append({"call": name, "kwargs": kw, "text": text, "expected": dict(enc)})
    for name, kw in BATCH_CALLS:
        enc = tok(TEXTS[:6], **kw)
        cases.append({"call": name, "kwargs": kw, "text": TEXTS[:6], "expected": dict(enc)})
    enc = tok([LONG, "short"], padding=True, truncation=True, return_tensors="np")
    cases.append(
        {
            "call": "long_batch_np",
            "kwargs": {"padding": True, "truncation": True, "return_tensors": "np"},
            "text": [LONG, "short"],
            "expected": {k: np.asarray(v).tolist() for k, v in enc.items()},
        }
    )
    decodes = []
    for ids in DECODE + [tok(t).input_ids for t in TEXTS]:
        for skip in (False, True):
            decodes.append(
                {
                    "ids": ids,
                    "skip_special_tokens": skip,
                    "expected": tok.decode(ids, skip_special_tokens=skip),
                }
            )
    for ids in DECODE:  # the cleanup asked for (its default for BERT is off)
        decodes.append(
            {
                "ids": ids,
                "skip_special_tokens": True,
                "clean_up_tokenization_spaces": True,
                "expected": tok.decode(
                    ids, skip_special_tokens=True, clean_up_tokenization_spaces=True
                ),
            }
        )
    props = {
        k: getattr(tok, k)
        for k in (
            "bos_token_id",
            "eos_token_id",
            "sep_token_id",
            "cls_token_id",
            "pad_token_id",
            "unk_token_id",
            "mask_token_id",
            "vocab_size",
            "model_max_length",
            "padding_side",
            "truncation_side",
        )
    }
    props["len"] = len(tok)
    props["tokens_of_special_ids"] = tok.convert_ids_to_tokens(
        [0, 100, 101, 102, 103, 30522, 30523]
    )
    out = {
        "versions": {
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
        },
        "class": type(tok).__name__,
        "encode": cases,
        "decode": decodes,
        "properties": props,
        "vocab_only": vocab_only(folder, transformers),
    }
    (root / "tokenizer" / "cases.json").write_text(
        json.dumps(out, ensure_ascii=False, indent=0) + "\n"
    )


def vocab_only(folder, transformers):
    """What BertTokenizer makes of a folder holding vocab.txt alone: its defaults (lower case,
    [CLS]/[SEP] template, right padding) with no tokenizer_config.json to set them."""
    import shutil
    import tempfile

    bare = Path(tempfile.mkdtemp(prefix="vocab-only-"))
    shutil.copy(folder / "vocab.txt", bare / "vocab.txt")
    tok = transformers.BertTokenizer.from_pretrained(bare)
    cases = []
    for text in TEXTS[:4]:
        cases.append({"text": text, "kwargs": {}, "expected": dict(tok(text))})
    kw = {"text_pair": ["A Dog", "the CAT"], "padding": True}
    cases.append({"text": TEXTS[:2], "kwargs": kw, "expected": dict(tok(TEXTS[:2], **kw))})
    shutil.rmtree(bare)
    return cases
