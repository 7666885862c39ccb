"""golden/generation/: generate's options and outputs beyond ids, from transformers 5.23.0.

return_dict_in_generate with output_scores / output_logits (per-step processed scores and raw
logits), beam sequences_scores and beam_indices, num_return_sequences, and sampling made
deterministic (top_k=1, or a top_p so small that only the best token survives), which pins the
whole sampling path -- warpers, renormalisation, expansion by num_return_sequences -- without
depending on torch's random numbers. Caption and VQA models share one tiny model each.
"""

from pathlib import Path

import golden_common as gc

from golden_cases.blip_tasks import VQA_TINY, texts
from golden_cases.caption import TINY
from minblip.testing import random_pixels as pixels

DICT = {"return_dict_in_generate": True, "output_scores": True}


def cases():
    cap, vqa = "BlipForConditionalGeneration", "BlipForQuestionAnswering"
    px2 = pixels(41, 2, 32, 32)
    q_ids, q_mask = texts(42, [6, 4])
    prompt, _ = texts(43, [4, 4])
    return [
        (
            "greedy_scores_logits",
            cap,
            TINY,
            {"pixel_values": px2},
            {**DICT, "output_logits": True, "repetition_penalty": 1.3, "max_new_tokens": 6},
        ),
        (
            "greedy_prompt_scores",
            cap,
            TINY,
            {"pixel_values": px2, "input_ids": prompt},
            {**DICT, "no_repeat_ngram_size": 2, "max_new_tokens": 6},
        ),
        (
            "beam3_scores",
            cap,
            TINY,
            {"pixel_values": px2},
            {**DICT, "num_beams": 3, "length_penalty": 0.8, "max_new_tokens": 6},
        ),
        (
            "beam4_return2_scores",
            cap,
            TINY,
            {"pixel_values": px2},
            {
                **DICT,
                "output_logits": True,
                "num_beams": 4,
                "num_return_sequences": 2,
                "max_new_tokens": 5,
            },
        ),
        (
            "sample_top_k1",
            cap,
            TINY,
            {"pixel_values": px2},
            {**DICT, "do_sample": True, "top_k": 1, "temperature": 0.7, "max_new_tokens": 6},
        ),
        (
            "sample_top_k1_return3",
            cap,
            TINY,
            {"pixel_values": px2},
            {"do_sample": True, "top_k": 1, "num_return_sequences": 3, "max_new_tokens": 5},
        ),
        (
            "sample_tiny_top_p",
            cap,
            TINY,
            {"pixel_values": px2},
            {
                **DICT,
                "do_sample": True,
                "top_k": 0,
                "top_p": 1e-6,
                "repetition_penalty": 1.2,
                "max_new_tokens": 6,
            },
        ),
        (
            "greedy_more_processors",
            cap,
            TINY,
            {"pixel_values": px2},
            {
                **DICT,
                "sequence_bias": [[[5], 2.0], [[7, 8], -3.0]],
                "bad_words_ids": [[9], [3, 4]],
                "suppress_tokens": [10, 11],
                "begin_suppress_tokens": [12],
                "exponential_decay_length_penalty": [2, 1.5],
                "remove_invalid_values": True,
                "max_new_tokens": 7,
            },
        ),
        (
            "beam2_forced_eos_renormalize",
            cap,
            TINY,
            {"pixel_values": px2},
            {
                **DICT,
                "num_beams": 2,
                "forced_eos_token_id": 3,
                "renormalize_logits": True,
                "max_new_tokens": 5,
            },
        ),
        (
            "sample_cutoff_warpers",
            cap,
            TINY,
            {"pixel_values": px2},
            {
                **DICT,
                "do_sample": True,
                "top_k": 0,
                "min_p": 0.05,
                "typical_p": 0.95,
                "eta_cutoff": 0.01,
                "epsilon_cutoff": 0.9,  # only the best token survives: deterministic draws
                "max_new_tokens": 6,
            },
        ),
        (
            "greedy_max_time_zero",  # MaxTimeCriteria: every row stops after its first token
            cap,
            TINY,
            {"pixel_values": px2},
            {"max_time": 0.0, "max_new_tokens": 5},
        ),
        (
            "beam2_max_time_zero",
            cap,
            TINY,
            {"pixel_values": px2},
            {**DICT, "num_beams": 2, "max_time": 0.0, "max_new_tokens": 5},
        ),
        (
            "greedy_attentions_hidden_states",
            cap,
            TINY,
            {"pixel_values": px2, "input_ids": prompt},
            {**DICT, "output_attentions": True, "output_hidden_states": True, "max_new_tokens": 3},
        ),
        (
            "vqa_beam2_attentions_hidden_states",
            vqa,
            VQA_TINY,
            {"pixel_values": px2, "input_ids": q_ids, "attention_mask": q_mask},
            {
                **DICT,
                "num_beams": 2,
                "output_attentions": True,
                "output_hidden_states": True,
                "max_new_tokens": 3,
            },
        ),
        (
            "vqa_beam2_scores",
            vqa,
            VQA_TINY,
            {"pixel_values": px2, "input_ids": q_ids, "attention_mask": q_mask},
            {**DICT, "num_beams": 2, "max_new_tokens": 5},
        ),
        (
            "vqa_greedy_penalties",
            vqa,
            VQA_TINY,
            {"pixel_values": px2, "input_ids": q_ids, "attention_mask": q_mask},
            {
                "repetition_penalty": 1.5,
                "no_repeat_ngram_size": 2,
                "min_new_tokens": 3,
                "max_new_tokens": 8,
            },
        ),
        (
            "beam2_early_stopping_batch3",  # an item full before the others: blocked from then
            cap,
            TINY,
            {"pixel_values": pixels(40, 3, 32, 32)},
            {
                **DICT,
                "num_beams": 2,
                "early_stopping": True,
                "num_return_sequences": 2,
                "max_new_tokens": 8,
            },
        ),
    ]


SEEDS = {"BlipForConditionalGeneration": 500, "BlipForQuestionAnswering": 501}


def build(root: Path):
    group = [
        (name, dict(cls=cls, config=config, inputs=inputs, kwargs=kwargs, method="generate"))
        for name, cls, config, inputs, kwargs in cases()
    ]
    gc.build_group(Path(root) / "generation", group, SEEDS)
