"""BlipProcessor's 5.x-style per-modality settings (checked live against transformers 5.23.0:
text_kwargs / images_kwargs / common_kwargs route exactly as flat keywords do)."""

import numpy as np
import pytest
from conftest import GOLDEN

import minblip
from minblip.preprocess import BlipImageProcessor
from minblip.tokenize import BertTokenizer

TEXTS = ["a picture of a cat", "two dogs"]


@pytest.fixture(scope="module")
def processor():
    tok = BertTokenizer.from_pretrained(GOLDEN / "tokenizer" / "blip")
    return minblip.BlipProcessor(BlipImageProcessor(size=16), tok)


def _image():
    return np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)


def test_modality_dicts_route_like_keywords(processor):
    flat = processor(images=_image(), text=TEXTS, padding=True, do_normalize=False)
    grouped = processor(
        images=_image(),
        text=TEXTS,
        text_kwargs={"padding": True},
        images_kwargs={"do_normalize": False},
        common_kwargs={"return_tensors": "np"},
    )
    assert sorted(flat) == sorted(grouped) == ["attention_mask", "input_ids", "pixel_values"]
    for k in flat:
        np.testing.assert_array_equal(flat[k], grouped[k])
    sized = processor(images=_image(), images_kwargs={"size": {"height": 8, "width": 12}})
    assert sized["pixel_values"].shape == (1, 3, 8, 12)


def test_a_setting_given_twice_is_refused(processor):
    with pytest.raises(minblip.InputError, match=r"\['padding'\] passed twice"):
        processor(text=TEXTS, text_kwargs={"padding": "max_length"}, padding=True)
