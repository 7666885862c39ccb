"""Door checks for the tokenizer and the image processor's numeric settings.

Each function raises a minblip error naming the option and the value, before the value reaches
the `tokenizers` library (which aborts the whole process when asked to pad to 10**12 tokens) or
a NumPy ufunc (whose TypeError names neither). Limits are listed in docs/security.md.
"""

import math
import numbers

import numpy as np

from .errors import InputError, TokenizerError

MAX_TEXT_TOKENS = 2**20  # the longest row the tokenizer may pad or truncate to (max_length)

# the named special tokens of a tokenizer config (transformers' SPECIAL_TOKENS_ATTRIBUTES but
# additional_special_tokens, a list); tokenize.py reads the same names
SPECIAL_TOKEN_NAMES = (
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
    "bos_token",
    "eos_token",
)


def check_text_call(texts, max_length, pad_to_multiple_of):
    """The tokenizer's call: a non-empty batch, and lengths that are ints in range."""
    if len(texts) == 0:
        raise InputError("text is an empty list: pass at least one string")
    for name, value, low in (
        ("max_length", max_length, 0),
        ("pad_to_multiple_of", pad_to_multiple_of, 1),
    ):
        if value is None:
            continue
        if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
            raise InputError(f"tokenizer: {name} must be an int, got {value!r}")
        if not low <= value <= MAX_TEXT_TOKENS:
            raise InputError(
                f"tokenizer: {name}={value} is outside [{low}, {MAX_TEXT_TOKENS}] "
                "(minblip.guards.MAX_TEXT_TOKENS)"
            )


def json_object(value, path):
    """A tokenizer JSON file's content, which must be an object."""
    if not isinstance(value, dict):
        raise TokenizerError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def check_tokenizer_config(config, where):
    """tokenizer_config.json (+ special_tokens_map.json, + keywords): the settings BertTokenizer
    reads must have the types transformers gives them, or the first use fails far away."""
    if not isinstance(config, dict):
        raise TokenizerError(f"{where}: tokenizer config must be a JSON object")
    mml = config.get("model_max_length", 512)
    if not _finite(mml) or mml < 0:  # transformers writes int(1e30) for "no limit": allowed
        raise TokenizerError(f"{where}: model_max_length={_short(mml)}; expected a number >= 0")
    for side in ("padding_side", "truncation_side"):
        if config.get(side, "right") not in ("left", "right"):
            raise TokenizerError(f"{where}: {side}={_short(config[side])}; 'left' or 'right'")
    specials = [(n, config.get(n)) for n in SPECIAL_TOKEN_NAMES]
    for name in ("extra_special_tokens", "additional_special_tokens"):
        extra = config.get(name)
        if extra is not None and not isinstance(extra, list):
            raise TokenizerError(f"{where}: {name}={_short(extra)}; expected a list of tokens")
        specials += [(name, t) for t in extra or []]
    for name, t in specials:
        content = t.get("content") if isinstance(t, dict) else t
        if t is not None and not isinstance(content, str):
            raise TokenizerError(f"{where}: {name}={_short(t)}; expected a token string")


def token_ids(token_ids):
    """Ids to decode -> a list of ints. Ids past the vocabulary are skipped, as `tokenizers`
    and transformers skip them; a string, a float or an id outside [0, 2**32) (which the Rust
    decoder takes as an overflow) is refused."""
    a = np.asarray(token_ids)
    if a.size and a.dtype.kind not in "iu":
        raise InputError(f"token ids must be integers, got {a.dtype} ({_short(token_ids)})")
    a = a.reshape(-1).astype(np.int64) if a.dtype.kind != "u" else a.reshape(-1)
    bad = a[(a < 0) | (a >= 2**32)]
    if bad.size:
        raise InputError(f"token id {int(bad[0])} is not a token id (negative or over 2**32)")
    return [int(t) for t in a]


def check_mean_std(mean, std, where, error):
    """image_mean / image_std: a number or a list of finite numbers; std never 0."""
    for name, value in (("image_mean", mean), ("image_std", std)):
        values = value if isinstance(value, (list, tuple)) else [value]
        if not values or not all(_finite(v) for v in values):
            raise error(f"{where}: {name}={_short(value)}; expected a number or a list of numbers")
        if name == "image_std" and any(v == 0 for v in values):
            raise error(f"{where}: image_std={_short(value)} holds 0 (division by zero)")


def check_factor(name, value, where, error):
    if not _finite(value):
        raise error(f"{where}: {name}={_short(value)}; expected a finite number")


def _finite(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _short(x, n=60):
    s = repr(x)
    return s if len(s) <= n else s[: n - 3] + "..."
