"""golden/blip_text_options/: the BLIP text tower's and captioner's forward options beyond ids
(transformers 5.23.0): inputs_embeds, encoder_embeds, logits_to_keep, past_key_values + use_cache.

The caption group's tiny configs (tools/golden_cases/caption.py). Cases:
- text_model_inputs_embeds: BlipTextModel in decoder mode given word embeddings (positions and
  the embeddings LayerNorm still added), with cross-attention, hidden states and attentions.
- text_model_encoder_embeds: BlipTextModel given encoder_embeds, the embedding output itself
  (the embeddings module does not run), encoder mode with cross-attention and the pooler.
- text_lm_inputs_embeds_keep_rows: BlipTextLMHeadModel from inputs_embeds with a (B, 2) integer
  logits_to_keep (positions per row).
- text_lm_inputs_embeds_float64: the same in float64, logits_to_keep=2, attentions.
- text_lm_keep_last3: logits_to_keep=3 (the last three positions), hidden states of every one.
- forward_keep_last1: BlipForConditionalGeneration.forward with logits_to_keep=1.
- text_lm_cache: BlipTextLMHeadModel on the first 4 tokens with use_cache=True; its
  "continuation.npz" holds the second call of transformers, on the remaining tokens with the
  first call's past_key_values (inputs "input_ids", "attention_mask" (past + new)) and its
  outputs: "out.logits", and the cache after it as "cache.self.<layer>.key|value" (B, H, T, Dh)
  and "cache.cross.<layer>.key|value" (B, H, N, Dh). meta["continuation"] names them.
"""

from functools import partial
from pathlib import Path

import golden_common as gc
import numpy as np
import torch
import transformers

from golden_cases.caption import TEXT_TINY, TINY, texts
from minblip.testing import random_pixels as pixels

TEXT = dict(TEXT_TINY, encoder_hidden_size=24)
SEED = 210
FIRST = 4  # tokens of text_lm_cache's first call


def cases():
    rng = np.random.default_rng(61)
    ids2, mask2 = texts(62, [7, 5])
    enc = rng.standard_normal((2, 9, 24)).astype(np.float32)
    embeds = rng.standard_normal((2, 7, 36)).astype(np.float32)
    keep_rows = np.array([[0, 6], [2, 3]], np.int64)
    embedded = {"inputs_embeds": embeds, "attention_mask": mask2, "encoder_hidden_states": enc}
    text_model = partial(gc.case, cls="BlipTextModel", config=TEXT)
    text_lm = partial(gc.case, cls="BlipTextLMHeadModel", config=TEXT)
    return [
        text_model(
            "text_model_inputs_embeds",
            embedded,
            kwargs={"is_decoder": True, "output_hidden_states": True, "output_attentions": True},
        ),
        text_model(
            "text_model_encoder_embeds",
            {"encoder_embeds": embeds, "attention_mask": mask2, "encoder_hidden_states": enc},
            kwargs={"output_hidden_states": True},
            notes="encoder mode; the embeddings module is skipped (not recorded)",
        ),
        text_lm("text_lm_inputs_embeds_keep_rows", {**embedded, "logits_to_keep": keep_rows}),
        text_lm(
            "text_lm_inputs_embeds_float64",
            embedded,
            dtype="float64",
            kwargs={"logits_to_keep": 2, "output_attentions": True},
        ),
        text_lm(
            "text_lm_keep_last3",
            {"input_ids": ids2, "attention_mask": mask2},
            kwargs={"logits_to_keep": 3, "output_hidden_states": True},
            notes="no encoder_hidden_states: the layers skip cross-attention",
        ),
        gc.case(
            "forward_keep_last1",
            {"pixel_values": pixels(63, 2, 32, 32), "input_ids": ids2, "attention_mask": mask2},
            cls="BlipForConditionalGeneration",
            config=TINY,
            kwargs={"logits_to_keep": 1},
        ),
        text_lm(
            "text_lm_cache",
            {
                "input_ids": ids2[:, :FIRST],
                "attention_mask": mask2[:, :FIRST],
                "encoder_hidden_states": enc,
            },
            kwargs={"use_cache": True},
            notes="first call of two; continuation.npz holds the second (see docstring)",
        ),
    ]


def continuation(case, meta, cls, spec):
    """text_lm_cache: the second call, with the first call's cache (build_group's after_case)."""
    if case.name != "text_lm_cache":
        return
    ids2, mask2 = texts(62, [7, 5])
    model = getattr(transformers, cls).from_pretrained(case / "model").eval()
    first = {k: gc.to_torch(v, torch.float32) for k, v in spec["inputs"].items()}
    rest = {"input_ids": ids2[:, FIRST:], "attention_mask": mask2}
    with torch.no_grad():
        out1 = model(**first, use_cache=True)
        out2 = model(
            **{k: torch.from_numpy(v) for k, v in rest.items()},
            encoder_hidden_states=first["encoder_hidden_states"],
            past_key_values=out1.past_key_values,
            use_cache=True,
        )
    arrays = {f"inputs.{k}": v for k, v in rest.items()}
    arrays["out.logits"] = out2.logits.numpy()
    cache = out2.past_key_values
    for part, c in (("self", cache.self_attention_cache), ("cross", cache.cross_attention_cache)):
        for i, layer in enumerate(c.layers):
            arrays[f"cache.{part}.{i}.key"] = layer.keys.numpy()
            arrays[f"cache.{part}.{i}.value"] = layer.values.numpy()
    np.savez_compressed(case / "continuation.npz", **arrays)
    meta["continuation"] = sorted(arrays)


def build(root: Path):
    gc.build_group(Path(root) / "blip_text_options", cases(), SEED, after_case=continuation)
