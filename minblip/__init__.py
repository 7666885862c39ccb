"""minblip: BLIP and BLIP-2 in NumPy, conformant with transformers 5.23.0."""

from .blip import (
    BlipForConditionalGeneration,
    BlipTextLMHeadModel,
    BlipTextModel,
    BlipVisionModel,
)
from .blip2 import (
    Blip2ForConditionalGeneration,
    Blip2ForImageTextRetrieval,
    Blip2Model,
    Blip2TextModelWithProjection,
    Blip2VisionModel,
    Blip2VisionModelWithProjection,
)
from .blip_tasks import BlipForImageTextRetrieval, BlipForQuestionAnswering, BlipModel
from .errors import (
    CheckpointError,
    ConfigError,
    ImageError,
    InputError,
    MinblipError,
    TokenizerError,
)
from .ops import get_backend, set_backend
from .opt import OPTForCausalLM
from .pipeline import answer, caption, match
from .preprocess import BlipImageProcessor
from .processing import Blip2Processor, BlipProcessor
from .qformer import Blip2QFormerModel
from .t5 import T5EncoderModel, T5ForConditionalGeneration
from .tokenize import BertTokenizer, GPT2Tokenizer, T5Tokenizer, load_tokenizer

__all__ = [
    "BertTokenizer",
    "Blip2ForConditionalGeneration",
    "Blip2ForImageTextRetrieval",
    "Blip2Model",
    "Blip2Processor",
    "Blip2QFormerModel",
    "Blip2TextModelWithProjection",
    "Blip2VisionModel",
    "Blip2VisionModelWithProjection",
    "BlipForConditionalGeneration",
    "BlipForImageTextRetrieval",
    "BlipForQuestionAnswering",
    "BlipImageProcessor",
    "BlipModel",
    "BlipProcessor",
    "BlipTextLMHeadModel",
    "BlipTextModel",
    "BlipVisionModel",
    "CheckpointError",
    "GPT2Tokenizer",
    "T5Tokenizer",
    "ConfigError",
    "ImageError",
    "InputError",
    "MinblipError",
    "OPTForCausalLM",
    "T5EncoderModel",
    "T5ForConditionalGeneration",
    "TokenizerError",
    "answer",
    "caption",
    "get_backend",
    "load_tokenizer",
    "match",
    "set_backend",
]
