"""minblip: BLIP and BLIP-2 in NumPy, conformant with transformers 5.23.0."""

from .blip import (
    BlipForConditionalGeneration,
    BlipTextLMHeadModel,
    BlipTextModel,
    BlipVisionModel,
)
from .blip2 import (
    Blip2ForImageTextRetrieval,
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
from .pipeline import answer, caption, match
from .preprocess import BlipImageProcessor
from .processing import BlipProcessor
from .qformer import Blip2QFormerModel

__all__ = [
    "Blip2ForImageTextRetrieval",
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
    "ConfigError",
    "ImageError",
    "InputError",
    "MinblipError",
    "TokenizerError",
    "answer",
    "caption",
    "get_backend",
    "match",
    "set_backend",
]
