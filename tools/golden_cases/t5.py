"""golden/t5/: T5ForConditionalGeneration and T5EncoderModel (BLIP-2's Flan-T5) from transformers.

Tiny configs: d_model 20 (two 8-lane vectors + a 4-element tail, so the float32 variance sum of
T5LayerNorm runs every branch of torch's order), 4 heads of d_kv 6 (inner width 24 != d_model:
every attention projection is rectangular), 8 relative buckets with max_distance 12 (encoder:
4 per direction, exact below 2; decoder: exact below 4), and sequences of 16 encoder / 14 decoder
tokens, so both the exact and the log-spaced bucket ranges and the clamp at max_distance occur.

FLAN is BLIP-2's layout (gated-gelu with an explicit dense_act_fn "gelu", tie_word_embeddings
false, an untied lm_head; one forward case with 3 decoder blocks against 2 encoder blocks), its
model folder saved with
the hub-style config (tie_word_embeddings false, no scale_decoder_outputs key), so the loader
derives the no-rescale rule as 5.23 does. The others: gated-gelu with the derived gelu_new and a
tied head (rescaled by d_model**-0.5), non-gated relu. full_width: Flan-T5-XL widths with 2 + 2
blocks, weights regenerated from the seed, greedy ids + logits only. *_attentions_hidden_states:
generate's encoder / decoder / cross attentions and hidden states (greedy and beams, eager).
"""

import json
import shutil
from functools import partial
from pathlib import Path

import golden_common as gc
import numpy as np
import torch

BASE = dict(
    vocab_size=64,
    d_model=20,
    d_kv=6,
    d_ff=36,
    num_layers=2,
    num_heads=4,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=12,
    decoder_start_token_id=0,
    pad_token_id=0,
    eos_token_id=1,
)
FLAN = dict(
    BASE,
    num_decoder_layers=2,
    feed_forward_proj="gated-gelu",
    dense_act_fn="gelu",
    tie_word_embeddings=False,
)
GELU_NEW_TIED = dict(BASE, feed_forward_proj="gated-gelu")
RELU = dict(BASE, feed_forward_proj="relu", num_heads=2, d_kv=10)
# blip2-flan-t5-xl's text_config widths (language_models.md §2.1) with 2 + 2 blocks
FULL = dict(
    vocab_size=32128,
    d_model=2048,
    d_kv=64,
    d_ff=5120,
    num_layers=2,
    num_decoder_layers=2,
    num_heads=32,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",
    dense_act_fn="gelu",
    tie_word_embeddings=False,
    decoder_start_token_id=0,
    pad_token_id=0,
    eos_token_id=1,
)


def untie(model):
    """Give lm_head its own tensor: 5.23's T5 always ties it to `shared` when built."""
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())


def hub_config(config):
    """The config.json a hub Flan-T5 checkpoint has: tie_word_embeddings false, no
    scale_decoder_outputs (5.23 derives it), plus the keys save_pretrained would write."""
    saved = dict(config, model_type="t5", architectures=["T5ForConditionalGeneration"])
    saved.update(is_gated_act=True, num_decoder_layers=config["num_decoder_layers"])
    return saved


def ids(seed, B, T, low=2, high=64, pad_from=None):
    """Token ids in [low, high); row b padded with 0 from pad_from[b] on; and the mask."""
    rng = np.random.default_rng(seed)
    x = rng.integers(low, high, size=(B, T)).astype(np.int64)
    mask = np.ones((B, T), np.int64)
    for b, start in enumerate(pad_from or []):
        if start is not None:
            x[b, start:], mask[b, start:] = 0, 0
    return x, mask


def cases():
    enc, enc_mask = ids(1, 2, 16, pad_from=[None, 11])
    lab, _ = ids(2, 2, 14)
    lab[1, 10:] = -100  # ignored label positions
    dec, dec_mask = ids(3, 2, 14, pad_from=[None, 12])
    emb = np.random.default_rng(4).standard_normal((2, 9, 20)).astype(np.float32)
    flan = partial(gc.case, config=FLAN, prepare=untie, saved_config=hub_config(FLAN))
    labelled = {"input_ids": enc, "attention_mask": enc_mask, "labels": lab}
    masked = {"input_ids": enc, "attention_mask": enc_mask}
    scored = {"return_dict_in_generate": True, "output_scores": True}
    # 3 decoder blocks against 2 encoder blocks: forward only, as 5.23's generate sizes its
    # DynamicCache by num_layers and fails with an IndexError at decoder block 2
    eager = dict(FLAN, num_decoder_layers=3, attn_implementation="eager")
    gen = "generate"
    return [
        flan(
            "flan_forward_all_outputs",
            labelled,
            config=eager,
            saved_config=hub_config(dict(FLAN, num_decoder_layers=3)),
            kwargs={"output_attentions": True, "output_hidden_states": True},
            notes="eager attention: 5.23's default SDPA returns empty attention tuples",
        ),
        flan("flan_forward_sdpa", labelled),
        gc.case(
            "gelu_new_tied_forward",
            {"input_ids": enc, "decoder_input_ids": dec},
            config=GELU_NEW_TIED,
            kwargs={"output_hidden_states": True},
            notes="dense_act_fn derived as gelu_new; tied head after the d_model**-0.5 rescale",
        ),
        gc.case(
            "relu_forward_decoder_mask",
            {
                "input_ids": enc,
                "attention_mask": enc_mask,
                "decoder_input_ids": dec,
                "decoder_attention_mask": dec_mask,
            },
            config=RELU,
        ),
        gc.case(
            "encoder_model",
            masked,
            cls="T5EncoderModel",
            config=dict(FLAN, attn_implementation="eager"),
            prepare=None,
            kwargs={"output_hidden_states": True, "output_attentions": True},
        ),
        flan("flan_float64", labelled, dtype="float64", kwargs={"output_hidden_states": True}),
        flan(
            "flan_greedy",
            {"input_ids": ids(6, 1, 12)[0]},
            method=gen,
            # repetition_penalty: random weights repeat one token otherwise
            kwargs={"max_new_tokens": 8, "repetition_penalty": 1.5, **scored},
        ),
        flan(
            "flan_beams",
            masked,
            method=gen,
            record=(),
            kwargs={"num_beams": 3, "num_return_sequences": 2, "max_new_tokens": 7, **scored},
        ),
        flan(
            "flan_generate_embeds",
            {"inputs_embeds": emb},
            method=gen,
            record=(),
            kwargs={"max_new_tokens": 6},
        ),
        flan(
            "flan_generate_padded",
            masked,
            method=gen,
            record=(),
            kwargs={"max_length": 9, **scored},
        ),
        gc.case(
            "tied_greedy_pad_without_mask",
            {"input_ids": enc},
            config=GELU_NEW_TIED,
            method=gen,
            record=(),
            kwargs={"min_new_tokens": 3, "max_new_tokens": 5},
            notes="pads without attention_mask: 5.23 infers no mask for encoder-decoders",
        ),
        gc.case(
            "full_width_greedy",
            {"input_ids": ids(5, 1, 7, high=32000)[0]},
            config=FULL,
            prepare=untie,
            full_size=True,
            record=(),
            method=gen,
            kwargs={
                "max_new_tokens": 4,
                "return_dict_in_generate": True,
                "output_logits": True,
            },
            notes="Flan-T5-XL widths, 2 + 2 blocks, untied head: greedy ids and raw logits",
        ),
    ] + generate_outputs_cases(flan, enc, enc_mask)


def generate_outputs_cases(flan, enc, enc_mask):
    """generate with output_attentions / output_hidden_states (eager: SDPA gives no
    probabilities): greedy on a padded batch, and beams, whose decoder fields hold every beam row
    while the encoder's stay one per input."""
    eager = partial(flan, config=dict(FLAN, attn_implementation="eager"), method="generate")
    asked = {
        "return_dict_in_generate": True,
        "output_attentions": True,
        "output_hidden_states": True,
    }
    return [
        eager(
            "flan_greedy_attentions_hidden_states",
            {"input_ids": enc, "attention_mask": enc_mask},
            record=(),
            kwargs={"max_new_tokens": 3, "output_scores": True, **asked},
        ),
        eager(
            "flan_beams_attentions_hidden_states",
            {"input_ids": enc[:1], "attention_mask": enc_mask[:1]},
            record=(),
            kwargs={"num_beams": 2, "max_new_tokens": 3, **asked},
        ),
    ]


SEED = 500


def write_group(out, cases, class_name, seed):
    """The cases into out, wiped first, as this group was first written: one seed for every case
    (the full-size one too), every module recorded unless a case says record=(), and cases of one
    class and config sharing the first one's model folder. (golden_common.build_group has since
    changed the first two for new groups; this keeps golden/t5 byte-identical on regeneration.)"""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    first = {}  # (class, config) -> the case whose model folder later ones share
    with gc.quiet():
        for name, spec in cases:
            spec = dict(spec)
            cls, config = spec.pop("cls", class_name), spec.pop("config")
            print(" ", name, flush=True)
            gc.write_case(out / name, cls, config, seed=seed, **spec)
            key = (cls, json.dumps(config, sort_keys=True))
            if key in first:
                meta = json.loads((out / name / "meta.json").read_text())
                shutil.rmtree(out / name / "model")
                meta["model_dir"] = f"../{first[key]}/model"
                (out / name / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
            first.setdefault(key, name)


def build(root: Path):
    out = Path(root) / "t5"
    write_group(out, cases(), "T5ForConditionalGeneration", SEED)
    for case in out.iterdir():  # the full-size case: only the small outputs are kept
        meta = json.loads((case / "meta.json").read_text())
        if (case / "weights.json").exists():
            assert meta["order"] == [], case
    print(f"  golden/t5: {gc.dir_size(out) / 2**20:.2f} MB")
