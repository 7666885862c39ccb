"""Build a full-size, random-weight Salesforce/blip2-opt-2.7b or blip2-flan-t5-xl folder with
transformers' layout.

    python tools/fullsize_blip2.py /tmp/blip2-opt-2.7b      # /work/gvenv (torch + transformers)
    python tools/fullsize_blip2.py /tmp/blip2-opt-small --lm-layers 4 --vision-layers 4
    python tools/fullsize_blip2.py /tmp/blip2-flan-t5-xl --lm flan-t5-xl

The config is the hub's (../shared/spec/checkpoints.md §2.2: EVA ViT-g at 224 px with 39
layers, the default Q-Former with 32 queries, OPT-2.7b: 32 layers of width 2560, vocabulary
50304), ~3.8 B parameters, ~15 GB in float32. With --lm flan-t5-xl, §2.3's: the same ViT-g and
Q-Former, Flan-T5-XL (24 encoder + 24 decoder blocks of width 2048, gated-GELU FFN of 5120,
vocabulary 32128, untied lm_head), image_token_index 32100 on the hub, ~3.94 B parameters,
~15.8 GB in float32 (the hub's 1289 tensors: the encoder/decoder embed_tokens aliases of
`shared` are dropped as save_pretrained drops them). --lm-layers sets both T5 stacks' depth.

How the weights are written (no 15 GB model is ever held in memory): transformers builds the
model on the meta device (`with torch.device("meta"): Blip2ForConditionalGeneration(config)`),
which gives the exact state-dict keys and shapes without allocating them;
transformers' own `remove_tied_weights_from_state_dict` drops the tied alias save_pretrained
drops (language_model.lm_head.weight), and huggingface_hub's `split_torch_state_dict_into_shards`
(what save_pretrained calls) assigns keys to `model-0000k-of-0000n.safetensors` shards. Each shard
is then streamed to disk tensor by tensor: a safetensors header, then each tensor's values from
minblip.testing.random_weights (per key, seeded, so a value depends only on seed, key and
shape), then model.safetensors.index.json as save_pretrained writes it. Peak memory is about
one tensor (the 515 MB embedding) instead of the model.

Sharding: transformers 5.23's save_pretrained defaults to max_shard_size="50GB" (one 15 GB file);
the hub repos were saved by transformers 4.x, whose default was "5GB", and are sharded. This
script shards at 5GB by default so the folder is laid out as the hub's (--max-shard-size 50GB
gives what 5.23's default would write).

The OPT tokenizer is golden/blip2_processor/opt (OPT's byte-level BPE, 50260 tokens: GPT-2's vocab
in OPT's id order). It has no `<image>`; transformers' Blip2Processor adds it, as it does for
the pre-2024 hub tokenizers, at the end: id 50260, where the hub's tokenizer has 50265. So
config.json's image_token_index is set to the id the tokenizer gives `<image>` (the embedding
has 50304 rows either way). The processor (processor_config.json: 224 px, num_query_tokens 32)
and the tokenizer files are written by transformers' Blip2Processor.save_pretrained.
The Flan-T5 tokenizer is golden/blip2_processor/t5: a small Unigram T5 tokenizer (2000 pieces +
100 `<extra_id_*>`) with `<image>` at 2100 where the hub's has 32100; image_token_index is set
to 2100 the same way (the embedding keeps 32128 rows). Both minblip and transformers load it.

    python tools/fullsize_blip2.py FOLDER --transformers-ids PHOTO [QUESTION]

prints what transformers generates on the folder (ids and decoded text, no prompt and with the
model-card prompt "Question: QUESTION Answer:") as JSON, to compare with `minblip caption
--json` / `minblip ask --json` on the same folder.

Measured (2026-12-01, 2 shared cores under load ~5, 24 GiB): building /tmp/blip2-opt-2.7b takes
5 min 50 s, peak RSS 2.9 GB, 14.3 GiB in 4 shards. `minblip caption --model
/tmp/blip2-opt-2.7b photo.png`: 1 min 25 s cold (14.5 GB read from disk), peak RSS 13.9 GB, all
of it file-backed memory-mapped weights (RssAnon ~0.1 GB); from_pretrained 0.4 s, ViT-g +
Q-Former 26 s, 20 OPT-2.7b tokens ~53 s. With 2 OPT and 2 ViT layers (--opt-layers 2
--vision-layers 2 --max-shard-size 500MB) minblip's ids equal transformers' for caption, ask
and ask with 3 beams.
"""

import argparse
import json
import pathlib
import struct
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

OPT_2_7B = dict(
    model_type="opt",
    hidden_size=2560,
    ffn_dim=10240,
    num_attention_heads=32,
    num_hidden_layers=32,
    vocab_size=50304,
    word_embed_proj_dim=2560,
    eos_token_id=50118,
    activation_dropout=0.0,
    prefix="</s>",
)
FLAN_T5_XL = dict(  # §2.3's text_config (task_specific_params left out: not read by generate)
    model_type="t5",
    architectures=["T5ForConditionalGeneration"],
    vocab_size=32128,
    d_model=2048,
    d_kv=64,
    d_ff=5120,
    num_layers=24,
    num_decoder_layers=24,
    num_heads=32,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",
    dense_act_fn="gelu",
    is_gated_act=True,
    layer_norm_epsilon=1e-6,
    dropout_rate=0.1,
    tie_word_embeddings=False,
    decoder_start_token_id=0,
    bos_token_id=1,
    eos_token_id=1,
    pad_token_id=0,
    is_encoder_decoder=True,
    n_positions=512,
    output_past=True,
    classifier_dropout=0.0,
)
LMS = {"opt-2.7b": OPT_2_7B, "flan-t5-xl": FLAN_T5_XL}
TOKENIZERS = {"opt-2.7b": "opt", "flan-t5-xl": "t5"}  # golden/blip2_processor/<name>
NUM_QUERY_TOKENS = 32
_DTYPES = {"torch.float32": ("F32", 4), "torch.int64": ("I64", 8)}


def processor(lm="opt-2.7b"):
    """transformers' Blip2Processor: 224-px BlipImageProcessor + the golden OPT / T5 tokenizer."""
    import transformers

    golden = HERE.parent / "golden/blip2_processor" / TOKENIZERS[lm]
    tok = transformers.AutoTokenizer.from_pretrained(golden)
    images = transformers.BlipImageProcessor(
        size={"height": 224, "width": 224},
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    return transformers.Blip2Processor(images, tok, num_query_tokens=NUM_QUERY_TOKENS)


def meta_model(lm_layers=None, vision_layers=None, image_token_index=50265, lm="opt-2.7b"):
    """(config, model on the meta device) for blip2-opt-2.7b / blip2-flan-t5-xl, optionally with
    fewer layers."""
    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    text = dict(LMS[lm])
    vision = {}
    if lm_layers is not None and lm == "opt-2.7b":
        text["num_hidden_layers"] = lm_layers
    elif lm_layers is not None:
        text.update(num_layers=lm_layers, num_decoder_layers=lm_layers)
    if vision_layers is not None:
        vision["num_hidden_layers"] = vision_layers
    cfg = Blip2Config(
        vision_config=vision,
        text_config=text,
        num_query_tokens=NUM_QUERY_TOKENS,
        image_token_index=image_token_index,
        use_decoder_only_language_model=lm == "opt-2.7b",
    )
    cfg.architectures = ["Blip2ForConditionalGeneration"]
    with torch.device("meta"):
        model = Blip2ForConditionalGeneration(cfg).eval()
    return cfg, model


def saved_state(model, max_shard_size):
    """({key: meta tensor} as save_pretrained would save, the shard split) without weights."""
    from huggingface_hub import split_torch_state_dict_into_shards
    from transformers.modeling_utils import remove_tied_weights_from_state_dict

    state = remove_tied_weights_from_state_dict(model.state_dict(), model)
    split = split_torch_state_dict_into_shards(
        state, filename_pattern="model{suffix}.safetensors", max_shard_size=max_shard_size
    )
    return state, split


def write_shard(path, tensors, seed):
    """Stream one safetensors file: header (keys sorted, 8-byte aligned), then each tensor's
    random_weights values, one tensor in memory at a time. Returns the bytes of data."""
    import numpy as np

    from minblip.testing import random_weights

    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for key in sorted(tensors):
        t = tensors[key]
        code, size = _DTYPES[str(t.dtype)]
        n = size * int(np.prod(t.shape, dtype=np.int64))
        header[key] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for key in sorted(tensors):
            dtype = np.int64 if header[key]["dtype"] == "I64" else np.float32
            value = random_weights({key: tuple(tensors[key].shape)}, seed, dtype=dtype)[key]
            f.write(np.ascontiguousarray(value).tobytes())
    return offset


def build(out_dir, seed=0, lm_layers=None, vision_layers=None, max_shard_size="5GB", lm="opt-2.7b"):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = processor(lm)
    image_token = proc.tokenizer.convert_tokens_to_ids(str(proc.image_token))
    cfg, model = meta_model(lm_layers, vision_layers, image_token, lm)
    state, split = saved_state(model, max_shard_size)
    total = 0
    for filename, keys in split.filename_to_tensors.items():
        print(f"  {filename}: {len(keys)} tensors", flush=True)
        total += write_shard(out_dir / filename, {k: state[k] for k in keys}, seed)
    if split.is_sharded:
        index = {"metadata": {"total_size": total}, "weight_map": split.tensor_to_filename}
        (out_dir / "model.safetensors.index.json").write_text(
            json.dumps(index, indent=2, sort_keys=True) + "\n"
        )
    cfg.save_pretrained(out_dir)
    model.generation_config.save_pretrained(out_dir)
    proc.save_pretrained(out_dir)
    return out_dir


def check_against_save_pretrained(tmp_dir):
    """The streamed writer against transformers' own save_pretrained on a small real model:
    same keys, shapes, dtypes (the meta path drops the same tied alias)."""
    import numpy as np
    import torch
    from safetensors import safe_open
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    from minblip.testing import random_weights

    tmp_dir = pathlib.Path(tmp_dir)
    small = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4)
    text = dict(OPT_2_7B, hidden_size=32, ffn_dim=48, num_attention_heads=4, num_hidden_layers=2)
    text.update(vocab_size=99, word_embed_proj_dim=32)
    cfg = Blip2Config(
        vision_config=dict(small, image_size=28, patch_size=7),
        qformer_config=dict(small, encoder_hidden_size=32),
        text_config=text,
        num_query_tokens=4,
        image_token_index=98,
    )
    with torch.device("meta"):
        meta = Blip2ForConditionalGeneration(cfg).eval()
    state, split = saved_state(meta, "100KB")
    real = Blip2ForConditionalGeneration(cfg).eval()
    # only the kept keys: a tied alias loaded after its source would overwrite it
    w = random_weights({k: tuple(v.shape) for k, v in state.items()}, 0)
    real.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()}, strict=False)
    real.save_pretrained(tmp_dir / "hf", max_shard_size="100KB")
    (tmp_dir / "ours").mkdir(parents=True, exist_ok=True)
    for filename, keys in split.filename_to_tensors.items():
        write_shard(tmp_dir / "ours" / filename, {k: state[k] for k in keys}, 0)
    hf_index = json.loads((tmp_dir / "hf" / "model.safetensors.index.json").read_text())
    assert hf_index["weight_map"] == split.tensor_to_filename, "shard layouts differ"
    for filename in split.filename_to_tensors:
        with (
            safe_open(tmp_dir / "hf" / filename, "np") as a,
            safe_open(tmp_dir / "ours" / filename, "np") as b,
        ):
            assert sorted(a.keys()) == sorted(b.keys()), filename
            for k in a.keys():
                np.testing.assert_array_equal(a.get_tensor(k), b.get_tensor(k), err_msg=k)
    print(f"  streamed shards equal save_pretrained's ({len(split.filename_to_tensors)} files)")


def transformers_ids(folder, photo, question="what is on the table?"):
    """{run: {"ids", "decoded"}}: transformers' generate on the folder (caption, ask, ask with 3
    beams), for comparison with minblip's CLI."""
    import torch
    import transformers
    from PIL import Image

    proc = transformers.Blip2Processor.from_pretrained(folder)
    model = transformers.Blip2ForConditionalGeneration.from_pretrained(folder).eval()
    prompt = f"Question: {question} Answer:"
    runs = {"caption": (None, {}), "ask": (prompt, {}), "ask_beams": (prompt, {"num_beams": 3})}
    out = {}
    for name, (text, kwargs) in runs.items():
        enc = proc(images=Image.open(photo), text=text, return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(**enc, **kwargs)
        decoded = proc.batch_decode(ids, skip_special_tokens=True)[0]
        out[name] = {"ids": ids[0].tolist(), "decoded": decoded}
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", nargs="?", default="/tmp/blip2-opt-2.7b")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lm", choices=sorted(LMS), default="opt-2.7b", help="the language model")
    ap.add_argument(
        "--lm-layers",
        "--opt-layers",
        type=int,
        default=None,
        help="fewer language-model layers (OPT 32, T5 24 + 24)",
    )
    ap.add_argument("--vision-layers", type=int, default=None, help="fewer ViT layers than 39")
    ap.add_argument("--max-shard-size", default="5GB")
    ap.add_argument(
        "--check", action="store_true", help="compare the writer with save_pretrained, small"
    )
    ap.add_argument(
        "--transformers-ids",
        nargs="+",
        metavar="PHOTO [QUESTION]",
        help="print transformers' generated ids on the existing folder out_dir",
    )
    a = ap.parse_args()
    if a.transformers_ids:
        print(json.dumps(transformers_ids(a.out_dir, *a.transformers_ids)))
    elif a.check:
        check_against_save_pretrained(a.out_dir)
    else:
        print(build(a.out_dir, a.seed, a.lm_layers, a.vision_layers, a.max_shard_size, a.lm))
