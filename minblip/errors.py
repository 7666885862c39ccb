"""Every error minblip raises on bad input derives from MinblipError.

Messages name what is at fault: the file, the checkpoint key, the config field, the argument,
and the shape or dtype that was expected against the one that was found.
"""


class MinblipError(Exception):
    """Base class of all minblip errors."""


class CheckpointError(MinblipError):
    """A checkpoint folder, weights file or weight tensor is missing, corrupt or misshapen."""


class ConfigError(MinblipError):
    """A config.json / preprocessor_config.json is unreadable or describes an unsupported model."""


class ImageError(MinblipError):
    """An image file or array cannot be read or converted."""


class InputError(MinblipError, ValueError):
    """An argument to a model, processor or generate call has the wrong shape, dtype or value."""


class TokenizerError(MinblipError):
    """Tokenizer files are missing or unreadable, or a text cannot be encoded as asked."""
