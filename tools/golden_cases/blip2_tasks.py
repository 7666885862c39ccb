"""golden/blip2_tasks/: Blip2ForImageTextRetrieval (ITM and ITC), Blip2TextModelWithProjection,
Blip2VisionModelWithProjection (the blip2-itm-vit-g classes), tiny configs.

The Q-Former has the text FFN (use_qformer_text_input) and a 99-word vocabulary; 4 learned
queries read a 28-px image. ITM with and without image-placeholder ids in front of the text
(config.image_token_index set or not: transformers slices them off, or puts the queries' ones in
front of the mask); ITC for 2 images x 3 padded texts; float64.
"""

from functools import partial
from pathlib import Path

import golden_common as gc
import numpy as np

from golden_cases.blip2_vision import TINY as VISION  # the tiny EVA ViT of golden/blip2_vision
from golden_cases.blip_tasks import texts
from golden_cases.caption import TINY_BERT
from minblip.testing import random_pixels as pixels

QFORMER = dict(TINY_BERT, use_qformer_text_input=True, cross_attention_frequency=2)
TINY = dict(
    vision_config=VISION, qformer_config=QFORMER, num_query_tokens=4, image_text_hidden_size=12
)
PLACEHOLDER = dict(TINY, image_token_index=98)


def cases():
    ids2, mask2 = texts(1, [6, 4], vocab=90)  # ids below the placeholder id 98
    ids3, mask3 = texts(2, [5, 7, 3], vocab=90)
    px2 = pixels(401, 2, 28, 28)
    ph = np.full((2, 4), 98, np.int64)  # the processor's image placeholders, then the text
    pair2 = {"pixel_values": px2, "input_ids": ids2, "attention_mask": mask2}
    placed = {
        "pixel_values": px2,
        "input_ids": np.concatenate([ph, ids2], 1),
        "attention_mask": np.concatenate([np.ones_like(ph), mask2], 1),
    }
    ret = partial(gc.case, cls="Blip2ForImageTextRetrieval", config=TINY)
    itm = {"use_image_text_matching_head": True}
    return [
        ret("itm", pair2, kwargs=itm),
        ret(
            "itm_placeholders",
            placed,
            config=PLACEHOLDER,
            kwargs=itm,
            notes="image_token_index set: ids lose the 4 placeholders, the mask keeps them",
        ),
        ret(
            "itc_2x3",
            {"pixel_values": px2, "input_ids": ids3, "attention_mask": mask3},
            notes="logits_per_image (2, 3): the best cosine over each image's 4 queries",
        ),
        ret("itc_placeholders", placed, config=PLACEHOLDER),
        ret("itm_float64", pair2, dtype="float64", kwargs=itm),
        gc.case(
            "text_with_projection",
            {"input_ids": ids3, "attention_mask": mask3},
            cls="Blip2TextModelWithProjection",
            config=TINY,
        ),
        gc.case(
            "vision_with_projection",
            {"pixel_values": px2},
            cls="Blip2VisionModelWithProjection",
            config=TINY,
        ),
    ]


TRACED = ("itm", "itc_2x3")  # every module recorded; the others record outputs only (size)


def build(root: Path):
    group = [(name, spec if name in TRACED else {**spec, "record": ()}) for name, spec in cases()]
    gc.build_shared_group(Path(root) / "blip2_tasks", group, None, seed=500)
