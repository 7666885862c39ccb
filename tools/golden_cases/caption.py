"""golden/caption/: BlipForConditionalGeneration (forward with labels, generate) from
transformers 5.23.0.

Tiny configs: text vocab 99 with the tiny [DEC] = 30 (bos), [SEP] = 3 (what generate stops on),
[PAD] = 0, texts starting with 1 (the tiny [CLS]); 2 layers, 3 heads (head dim 12), text width 36
against vision width 24 so every cross-attention key/value projection is rectangular. SMALL_VOCAB
(13 tokens) makes [SEP] likely enough that rows finish early, so pad filling and finished beams
are exercised. Every greedy case's meta.json carries "margins": per step and row, the gap between
the best and the second-best processed score, so a near-tie (a flaky golden token) is visible.
"""

import shutil
from functools import partial
from pathlib import Path

import fullsize
import golden_common as gc
import numpy as np
import torch
import transformers

from golden_cases.vision import BASE as VISION_BASE
from minblip.testing import materialize
from minblip.testing import random_pixels as pixels

# the sizes of the tiny BERT-like towers: this text decoder, blip2_tasks' Q-Former
TINY_BERT = dict(
    vocab_size=99,
    hidden_size=36,
    intermediate_size=50,
    num_hidden_layers=2,
    num_attention_heads=3,
    max_position_embeddings=40,
)
TEXT_TINY = dict(
    TINY_BERT,
    bos_token_id=30,
    pad_token_id=0,
    sep_token_id=3,
    eos_token_id=2,
)
VISION_TINY = dict(
    hidden_size=24,
    intermediate_size=40,
    num_hidden_layers=2,
    num_attention_heads=3,
    image_size=32,
    patch_size=8,
)
TINY = dict(text_config=TEXT_TINY, vision_config=VISION_TINY)
SMALL_VOCAB = dict(TINY, text_config=dict(TEXT_TINY, vocab_size=13, bos_token_id=10))
SMOOTH = dict(TINY, text_config=dict(TEXT_TINY, label_smoothing=0.1, layer_norm_eps=1e-3))
# a 12-row position table: 20 new tokens after a 4-token prompt would need 24 positions
SHORT_POS = dict(TINY, text_config=dict(TEXT_TINY, max_position_embeddings=12))
# hub text config of blip-image-captioning-base (checkpoints.md §2.1), as fullsize.py writes it
TEXT_BASE = fullsize.TEXT
BASE = dict(text_config=TEXT_BASE, vision_config=VISION_BASE)
FULL_PIXEL_SEED = 31
CLS = "BlipForConditionalGeneration"


def texts(seed, lengths, vocab=99, cls=1, sep=3, low=4):
    """Right-padded ids (B, max(lengths)) = [cls, words..., sep, 0...] and their attention mask."""
    rng = np.random.default_rng(seed)
    T = max(lengths)
    ids = np.zeros((len(lengths), T), np.int64)
    mask = np.zeros((len(lengths), T), np.int64)
    for b, n in enumerate(lengths):
        ids[b, :n] = [cls, *rng.integers(low, vocab, n - 2), sep]
        mask[b, :n] = 1
    return ids, mask


def labels_of(ids, mask):
    return np.where(mask == 1, ids, -100)


def cases():
    px1, px2, px3 = pixels(41, 1, 32, 32), pixels(42, 2, 32, 32), pixels(43, 3, 32, 32)
    ids2, mask2 = texts(51, [7, 5])
    prompt1, pmask1 = texts(52, [5])
    prompt3, pmask3 = texts(53, [5, 5, 5])
    sprompt3, spmask3 = texts(54, [4, 4, 4], vocab=13, low=4)
    gen = "generate"
    labelled = {"pixel_values": px2, "input_ids": ids2, "attention_mask": mask2}
    labelled["labels"] = labels_of(ids2, mask2)
    prompted1 = {"pixel_values": px1, "input_ids": prompt1, "attention_mask": pmask1}
    prompted3 = {"pixel_values": px3, "input_ids": prompt3, "attention_mask": pmask3}
    tiny = partial(gc.case, config=TINY, method=gen)  # generate with the tiny model
    small = partial(gc.case, config=SMALL_VOCAB, method=gen)  # ... with a 13-token vocabulary
    out = [
        # --- forward
        gc.case(
            "forward_labels",
            labelled,
            config=TINY,
            notes="right-padded batch of 2; labels -100 on padding; loss = mean of kept tokens",
        ),
        gc.case(
            "forward_no_labels",
            {"pixel_values": px1, "input_ids": prompt1},
            config=TINY,
            kwargs={"output_hidden_states": True, "output_attentions": True},
            notes="no mask, no labels; hidden_states/attentions are the VISION tower's",
        ),
        gc.case(
            "forward_smoothing",
            labelled,
            config=SMOOTH,
            notes="text_config.label_smoothing 0.1 (read by the loss), layer_norm_eps 1e-3",
        ),
        gc.case(
            "forward_float64",
            labelled,
            config=TINY,
            dtype="float64",
        ),
        # --- greedy
        tiny(
            "greedy_traced",
            prompted1,
            kwargs={"max_new_tokens": 3},
            record=None,
            notes="every module of every decode step recorded: step 0 runs the 4-token prompt "
            "(the head only on its last position, logits_to_keep=1); #1, #2 one token each",
        ),
        tiny(
            "greedy",
            {"pixel_values": px1},
            notes="no prompt: [DEC] then 20 new tokens at most (5.x default)",
        ),
        tiny("greedy_prompt", prompted1, notes="[CLS] w w w [SEP] -> decoder prompt [DEC] w w w"),
        tiny("greedy_batch3", {"pixel_values": px3}),
        tiny("greedy_batch3_prompt", prompted3),
        small(
            "greedy_small_vocab",
            {"pixel_values": px3},
            notes="13-token vocab: rows stop on [SEP] at different steps; finished rows get 0",
        ),
        small(
            "greedy_min_new_tokens",
            {"pixel_values": px3},
            kwargs={"min_new_tokens": 6, "max_new_tokens": 9},
        ),
        small(
            "greedy_min_max_length",
            {"pixel_values": px3, "input_ids": sprompt3, "attention_mask": spmask3},
            kwargs={"min_length": 7, "max_length": 11},
            notes="min_length / max_length count the prompt ([DEC] + 2 words)",
        ),
        tiny(
            "greedy_repetition",
            {"pixel_values": px3},
            kwargs={"repetition_penalty": 1.5, "no_repeat_ngram_size": 2, "max_new_tokens": 12},
        ),
        gc.case(
            "greedy_position_cap",
            prompted1,
            config=SHORT_POS,
            method=gen,
            notes="default length 4 + 20 capped at max_position_embeddings = 12",
        ),
        tiny(
            "greedy_float64", {"pixel_values": px3}, dtype="float64", kwargs={"max_new_tokens": 8}
        ),
        # --- beam search
        small("beam3", {"pixel_values": px2}, kwargs={"num_beams": 3, "max_new_tokens": 10}),
        tiny("beam3_prompt", prompted3, kwargs={"num_beams": 3, "max_new_tokens": 6}),
        small(
            "beam3_lp_early",
            {"pixel_values": px3},
            kwargs={
                "num_beams": 3,
                "length_penalty": 0.5,
                "early_stopping": True,
                "max_new_tokens": 12,
            },
        ),
        small(
            "beam3_lp_never",
            {"pixel_values": px3},
            kwargs={
                "num_beams": 3,
                "length_penalty": 2.0,
                "early_stopping": "never",
                "max_new_tokens": 12,
            },
        ),
        small(
            "beam4_return2",
            {"pixel_values": px2},
            kwargs={
                "num_beams": 4,
                "num_return_sequences": 2,
                "max_new_tokens": 10,
                "repetition_penalty": 1.3,
            },
            notes="rows item-major; short hypotheses filled with [SEP] (pad 0 is falsy)",
        ),
        small(
            "beam3_min_new",
            {"pixel_values": px2},
            kwargs={
                "num_beams": 3,
                "min_new_tokens": 4,
                "max_new_tokens": 8,
                "no_repeat_ngram_size": 2,
            },
        ),
    ]
    # --- right-padded prompts of unequal length: HF keeps [SEP] inside the shorter rows and drops
    # a [PAD] instead; the mask keeps their padding out of self-attention and the positions of the
    # new tokens restart from cumsum(mask) (generation.md §3.1). Pinned, not endorsed.
    ragged, rmask = texts(57, [6, 4, 5])
    ragged3 = {"pixel_values": px3, "input_ids": ragged, "attention_mask": rmask}
    out += [
        tiny(
            "greedy_ragged_prompt", ragged3, kwargs={"max_new_tokens": 6, "repetition_penalty": 1.2}
        ),
        tiny(
            "greedy_ragged_no_mask",
            {"pixel_values": px3, "input_ids": ragged},
            kwargs={"max_new_tokens": 4},
            notes="no attention_mask: generate infers it as input_ids != pad (0)",
        ),
        tiny("beam2_ragged_prompt", ragged3, kwargs={"max_new_tokens": 5, "num_beams": 2}),
    ]
    out += [
        tiny(
            "greedy_interpolate",
            {"pixel_values": pixels(44, 2, 48, 40), "input_ids": prompt1[[0, 0]]},
            kwargs={"interpolate_pos_encoding": True, "max_new_tokens": 5},
            notes="48x40 images, position grid resized; prompt without attention_mask",
        ),
    ]
    # --- the text tower alone (blip_text_model checkpoints): BlipTextModel, BlipTextLMHeadModel
    text_cfg = dict(TEXT_TINY, encoder_hidden_size=24)
    enc = np.random.default_rng(56).standard_normal((2, 17, 24)).astype(np.float32)
    enc_mask = np.ones((2, 17), np.int64)
    enc_mask[1, 11:] = 0
    start = np.full((2, 1), 30, np.int64)
    encoded = {"encoder_hidden_states": enc, "encoder_attention_mask": enc_mask}  # 11 / 17 seen
    text_lm = partial(
        gc.case, cls="BlipTextLMHeadModel", config=dict(text_cfg, label_smoothing=0.05)
    )
    out += [
        gc.case(
            "text_model_encoder",
            {"input_ids": ids2, "attention_mask": mask2},
            cls="BlipTextModel",
            config=text_cfg,
            kwargs={"output_hidden_states": True, "output_attentions": True},
            notes="encoder mode (bidirectional, key padding only), no image; pooler",
        ),
        gc.case(
            "text_model_decoder",
            {"input_ids": ids2, "attention_mask": mask2, **encoded},
            cls="BlipTextModel",
            config=text_cfg,
            kwargs={"is_decoder": True, "output_attentions": True},
            notes="causal + padding mask; cross-attention with its own mask (row 1 sees 11 "
            "of 17 memory tokens)",
        ),
        text_lm(
            "text_lm_labels",
            {
                "input_ids": ids2,
                "attention_mask": mask2,
                "encoder_hidden_states": enc,
                "labels": labels_of(ids2, mask2),
            },
            kwargs={"reduction": "none", "output_hidden_states": True},
            notes="per-sample summed loss (reduction none, as BLIP VQA uses)",
        ),
        text_lm(
            "text_lm_generate",
            {"input_ids": start, **encoded},
            method=gen,
            kwargs={"max_new_tokens": 7, "eos_token_id": 3},
        ),
        text_lm(
            "text_lm_beams",
            {"input_ids": start, **encoded},
            method=gen,
            kwargs={"max_new_tokens": 7, "num_beams": 2, "eos_token_id": 3},
        ),
    ]
    out += [
        (
            "text_lm_two_eos_" + mode,
            {
                "cls": "BlipTextLMHeadModel",
                "config": dict(text_cfg, vocab_size=13, bos_token_id=10, label_smoothing=0.05),
                "method": gen,
                "inputs": {
                    "input_ids": np.full((2, 1), 10, np.int64),
                    "encoder_hidden_states": enc,
                },
                "kwargs": {"max_new_tokens": 9, "eos_token_id": [9, 5], **extra},
                "notes": "two eos ids, either stops a row; beams keep 3K candidates; fill eos[0]",
            },
        )
        for mode, extra in (("greedy", {}), ("beams", {"num_beams": 2, "length_penalty": 0.8}))
    ]
    # --- one image for several texts, one text for several images: torch broadcasts the batches
    # of the cross-attention as transformers passes them; outputs only (size budget)
    ids3, mask3 = texts(57, [6, 4, 5])
    out += [
        gc.case(
            "forward_one_image_three_texts",
            {
                "pixel_values": px1,
                "input_ids": ids3,
                "attention_mask": mask3,
                "labels": labels_of(ids3, mask3),
            },
            config=TINY,
            record=(),
            notes="logits (3, T, V) against one image; loss over the 3 texts",
        ),
        gc.case(
            "forward_two_images_one_text",
            {"pixel_values": px2, "input_ids": ids2[:1], "attention_mask": mask2[:1]},
            config=TINY,
            record=(),
        ),
        tiny(
            "generate_one_image_three_prompts",
            {"pixel_values": px1, "input_ids": prompt3, "attention_mask": pmask3},
            kwargs={"max_new_tokens": 6},
            notes="greedy only: beams or returned copies would copy prompts and image apart",
        ),
        gc.case(
            "text_model_two_states_one_text",
            {
                "input_ids": ids2[:1],
                "attention_mask": mask2[:1],
                "encoder_hidden_states": enc,
            },
            cls="BlipTextModel",
            config=text_cfg,
            record=(),
            kwargs={"is_decoder": True},
        ),
        gc.case(
            "text_lm_generate_one_state_three_prompts",
            {
                "input_ids": np.full((3, 1), 30, np.int64),
                "encoder_hidden_states": enc[:1],
            },
            cls="BlipTextLMHeadModel",
            config=dict(text_cfg, label_smoothing=0.05),
            method=gen,
            kwargs={"max_new_tokens": 7, "eos_token_id": 3},
        ),
    ]
    # --- full size: weights regenerated from the seed; no modules recorded (size budget)
    bid, bmask = texts(55, [8], vocab=30522, cls=101, sep=102, low=1000)
    bpx = pixels(FULL_PIXEL_SEED, 1, 384, 384)
    out += [
        gc.case(
            "base_forward",
            {
                "pixel_values": bpx,
                "input_ids": bid,
                "attention_mask": bmask,
                "labels": labels_of(bid, bmask),
            },
            config=BASE,
            full_size=True,
            record=(),
            notes="blip-image-captioning-base dims; logits and loss kept",
        ),
        gc.case(
            "base_generate",
            {"pixel_values": bpx},
            config=BASE,
            full_size=True,
            record=(),
            method=gen,
            notes="blip-image-captioning-base dims, greedy, 20 new tokens",
        ),
    ]
    return out


SEED = 200  # full-size cases: 1200 (build_group adds 1000)
KEEP_FULL = ("out", "out.logits", "out.loss")


def build(root: Path):
    gc.build_group(
        Path(root) / "caption",
        [(name, {"cls": CLS, **spec}) for name, spec in cases()],
        SEED,
        full_pixel_seed=FULL_PIXEL_SEED,
        keep_full=KEEP_FULL,
        after_case=_add_margins,
    )


def _add_margins(case, meta, cls, spec):
    """generate cases: the greedy margins of each step, for the tests' tie check."""
    if spec.get("method") != "generate":
        return
    full = spec.get("full_size", False)
    mdir = materialize(case, gc.scratch_dir()) if full else case / "model"
    meta["margins"] = margins(cls, mdir, spec["inputs"], spec.get("kwargs", {}), spec.get("dtype"))
    if full:
        shutil.rmtree(mdir)


def margins(cls, model_dir, inputs, kwargs, dtype):
    """Per step, per row: best minus second-best processed score (greedy), or None for beams."""
    if kwargs.get("num_beams", 1) > 1:
        return None
    tdt = torch.float64 if dtype == "float64" else torch.float32
    model = getattr(transformers, cls).from_pretrained(model_dir).eval().to(tdt)
    args = {k: gc.to_torch(v, tdt) for k, v in inputs.items()}
    with torch.no_grad():
        out = model.generate(**args, **kwargs, return_dict_in_generate=True, output_scores=True)
    rows = []
    for s in out.scores:
        top2 = torch.topk(s.double(), 2, dim=-1).values
        rows.append([round(float(m), 6) for m in (top2[:, 0] - top2[:, 1])])
    return rows
