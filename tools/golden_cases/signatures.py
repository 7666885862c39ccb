"""golden/signatures: the call signatures of transformers' classes that minblip mirrors.

For each class: every public method minblip mirrors (forward, generate, the get_*_features
helpers, from_pretrained's first argument) with its explicit parameters in transformers' order,
whether it takes **kwargs (transformers 5.x routes output_attentions / output_hidden_states /
return_dict through them), and the outputs the class can record on request
(`_can_record_outputs`: hidden_states, attentions, cross_attentions). tests/test_signatures.py
checks that minblip's classes take the same parameters in the same order, so a positional call
means the same thing in both libraries.
"""

import inspect
import json

import transformers

CLASSES = [
    "BlipVisionModel",
    "BlipTextModel",
    "BlipTextLMHeadModel",
    "BlipModel",
    "BlipForConditionalGeneration",
    "BlipForImageTextRetrieval",
    "BlipForQuestionAnswering",
    "Blip2VisionModel",
    "Blip2QFormerModel",
    "Blip2Model",
    "Blip2ForConditionalGeneration",
    "Blip2ForImageTextRetrieval",
    "Blip2TextModelWithProjection",
    "Blip2VisionModelWithProjection",
    "OPTForCausalLM",
    "T5ForConditionalGeneration",
    "T5EncoderModel",
]
METHODS = ["forward", "generate", "get_text_features", "get_image_features", "get_qformer_features"]
VARIADIC = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)


def describe(fn):
    params = [p for name, p in inspect.signature(fn).parameters.items() if name != "self"]
    return {
        "parameters": [p.name for p in params if p.kind not in VARIADIC],
        "var_keyword": any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params),
    }


def build(root):
    out = {"transformers": transformers.__version__, "classes": {}}
    for name in CLASSES:
        cls = getattr(transformers, name)
        methods = {}
        for m in METHODS:
            # methods the class defines itself (GenerationMixin.generate's generic signature,
            # generate(inputs, generation_config, ...), is not what a BLIP user calls)
            fn = cls.__dict__.get(m)
            if fn is None:
                continue
            methods[m] = describe(fn)
        record = sorted(getattr(cls, "_can_record_outputs", None) or {})
        out["classes"][name] = {"methods": methods, "can_record_outputs": record}
    folder = root / "signatures"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "signatures.json").write_text(json.dumps(out, indent=1) + "\n")
