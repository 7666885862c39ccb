"""The typed outputs read as transformers' do: attributes, keys, None fields left out of the
mapping, to_tuple() in the class's field order whatever order the fields were given in."""

import numpy as np
import pytest

from minblip import outputs


def test_typed_output_orders_fields_as_transformers_and_omits_none():
    a, b = np.zeros((1, 2)), np.ones((1, 3))
    out = outputs.BlipForConditionalGenerationModelOutput(image_embeds=b, logits=a)
    assert list(out) == ["logits", "image_embeds"]
    assert out.to_tuple()[0] is a and out[1] is b and out["image_embeds"] is b
    assert out.loss is None and out.hidden_states is None  # a field not filled reads as None
    with pytest.raises(AttributeError):
        out.no_such_field
    with pytest.raises(TypeError, match="no field"):
        outputs.BlipOutput(itm_score=a)


def test_returned_gives_nested_tuples_and_replace_keeps_the_class():
    tower = outputs.BaseModelOutputWithPooling(last_hidden_state=np.zeros(2), pooler_output=None)
    out = outputs.BlipOutput(logits_per_text=np.ones(1), vision_model_output=tower)
    assert outputs.returned(out, True) is out
    flat = outputs.returned(out, False)
    assert isinstance(flat, tuple) and isinstance(flat[1], tuple) and len(flat[1]) == 1
    again = tower.replace(pooler_output=np.ones(3))
    assert type(again) is outputs.BaseModelOutputWithPooling and list(again) == [
        "last_hidden_state",
        "pooler_output",
    ]
    untyped = outputs.ModelOutput(b=1, a=None, c=2)  # sibling branches' form keeps working
    assert untyped.to_tuple() == (1, 2) and untyped.a is None
