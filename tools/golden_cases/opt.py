"""golden/opt/: OPTForCausalLM (BLIP-2's language model) from transformers 5.23.0.

Tiny configs: vocab 64, width 20 with 4 heads (head dim 5, so the q scaling 5**-0.5 is no power
of two and its place before q @ k^T shows), FFN 24, 2 layers, 32 positions; pad 1, bos 2, eos 2.
Variants: post-LN (do_layer_norm_before=False, opt-350m), word_embed_proj_dim 12 != 20
(project_in / project_out), an untied lm_head without the final LayerNorm
(_remove_final_layer_norm), exact-erf GELU, no biases and no LayerNorm weights
(enable_bias=False, layer_norm_elementwise_affine=False). Forward cases run with
attn_implementation="eager": it is the only one that returns attention probabilities, and it
is the one whose left-pad rows minblip reproduces (sdpa gives a fully masked query row a zero
context instead of eager's uniform average; docs/deviations.md). Generate cases run sdpa (the
default): pad rows never reach a generated token.

full_width: OPT-2.7b's widths (hidden 2560, 32 heads, FFN 10240, vocab 50304) with 2 layers,
weights regenerated from weights.json; greedy ids and each step's logits only.
"""

from pathlib import Path

import golden_common as gc
import numpy as np

TINY = dict(
    vocab_size=64,
    hidden_size=20,
    num_hidden_layers=2,
    ffn_dim=24,
    num_attention_heads=4,
    max_position_embeddings=32,
    pad_token_id=1,
    bos_token_id=2,
    eos_token_id=2,
)
EAGER = dict(TINY, attn_implementation="eager")
FULL = dict(
    vocab_size=50304,
    hidden_size=2560,
    num_hidden_layers=2,
    ffn_dim=10240,
    num_attention_heads=32,
    max_position_embeddings=2048,
    pad_token_id=1,
    bos_token_id=2,
    eos_token_id=50118,
)
SEED, FULL_SEED = 500, 1500
TRACE = {"output_hidden_states": True, "output_attentions": True}


def _ids(seed, B, T, V=64):
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, V, (B, T)).astype(np.int64)
    ids[:, 0] = 2  # OPT's tokenizer starts every text with </s> (bos 2)
    return ids


def _left_padded():
    ids = _ids(1, 3, 6)
    mask = np.ones_like(ids)
    mask[1, :2] = 0  # row 1: 2 pads, row 2: 3 pads, row 0: none
    mask[2, :3] = 0
    ids[mask == 0] = 1
    ids[1, 2] = ids[2, 3] = 2  # each text starts with bos after its padding
    return ids, mask


def _embeds(seed, B, T, D):
    return np.random.default_rng(seed).standard_normal((B, T, D)).astype(np.float32)


def _forward_cases():
    ids = _ids(0, 2, 7)
    pids, pmask = _left_padded()
    labels = ids.copy()
    labels[0, :3] = -100  # ignored positions, as a prompt's are in fine-tuning
    variants = {
        "post_ln": dict(do_layer_norm_before=False),
        "project_in_out": dict(word_embed_proj_dim=12),
        "untied_no_final_norm": dict(tie_word_embeddings=False, _remove_final_layer_norm=True),
        "gelu": dict(activation_function="gelu"),
        "no_bias_no_affine": dict(enable_bias=False, layer_norm_elementwise_affine=False),
    }
    out = [
        ("forward_traced", dict(config=EAGER, inputs={"input_ids": ids}, kwargs=TRACE)),
        (
            "forward_left_padded",
            dict(
                config=EAGER,
                inputs={"input_ids": pids, "attention_mask": pmask},
                kwargs=TRACE,
                notes="left padding: positions from the mask's cumsum, pads at position -1",
            ),
        ),
        (
            "forward_right_padded",
            dict(
                config=EAGER,
                inputs={"input_ids": pids[:, ::-1].copy(), "attention_mask": pmask[:, ::-1].copy()},
                kwargs={"output_hidden_states": True},
                notes="right padding: the pads' positions are cumsum(mask) * mask - 1 = -1 "
                "(table row 1), which only their own rows show",
            ),
        ),
        (
            "forward_inputs_embeds",
            dict(
                config=EAGER,
                inputs={"inputs_embeds": _embeds(2, 2, 5, 20), "attention_mask": pmask[1:, 1:]},
                kwargs={"output_hidden_states": True},
            ),
        ),
        (
            "forward_labels",
            dict(config=EAGER, inputs={"input_ids": ids, "labels": labels}),
        ),
        (
            "forward_float64",
            dict(
                config=TINY,
                inputs={"input_ids": ids},
                kwargs={"output_hidden_states": True},
                dtype="float64",
                notes="sdpa: eager's softmax runs in float32 even in a float64 run (and turns "
                "a left pad's fully masked row into nan there); sdpa stays in float64",
            ),
        ),
    ]
    for name, extra in variants.items():
        out.append(
            (name, dict(config=dict(EAGER, **extra), inputs={"input_ids": ids}, kwargs=TRACE))
        )
    return out


def _generate_cases():
    ids = _ids(3, 2, 4)
    pids, pmask = _left_padded()
    emb = _embeds(4, 2, 5, 20)
    gen = dict(method="generate", record=())
    scores = {"return_dict_in_generate": True, "output_scores": True}
    return [
        (
            "generate_greedy",
            dict(config=TINY, inputs={"input_ids": ids}, kwargs=dict(max_new_tokens=8), **gen),
        ),
        (
            "generate_greedy_scores",
            dict(
                config=TINY,
                inputs={"input_ids": ids},
                kwargs=dict(max_new_tokens=6, output_logits=True, **scores),
                **gen,
            ),
        ),
        (
            "generate_beam",
            dict(
                config=TINY,
                inputs={"input_ids": ids},
                kwargs=dict(max_new_tokens=6, num_beams=3, num_return_sequences=2, **scores),
                **gen,
            ),
        ),
        (
            "generate_left_padded",
            dict(
                config=TINY,
                inputs={"input_ids": pids, "attention_mask": pmask},
                kwargs=dict(max_new_tokens=6),
                **gen,
            ),
        ),
        (
            "generate_inputs_embeds",
            dict(
                config=TINY,
                inputs={"inputs_embeds": emb},
                kwargs=dict(max_new_tokens=6),
                notes="inputs_embeds alone: 5.23 returns only the new ids",
                **gen,
            ),
        ),
        (
            "generate_ids_and_embeds",
            dict(
                config=TINY,
                inputs={
                    "input_ids": _ids(5, 2, 5),
                    "inputs_embeds": emb,
                    "attention_mask": pmask[1:, 1:],
                },
                kwargs=dict(max_new_tokens=6, num_beams=2),
                notes="the embeds (not the ids' own rows) feed the first step; ids + new returned",
                **gen,
            ),
        ),
        (
            "generate_left_padded_beams_penalty",
            dict(
                config=TINY,
                inputs={"input_ids": pids, "attention_mask": pmask},
                kwargs=dict(max_new_tokens=6, num_beams=2, repetition_penalty=2.0),
                notes="the penalty skips each row's left padding, per beam (found by fuzzing)",
                **gen,
            ),
        ),
        (
            "generate_embeds_padded_penalty",
            dict(
                config=TINY,
                inputs={"inputs_embeds": emb, "attention_mask": pmask[1:, 1:]},
                kwargs=dict(max_new_tokens=8, repetition_penalty=3.0),
                notes="inputs_embeds alone, left-padded mask: 5.23 leaves the first <pads> new "
                "tokens unpenalised (the mask's padding counted over new ids)",
                **gen,
            ),
        ),
        (  # vocab 8, eos 3: rows reach eos at different steps
            "generate_beams_short_rows_filled_with_pad",
            dict(
                config=SMALL_VOCAB,
                inputs={"input_ids": _ids(7, 2, 3, V=8)},
                kwargs=dict(max_new_tokens=8, num_beams=3, num_return_sequences=3),
                notes="returned beams shorter than the longest are filled with pad (1), not eos: "
                "5.23 fills with `pad or eos` (BLIP and T5, pad 0, get eos)",
                **gen,
            ),
        ),
        (
            "generate_greedy_finished_rows_pad",
            dict(
                config=SMALL_VOCAB,
                inputs={"input_ids": _ids(8, 4, 3, V=8)},
                kwargs=dict(max_new_tokens=8),
                notes="rows that met eos emit pad (1) until every row is done",
                **gen,
            ),
        ),
        (
            "generate_pad_in_prompt_no_mask",
            dict(
                config=TINY,
                inputs={"input_ids": _pad_prompt(1)},
                kwargs=dict(max_new_tokens=5),
                notes="no attention_mask, pad (1) in the prompt and not an eos: 5.23 infers the "
                "mask as input_ids != pad",
                **gen,
            ),
        ),
        (
            "generate_pad_is_eos_no_mask",
            dict(
                config=dict(TINY, pad_token_id=2),
                inputs={"input_ids": _pad_prompt(2)},
                kwargs=dict(max_new_tokens=5),
                notes="no attention_mask and pad == eos (2, also bos): 5.23 infers no mask, so "
                "the leading 2s are attended",
                **gen,
            ),
        ),
    ]


def _pad_prompt(pad):
    """Two left-padded prompts (2 and 0 pads) of a tiny OPT's ids."""
    ids = _ids(9, 2, 6)
    ids[0, :2] = pad
    return ids


SMALL_VOCAB = dict(TINY, vocab_size=8, eos_token_id=3)  # 3: a token the model favours


def cases():
    return _forward_cases() + _generate_cases()


def build(root: Path):
    group = Path(root) / "opt"
    gc.build_shared_group(group, cases(), "OPTForCausalLM", seed=SEED)
    with gc.quiet():  # full width: weights.json instead of 1.2 GB of weights
        gc.write_case(
            group / "full_width_generate",
            "OPTForCausalLM",
            FULL,
            seed=FULL_SEED,
            inputs={"input_ids": _ids(6, 1, 5, V=50265)},
            kwargs=dict(max_new_tokens=3, return_dict_in_generate=True, output_logits=True),
            method="generate",
            full_size=True,
            record=(),
            notes="OPT-2.7b widths, 2 layers: greedy ids and each step's raw logits",
        )
    print(f"  golden/opt: {gc.dir_size(group) / 2**20:.2f} MB")
