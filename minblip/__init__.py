"""minblip: BLIP and BLIP-2 in NumPy, conformant with transformers 5.23.0."""

from .blip import BlipForConditionalGeneration, BlipVisionModel
from .errors import (
    CheckpointError,
    ConfigError,
    ImageError,
    InputError,
    MinblipError,
    TokenizerError,
)
from .ops import get_backend, set_backend
from .preprocess import BlipImageProcessor

__all__ = [
    "BlipForConditionalGeneration",
    "BlipImageProcessor",
    "BlipVisionModel",
    "CheckpointError",
    "ConfigError",
    "ImageError",
    "InputError",
    "MinblipError",
    "TokenizerError",
    "get_backend",
    "set_backend",
]
