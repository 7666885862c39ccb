"""golden/blip2_qformer/: Blip2QFormerModel (the BLIP-2 Querying Transformer), tiny configs.

Inputs are query embeddings (B, L, Dq) whose first Q positions are queries and the rest text,
and image features (B, S, De). Cases: queries only with cross-attention every 2nd layer (the
hub layout), every layer and every 3rd; queries + text with the text FFN
(use_qformer_text_input, the ITM layout) and a padded text; an image padding mask, which the
Q-Former's cross-attention does apply (unlike BLIP's text tower); text only (query_length 0);
float64; odd head widths; output_attentions / output_hidden_states.
"""

from pathlib import Path

import golden_common as gc
import numpy as np

TINY = dict(
    hidden_size=36,
    intermediate_size=50,
    num_hidden_layers=3,
    num_attention_heads=3,
    encoder_hidden_size=20,
    cross_attention_frequency=2,
)


def _arrays(seed, B, L, S, De=20, Dq=36):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((B, L, Dq)).astype(np.float32)
    img = rng.standard_normal((B, S, De)).astype(np.float32)
    return q, img


def cases():
    q4, img = _arrays(1, 2, 4, 9)
    q7, img7 = _arrays(2, 2, 7, 9)
    text_mask = np.ones((2, 7), np.int64)
    text_mask[1, 5:] = 0  # the second row's text is 2 tokens shorter
    img_mask = np.ones((2, 9), np.int64)
    img_mask[0, 6:] = 0
    return [
        (
            "queries_only",
            dict(config=TINY, inputs={"query_embeds": q4, "encoder_hidden_states": img}),
        ),
        (
            "cross_every_layer_odd_heads",
            dict(
                config=dict(
                    TINY, cross_attention_frequency=1, hidden_size=40, num_attention_heads=5
                ),
                inputs={
                    "query_embeds": _arrays(3, 1, 4, 9, Dq=40)[0],
                    "encoder_hidden_states": img[:1],
                },
            ),
        ),
        (
            "queries_and_text",
            dict(
                config=dict(TINY, use_qformer_text_input=True, cross_attention_frequency=3),
                inputs={
                    "query_embeds": q7,
                    "encoder_hidden_states": img7,
                    "attention_mask": text_mask,
                },
                kwargs={"query_length": 4},
                notes="4 queries + 3 text positions (row 1: 1 text + 2 pad); text FFN",
            ),
        ),
        (
            "image_mask",
            dict(
                config=TINY,
                inputs={
                    "query_embeds": q4,
                    "encoder_hidden_states": img,
                    "encoder_attention_mask": img_mask,
                },
                notes="row 0 sees 6 of 9 image tokens: the cross-attention mask is applied",
            ),
        ),
        (
            "text_only",
            dict(
                config=dict(TINY, use_qformer_text_input=True),
                inputs={"query_embeds": q7, "attention_mask": text_mask},
                kwargs={"query_length": 0},
                record=(),  # outputs only: golden/ is near its size budget
                notes="query_length 0: text through self-attention and the text FFN only",
            ),
        ),
        (
            "attentions_hidden_states",
            dict(
                # eager: sdpa returns no probabilities (5.23 then gives empty attentions)
                config=dict(TINY, use_qformer_text_input=True, attn_implementation="eager"),
                inputs={
                    "query_embeds": q7,
                    "encoder_hidden_states": img7,
                    "attention_mask": text_mask,
                },
                kwargs={"query_length": 4, "output_attentions": True, "output_hidden_states": True},
                record=(),  # the outputs hold every layer already
                notes="hidden_states: the layernorm output, then each Blip2QFormerLayer's; "
                "attentions / cross_attentions as 5.23's OutputRecorders collect them",
            ),
        ),
        (
            "float64",
            dict(
                config=dict(TINY, use_qformer_text_input=True),
                inputs={"query_embeds": q7, "encoder_hidden_states": img7},
                kwargs={"query_length": 4},
                dtype="float64",
            ),
        ),
    ]


def build(root: Path):
    gc.build_shared_group(Path(root) / "blip2_qformer", cases(), "Blip2QFormerModel", seed=300)
