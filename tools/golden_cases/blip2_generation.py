"""golden/blip2_generation/: Blip2ForConditionalGeneration and Blip2Model with a tiny OPT and a
tiny T5 language model (the blip2-opt-* and blip2-flan-t5-* layouts), tiny configs.

4 learned queries read a 28-px image; their projection is scattered into the prompt's 4 image
placeholders (id 98), as Blip2Processor lays them out: OPT [<image>*4, pad.., </s>, words]
(left padding), T5 [<image>*4, words, </s>, pad..] (right padding). Cases: forward traced
through every module; padded prompts with labels (loss); float64; generate with no prompt,
with padded prompts, with beams (num_return_sequences, scores); Blip2Model's forward and
feature helpers; get_image_features. OPT's padded forward cases run eager attention: under
sdpa a left pad's own row (all keys masked) comes out as zeros, under eager as the mean of the
values, which minblip computes (golden/opt's docstring); those rows never reach a real token.
"""

from functools import partial
from pathlib import Path

import golden_common as gc
import numpy as np
import torch

from golden_cases.blip2_vision import TINY as VISION  # the tiny EVA ViT of golden/blip2_vision
from minblip.testing import random_pixels as pixels

Q, IMAGE_TOKEN = 4, 98
QFORMER = dict(
    hidden_size=36,
    intermediate_size=50,
    num_hidden_layers=2,
    num_attention_heads=3,
    cross_attention_frequency=1,
)
OPT = dict(
    model_type="opt",
    vocab_size=99,
    hidden_size=32,
    ffn_dim=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=64,
    bos_token_id=2,
    pad_token_id=1,
    eos_token_id=50,
)
T5 = dict(
    model_type="t5",
    vocab_size=99,
    d_model=32,
    d_kv=8,
    d_ff=48,
    num_layers=2,
    num_decoder_layers=2,
    num_heads=4,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=20,
    feed_forward_proj="gated-gelu",
    dense_act_fn="gelu",  # as blip2-flan-t5-xl's text_config says explicitly
    tie_word_embeddings=False,
    decoder_start_token_id=0,
    pad_token_id=0,
    eos_token_id=1,
    bos_token_id=1,
)


def config(text, eager=False):
    text = dict(text, attn_implementation="eager") if eager else text
    cfg = dict(
        vision_config=VISION,
        qformer_config=QFORMER,
        text_config=text,
        num_query_tokens=Q,
        image_token_index=IMAGE_TOKEN,
    )
    return dict(cfg, attn_implementation="eager") if eager else cfg


def opt_prompts(seed, lengths):
    """[<image>*Q, pad.., </s>, words] left-padded (B, Q + 1 + max) and its mask."""
    rng = np.random.default_rng(seed)
    T = 1 + max(lengths)
    ids = np.full((len(lengths), Q + T), OPT["pad_token_id"], np.int64)
    mask = np.zeros_like(ids)
    ids[:, :Q], mask[:, :Q] = IMAGE_TOKEN, 1
    for b, n in enumerate(lengths):
        ids[b, Q + T - n - 1 :] = [OPT["bos_token_id"], *rng.integers(4, 90, n)]
        mask[b, Q + T - n - 1 :] = 1
    return ids, mask


def t5_prompts(seed, lengths):
    """[<image>*Q, words, </s>, pad..] right-padded (B, Q + max + 1) and its mask."""
    rng = np.random.default_rng(seed)
    T = max(lengths) + 1
    ids = np.full((len(lengths), Q + T), T5["pad_token_id"], np.int64)
    mask = np.zeros_like(ids)
    ids[:, :Q], mask[:, :Q] = IMAGE_TOKEN, 1
    for b, n in enumerate(lengths):
        ids[b, Q : Q + n + 1] = [*rng.integers(4, 90, n), T5["eos_token_id"]]
        mask[b, Q : Q + n + 1] = 1
    return ids, mask


# generate's own stop ids: common enough in the tiny models' output that rows stop early
EOS_OVERRIDE = list(range(20, 45))


def lm_cases(kind):
    text, prompts = (OPT, opt_prompts) if kind == "opt" else (T5, t5_prompts)
    px2 = pixels(601, 2, 28, 28)
    full, full_mask = prompts(602, [5, 5])
    padded, padded_mask = prompts(603, [6, 3])
    if kind == "opt":
        # labels span the whole prompt, -100 on placeholders and pads. Shorter labels (the text
        # alone) crash 5.23 on CPU: forward cuts logits[:, -len(labels):], a non-contiguous
        # view that ForCausalLMLoss's .view(-1, V) refuses (docs/deviations.md)
        words = (padded_mask == 1) & (padded != IMAGE_TOKEN)
        labels = np.where(words, padded, -100)
        lm_extra = {}
    else:  # T5: the labels are the decoder's targets
        labels = np.random.default_rng(604).integers(4, 90, (2, 4))
        lm_extra = {"decoder_input_ids": np.random.default_rng(605).integers(4, 90, (2, 3))}
    padded_inputs = {"pixel_values": px2, "input_ids": padded, "attention_mask": padded_mask}
    prompt = {"pixel_values": px2, "input_ids": full, **lm_extra}
    image = {"pixel_values": px2}
    text_alone = {"input_ids": padded[:, Q:], "attention_mask": padded_mask[:, Q:]}
    eager_opt = config(text, eager=kind == "opt")
    # every case but the first records outputs only (record=())
    lm = partial(gc.case, cls="Blip2ForConditionalGeneration", config=config(text), record=())
    model = partial(gc.case, cls="Blip2Model", config=config(text), record=())
    generate = partial(lm, method="generate")
    dict_out = {"return_dict_in_generate": True}
    return [
        gc.case(
            f"{kind}_forward", prompt, cls="Blip2ForConditionalGeneration", config=config(text)
        ),
        lm(f"{kind}_forward_padded_labels", {**padded_inputs, "labels": labels}, config=eager_opt),
        lm(f"{kind}_float64", prompt, dtype="float64"),
        generate(
            f"{kind}_generate_no_prompt",
            image,
            kwargs={"max_new_tokens": 6, **dict_out, "output_logits": True},
        ),
        generate(f"{kind}_generate_padded_prompts", padded_inputs, kwargs={"max_new_tokens": 5}),
        generate(
            f"{kind}_generate_eos_pad",
            padded_inputs,
            kwargs={"max_new_tokens": 8, "eos_token_id": EOS_OVERRIDE, "pad_token_id": 7},
            notes="eos_token_id / pad_token_id given to generate override the config's",
        ),
        generate(
            f"{kind}_generate_attentions_hidden_states",
            padded_inputs,
            config=config(text, eager=True),
            kwargs={
                "max_new_tokens": 3,
                **dict_out,
                "output_attentions": True,
                "output_hidden_states": True,
            },
            notes="eager (sdpa returns no probabilities): the language model's generate "
            "fields (T5: encoder_* once, decoder_* and cross_attentions per step)",
        ),
        generate(
            f"{kind}_generate_beams",
            padded_inputs,
            kwargs={
                "num_beams": 3,
                "num_return_sequences": 2,
                "max_new_tokens": 5,
                **dict_out,
                "output_scores": True,
            },
        ),
        lm(f"{kind}_image_features", image, method="get_image_features"),
        model(f"model_{kind}_forward", prompt),
        model(
            f"model_{kind}_text_features",
            text_alone,
            config=eager_opt,
            method="get_text_features",
            kwargs={"output_hidden_states": True},
        ),
        model(f"model_{kind}_qformer_features", image, method="get_qformer_features"),
    ]


KINDS = ("opt", "t5")
EMBEDS_OF = "embeds_of_input_ids"  # an input that becomes inputs_embeds once the model exists


def embeds_cases():
    """inputs_embeds alone (generate: 5.23's forward requires input_ids): 5.23 finds the
    placeholders as rows equal to the image token's
    embedding. They sit mid-prompt here ([bos, 2 words, <image>*Q, 2 words]), so a reading
    that assumed them first would take the wrong rows."""
    rng = np.random.default_rng(606)
    ids = np.concatenate(
        [
            np.full((2, 1), OPT["bos_token_id"]),
            rng.integers(4, 90, (2, 2)),
            np.full((2, Q), IMAGE_TOKEN),
            rng.integers(4, 90, (2, 2)),
        ],
        axis=1,
    ).astype(np.int64)
    return [
        gc.case(
            "opt_generate_embeds_placeholders_mid",
            {
                "pixel_values": pixels(607, 2, 28, 28),
                EMBEDS_OF: ids,
                "attention_mask": np.ones_like(ids),  # 5.23 needs it without input_ids
            },
            cls="Blip2ForConditionalGeneration",
            config=config(OPT),
            method="generate",
            kwargs={"max_new_tokens": 4, "return_dict_in_generate": True, "output_logits": True},
            record=(),
            notes=embeds_cases.__doc__.split("\n\n")[0],
        )
    ]


def build(root: Path):
    group = [case for kind in KINDS for case in lm_cases(kind)] + embeds_cases()
    real_run = gc.run

    def run(model, method, inputs, kwargs, dtype, only=None):
        if EMBEDS_OF in inputs:  # the model's own embedding rows, stored as inputs_embeds
            ids = torch.from_numpy(inputs.pop(EMBEDS_OF))
            with torch.no_grad():
                inputs["inputs_embeds"] = model.get_input_embeddings()(ids).float().numpy()
        return real_run(model, method, inputs, kwargs, dtype, only)

    gc.run = run
    try:
        gc.build_shared_group(Path(root) / "blip2_generation", group, None, seed=600)
    finally:
        gc.run = real_run
