"""golden/blip2_processor/: BLIP-2's tokenizers and Blip2Processor as transformers 5.23.0 runs them.

Folders (tools/build_blip2_tokenizers.py explains the vocabularies):
  opt_hub/  OPT tokenizer as facebook/opt ships it (vocab.json + merges.txt, no <image>)
  opt/      Blip2Processor.save_pretrained of that tokenizer + <image> and a 364 px
            BlipImageProcessor (as blip2-opt-6.7b-coco), num_query_tokens 32
  t5/       Blip2Processor.save_pretrained of a T5 Unigram tokenizer + <image>, 224 px

cases.json:
  versions                 transformers, tokenizers
  tokenizers.<folder>      {"class", "properties", "encode": [{call, text, kwargs, expected}],
                            "decode": [{ids, kwargs, expected}]}
  processor                [{"folder", "how" ("from_pretrained" | "construct"), "init"
                            (construct: image processor settings, num_query_tokens), "images"
                            (file names under golden/images), "text", "kwargs", "expected":
                            {field: list | {"shape", "dtype", "sha256"} for pixel_values},
                            "decoded"}]
"""

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np

TEXTS = [
    "a picture of",
    "Question: which city is this? Answer:",
    "",
    " leading space and trailing space ",
    "two  spaces,\tA TAB and\nnew\n\nlines\r\n",
    "Café crème brûlée, naïve façade — Ångström",
    "北京欢迎你 东京 서울",
    "emoji 🙂🐶 and ♥ symbols",
    "Hello, world! It's a don't-stop (really?) \"quoted\" I'll we've they're",
    "numbers 3.14159 1,000,000 2024-11-22 0x1F 1e-9",
    "literal specials: <s> </s> <pad> <unk> <image><image> <extra_id_0> [CLS]",
    "control\x00chars\x07 and\u200bzero width",
    "x" * 120,
]
LONG = " ".join(["the dog runs on the beach"] * 40)
CALLS = [
    ("single", {}),
    ("no_specials", {"add_special_tokens": False}),
    ("truncate_8", {"truncation": True, "max_length": 8}),
    ("max_length_only", {"max_length": 6}),
    (
        "extras",
        {"return_length": True, "return_offsets_mapping": True, "return_special_tokens_mask": True},
    ),
]
BATCH_CALLS = [
    ("pad_longest", {"padding": True}),
    ("pad_left", {"padding": True, "padding_side": "left"}),
    ("pad_max_length", {"padding": "max_length", "max_length": 24, "truncation": True}),
    ("pad_multiple_8_left", {"padding": True, "pad_to_multiple_of": 8, "padding_side": "left"}),
    ("token_types", {"padding": True, "return_token_type_ids": True}),
    ("pair", {"padding": True}),
]
PROPERTIES = (
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "unk_token_id",
    "bos_token",
    "eos_token",
    "pad_token",
    "unk_token",
    "vocab_size",
    "model_max_length",
    "padding_side",
    "truncation_side",
)
IMAGES = ["astronaut.png", "coffee.png", "camera.png"]
PROMPTS = ["a photo of", "Question: what is the man holding in his left hand? Answer:"]
PROCESSOR_CALLS = [
    ("text_only", [], "Question: which city is this? Answer:", {}),
    ("image_only", ["coffee.png"], None, {}),
    ("images_only", ["astronaut.png", "coffee.png"], None, {}),
    ("image_and_text", ["camera.png"], "a photo of", {}),
    ("batch_pad_right", ["astronaut.png", "coffee.png"], PROMPTS, {"padding": True}),
    (
        "batch_pad_left",
        ["astronaut.png", "coffee.png"],
        PROMPTS,
        {"padding": True, "padding_side": "left"},
    ),
    (
        "batch_max_length",
        ["astronaut.png", "coffee.png"],
        PROMPTS,
        {"padding": "max_length", "max_length": 40, "truncation": True},
    ),
    ("empty_text", ["coffee.png"], "", {}),
]


def sha256(a):
    a = np.ascontiguousarray(a)
    return hashlib.sha256(a.tobytes()).hexdigest()


def _jsonable(enc):
    return {k: np.asarray(v).tolist() if isinstance(v, np.ndarray) else v for k, v in enc.items()}


def tokenizer_cases(tok):
    encode = []
    for text in TEXTS + [LONG]:
        for name, kw in CALLS:
            encode.append(
                {"call": name, "text": text, "kwargs": kw, "expected": dict(tok(text, **kw))}
            )
    for name, kw in BATCH_CALLS:
        texts = TEXTS[:8]
        if name == "pair":
            enc = tok(texts[:4], texts[4:8], **kw)
            encode.append(
                {"call": name, "text": texts[:4], "text_pair": texts[4:8], "kwargs": kw,
                 "expected": dict(enc)}
            )  # fmt: skip
            continue
        encode.append(
            {"call": name, "text": texts, "kwargs": kw, "expected": dict(tok(texts, **kw))}
        )
    kw = {"padding": True, "truncation": True, "max_length": 64, "return_tensors": "np"}
    enc = tok([LONG, "short"], **kw)
    encode.append({"call": "np", "text": [LONG, "short"], "kwargs": kw, "expected": _jsonable(enc)})
    rows = [tok(t).input_ids for t in TEXTS]
    rows.append(tok.convert_tokens_to_ids(["<image>", "<pad>", "</s>"]) + rows[1])
    decode = []
    for ids in rows:
        for kw in (
            {},
            {"skip_special_tokens": True},
            {"clean_up_tokenization_spaces": True},
            {"skip_special_tokens": True, "clean_up_tokenization_spaces": False},
        ):
            decode.append({"ids": ids, "kwargs": kw, "expected": tok.decode(ids, **kw)})
    batch = tok(TEXTS[:4], padding=True, padding_side="left").input_ids
    for kw in ({}, {"skip_special_tokens": True}):
        decode.append({"ids": batch, "kwargs": kw, "expected": tok.batch_decode(batch, **kw)})
        decode.append({"ids": batch, "kwargs": kw, "expected": tok.decode(batch, **kw)})
    props = {k: getattr(tok, k) for k in PROPERTIES}
    props["len"] = len(tok)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<image>", "<extra_id_0>", "<extra_id_99>"]
    props["ids_of_tokens"] = {t: tok.convert_tokens_to_ids(t) for t in specials}
    props["tokens_of_ids"] = tok.convert_ids_to_tokens(list(range(6)) + [len(tok) - 1])
    props["all_special_tokens"] = sorted(tok.all_special_tokens)
    return {"class": type(tok).__name__, "properties": props, "encode": encode, "decode": decode}


def processor_case(processor, folder, how, init, images_dir, name, images, text, kwargs):
    from PIL import Image

    pics = [Image.open(images_dir / f) for f in images]
    enc = processor(
        images=(pics[0] if len(pics) == 1 else pics) if pics else None,
        text=text,
        return_tensors="np",
        **kwargs,
    )
    expected = {}
    for k, v in enc.items():
        v = np.asarray(v)
        if k == "pixel_values":
            expected[k] = {"shape": list(v.shape), "dtype": v.dtype.name, "sha256": sha256(v)}
        else:
            expected[k] = v.tolist()
    decoded = None
    if "input_ids" in enc:
        decoded = {
            "skip": processor.batch_decode(enc["input_ids"], skip_special_tokens=True),
            "keep": processor.batch_decode(enc["input_ids"]),
        }
    return {
        "name": name,
        "folder": folder,
        "how": how,
        "init": init,
        "images": images,
        "text": text,
        "kwargs": kwargs,
        "expected": expected,
        "decoded": decoded,
    }


def build(root: Path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import build_blip2_tokenizers as bt
    import tokenizers
    import transformers
    from transformers import AutoProcessor, AutoTokenizer, Blip2Processor, BlipImageProcessorPil

    out = root / "blip2_processor"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    hub = bt.build_opt_hub(out / "opt_hub")
    Blip2Processor(
        BlipImageProcessorPil(size={"height": 364, "width": 364}),
        bt.build_opt_tokenizer(hub),
        num_query_tokens=32,
    ).save_pretrained(out / "opt")
    Blip2Processor(
        BlipImageProcessorPil(size={"height": 224, "width": 224}),
        bt.build_t5_tokenizer(),
        num_query_tokens=32,
    ).save_pretrained(out / "t5")

    toks = {}
    for folder in ("opt_hub", "opt", "t5"):
        tok = AutoTokenizer.from_pretrained(out / folder)
        toks[folder] = tokenizer_cases(tok)
    assert toks["opt"]["properties"]["ids_of_tokens"]["<image>"] == 50260
    assert toks["t5"]["properties"]["ids_of_tokens"]["<image>"] == bt.T5_PIECES + 100

    images_dir = root / "images"
    cases = []
    for folder in ("opt", "t5"):
        for name, images, text, kwargs in PROCESSOR_CALLS:
            processor = AutoProcessor.from_pretrained(out / folder)
            cases.append(
                processor_case(
                    processor, folder, "from_pretrained", None, images_dir, name, images, text,
                    kwargs,
                )
            )  # fmt: skip
    # A tokenizer without <image> (the pre-2024 hub tokenizer): Blip2Processor adds it itself.
    for nq in (32, None, 4):
        init = {"size": 224, "num_query_tokens": nq}
        for name, images, text, kwargs in PROCESSOR_CALLS[3:6]:
            processor = Blip2Processor(
                BlipImageProcessorPil(size={"height": 224, "width": 224}),
                AutoTokenizer.from_pretrained(out / "opt_hub"),
                num_query_tokens=nq,
            )
            cases.append(
                processor_case(
                    processor, "opt_hub", "construct", init, images_dir, name, images, text, kwargs
                )
            )
    meta = {
        "versions": {
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
        },
        "tokenizers": toks,
        "processor": cases,
    }
    (out / "cases.json").write_text(json.dumps(meta, ensure_ascii=False, indent=0) + "\n")
