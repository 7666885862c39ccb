"""Model configs: frozen dataclasses whose field names are the keys of config.json.

A field takes the file's value when the file has the key and transformers 5.23.0's class default
only when the file is silent (the hub's BLIP configs set text num_attention_heads = 12 where the
class default is 8, so a default must never win over the file). Keys the models do not use
(legacy generation settings, dropout rates, ...) are accepted and ignored.
"""

import dataclasses
import json
import math
import pathlib
from dataclasses import dataclass, field

from .errors import ConfigError


@dataclass(frozen=True)
class BlipVisionConfig:
    """transformers.BlipVisionConfig (model_type "blip_vision_model")."""

    hidden_size: int = 768
    intermediate_size: int = 3072
    projection_dim: int = 512
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    image_size: int = 384
    patch_size: int = 16
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-5  # original BLIP used 1e-6; transformers uses 1e-5 (we follow it)
    attention_dropout: float = 0.0
    initializer_range: float = 1e-10
    num_channels: int = 3
    output_hidden_states: bool = False
    output_attentions: bool = False
    model_type: str = "blip_vision_model"


@dataclass(frozen=True)
class Blip2VisionConfig:
    """transformers.Blip2VisionConfig (model_type "blip_2_vision_model"): EVA ViT-g/14.

    The computation is BlipVisionModel's; the defaults differ, and qkv_bias=False drops the qkv
    bias (when present it is stored combined, [q | k | v], its k third trained from 0)."""

    hidden_size: int = 1408
    intermediate_size: int = 6144
    num_hidden_layers: int = 39
    num_attention_heads: int = 16
    image_size: int = 224
    patch_size: int = 14
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6  # blocks and post_layernorm (LAVIS' ln_vision used 1e-5)
    attention_dropout: float = 0.0
    initializer_range: float = 1e-10
    qkv_bias: bool = True
    num_channels: int = 3
    output_hidden_states: bool = False
    output_attentions: bool = False
    model_type: str = "blip_2_vision_model"


@dataclass(frozen=True)
class Blip2QFormerConfig:
    """transformers.Blip2QFormerConfig (model_type "blip_2_qformer"): the BERT-like Q-Former.

    Layer i cross-attends to the image iff i % cross_attention_frequency == 0; the text FFN
    (intermediate / output) exists only with use_qformer_text_input."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: object = 0
    cross_attention_frequency: int = 2
    encoder_hidden_size: int = 1408  # Blip2Config overwrites it with vision_config.hidden_size
    use_qformer_text_input: bool = False
    output_hidden_states: bool = False
    output_attentions: bool = False
    model_type: str = "blip_2_qformer"


@dataclass(frozen=True)
class BlipTextConfig:
    """transformers.BlipTextConfig (model_type "blip_text_model")."""

    vocab_size: int = 30524
    hidden_size: int = 768
    encoder_hidden_size: int = 768  # BlipConfig overwrites it with vision_config.hidden_size
    intermediate_size: int = 3072
    projection_dim: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 8  # class default; the hub's checkpoints say 12
    max_position_embeddings: int = 512
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    bos_token_id: int = 30522
    eos_token_id: object = 2
    pad_token_id: object = 0
    sep_token_id: object = 102
    is_decoder: bool = True
    use_cache: bool = True
    tie_word_embeddings: bool = True
    label_smoothing: float = 0.0
    output_hidden_states: bool = False
    output_attentions: bool = False
    model_type: str = "blip_text_model"


@dataclass(frozen=True)
class BlipConfig:
    """transformers.BlipConfig (model_type "blip"): a vision and a text config plus the heads."""

    text_config: BlipTextConfig = field(default_factory=BlipTextConfig)
    vision_config: BlipVisionConfig = field(default_factory=BlipVisionConfig)
    projection_dim: int = 512
    logit_scale_init_value: float = 2.6592
    image_text_hidden_size: int = 256
    label_smoothing: float = 0.0
    tie_word_embeddings: bool = True
    initializer_factor: float = 1.0
    initializer_range: float = 0.02
    architectures: object = None
    output_hidden_states: bool = False
    output_attentions: bool = False
    model_type: str = "blip"


@dataclass(frozen=True)
class Blip2Config:
    """transformers.Blip2Config (model_type "blip-2"): vision tower, Q-Former and language model.

    text_config is an OPTConfig or a T5Config (transformers' default when the file has none is
    OPT's); a language model of another type is kept as the file's dict, which the retrieval
    classes never read and the language-model classes refuse by name."""

    vision_config: Blip2VisionConfig = field(default_factory=Blip2VisionConfig)
    qformer_config: Blip2QFormerConfig = field(default_factory=Blip2QFormerConfig)
    text_config: object = None
    num_query_tokens: int = 32
    image_text_hidden_size: int = 256
    image_token_index: object = None
    initializer_factor: float = 1.0
    initializer_range: float = 0.02
    architectures: object = None
    model_type: str = "blip-2"


@dataclass(frozen=True)
class OPTConfig:
    """transformers.OPTConfig (model_type "opt"): the decoder-only LM of BLIP-2 (opt-2.7b etc.).

    word_embed_proj_dim defaults to hidden_size (opt_config_from_dict fills it in, as OPTConfig's
    __post_init__ does); when it differs, project_in / project_out map between the two widths.
    The final LayerNorm exists iff do_layer_norm_before and not _remove_final_layer_norm."""

    vocab_size: int = 50272
    hidden_size: int = 768
    num_hidden_layers: int = 12
    ffn_dim: int = 3072
    max_position_embeddings: int = 2048
    do_layer_norm_before: bool = True  # pre-LN (every OPT but 350m)
    _remove_final_layer_norm: bool = False  # only for checkpoints fine-tuned before 4.20.1
    word_embed_proj_dim: object = None
    dropout: float = 0.1
    attention_dropout: float = 0.0
    num_attention_heads: int = 12
    activation_function: str = "relu"
    layerdrop: float = 0.0
    init_std: float = 0.02
    use_cache: bool = True
    pad_token_id: object = 1
    bos_token_id: object = 2
    eos_token_id: object = 2
    enable_bias: bool = True
    layer_norm_elementwise_affine: bool = True
    tie_word_embeddings: bool = True
    output_hidden_states: bool = False
    output_attentions: bool = False
    model_type: str = "opt"


def opt_config_from_dict(d, where="config.json"):
    """An OPTConfig; word_embed_proj_dim None or absent means hidden_size (as 5.23)."""
    from .ops import ACT2FN

    hidden = d.get("hidden_size", OPTConfig.hidden_size) if isinstance(d, dict) else None
    proj = d.get("word_embed_proj_dim") if isinstance(d, dict) else None
    if proj is not None and (not isinstance(proj, int) or isinstance(proj, bool) or proj <= 0):
        raise ConfigError(f"{where}: word_embed_proj_dim must be a positive int, got {proj!r}")
    cfg = _parse(OPTConfig, d, where, word_embed_proj_dim=hidden if proj is None else proj)
    if cfg.ffn_dim <= 0:
        raise ConfigError(f"{where}: ffn_dim must be positive, got {cfg.ffn_dim!r}")
    if cfg.activation_function not in ACT2FN:
        raise ConfigError(
            f"{where}: activation_function {cfg.activation_function!r} is not supported; "
            f"known: {sorted(ACT2FN)}"
        )
    return cfg


# fields that must be positive integers wherever they appear
_POSITIVE = {
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "image_size",
    "patch_size",
    "vocab_size",
    "encoder_hidden_size",
    "max_position_embeddings",
    "projection_dim",
    "image_text_hidden_size",
    "num_channels",
    "cross_attention_frequency",
    "num_query_tokens",
}


_MAX_SIZE = 2**31 - 1  # any int in a config, by magnitude: sizes, counts, token ids
_LIMITS = {"num_hidden_layers": 1024}  # counts minblip loops over before reading any weight
_MAX_JSON_BYTES = 64 * 2**20  # config files are a few KiB


def _check(cls, name, value, where):
    default = next(f for f in dataclasses.fields(cls) if f.name == name).default
    kind = type(default) if default is not None else object
    ok = (
        kind is object
        or (kind is bool and isinstance(value, bool))
        or (kind is int and isinstance(value, int) and not isinstance(value, bool))
        or (kind is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (kind is str and isinstance(value, str))
    )
    if not ok:
        raise ConfigError(f"{where}: {name} must be {kind.__name__}, got {value!r}")
    if kind is float and not (abs(value) < 1e308 if type(value) is int else math.isfinite(value)):
        raise ConfigError(f"{where}: {name} must be a finite number, got {value!r}")
    if name in _POSITIVE and value <= 0:
        raise ConfigError(f"{where}: {name} must be positive, got {value!r}")
    if kind is int and abs(value) > _LIMITS.get(name, _MAX_SIZE):
        # sizes are only compared with the checkpoint's shapes, but a layer count is looped
        # over before the weights are read: bound both so a config cannot spin or fill memory
        raise ConfigError(
            f"{where}: {name}={value} is beyond minblip's limit of {_LIMITS.get(name, _MAX_SIZE)}"
        )
    if name == "layer_norm_eps" and value <= 0:
        raise ConfigError(f"{where}: layer_norm_eps must be positive, got {value!r}")
    return float(value) if kind is float else value


def _parse(cls, d, where, **override):
    """Build cls from the dict d: the file's values where present, class defaults elsewhere."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where} must be a JSON object, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    kw = {k: _check(cls, k, v, where) for k, v in d.items() if k in names and k not in override}
    cfg = cls(**kw, **override)
    _validate(cfg, where)
    return cfg


def _validate(cfg, where):
    from .ops import ACT2FN

    heads = getattr(cfg, "num_attention_heads", None)
    if heads and cfg.hidden_size % heads:
        raise ConfigError(
            f"{where}: hidden_size {cfg.hidden_size} is not divisible by "
            f"num_attention_heads {heads}"
        )
    act = getattr(cfg, "hidden_act", None)
    if act is not None and act not in ACT2FN:
        raise ConfigError(f"{where}: hidden_act {act!r} is not supported; known: {sorted(ACT2FN)}")


def blip_config_from_dict(d, where="config.json"):
    """A BlipConfig from a "blip" config dict; the text tower cross-attends to vision features."""
    vision = _parse(BlipVisionConfig, d.get("vision_config") or {}, f"{where}: vision_config")
    text_d = d.get("text_config") or {}
    # transformers forces text_config.encoder_hidden_size = vision_config.hidden_size (all versions)
    text = _parse(
        BlipTextConfig, text_d, f"{where}: text_config", encoder_hidden_size=vision.hidden_size
    )
    top = {k: v for k, v in d.items() if k not in ("text_config", "vision_config")}
    return _parse(BlipConfig, top, where, text_config=text, vision_config=vision)


def blip2_config_from_dict(d, where="config.json"):
    """A Blip2Config; the Q-Former cross-attends to vision features of the vision tower's width."""
    vision = _parse(Blip2VisionConfig, d.get("vision_config") or {}, f"{where}: vision_config")
    # transformers forces qformer_config.encoder_hidden_size = vision_config.hidden_size
    qformer = _parse(
        Blip2QFormerConfig,
        d.get("qformer_config") or {},
        f"{where}: qformer_config",
        encoder_hidden_size=vision.hidden_size,
    )
    top = {
        k: v for k, v in d.items() if k not in ("vision_config", "qformer_config", "text_config")
    }
    if "image_token_id" in top and "image_token_index" not in top:  # 5.x alias
        top["image_token_index"] = top["image_token_id"]
    return _parse(
        Blip2Config,
        top,
        where,
        vision_config=vision,
        qformer_config=qformer,
        text_config=language_config(d.get("text_config"), f"{where}: text_config"),
    )


LANGUAGE_MODELS = ("opt", "t5")  # the text_config model types minblip builds BLIP-2 with


def language_config(d, where):
    """BLIP-2's text_config as its dataclass. No text_config means OPT's defaults, as in
    transformers (Blip2Config's sub_configs_defaults); an unsupported type stays a dict."""
    d = {"model_type": "opt"} if d is None else d
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(d).__name__}")
    kind = d.get("model_type", "opt")
    if kind not in LANGUAGE_MODELS:
        return d
    return PARSERS[kind](d, where)


def is_decoder_only(cfg):
    """Blip2Config.use_decoder_only_language_model: OPT yes, T5 (encoder-decoder) no."""
    return getattr(cfg.text_config, "model_type", None) == "opt"


PARSERS = {
    "blip": blip_config_from_dict,
    "blip_vision_model": lambda d, where: _parse(BlipVisionConfig, d, where),
    "blip_2_vision_model": lambda d, where: _parse(Blip2VisionConfig, d, where),
    "blip_2_qformer": lambda d, where: _parse(Blip2QFormerConfig, d, where),
    "blip-2": blip2_config_from_dict,
    "blip_text_model": lambda d, where: _parse(BlipTextConfig, d, where),
    "opt": opt_config_from_dict,
    "t5": lambda d, where: t5_config_from_dict(d, where),
}


def read_json(path):
    """Parse a JSON file, naming the file in the error when it is missing or not JSON."""
    path = pathlib.Path(path)
    try:
        if path.stat().st_size > _MAX_JSON_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size} bytes, over {_MAX_JSON_BYTES}")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    try:
        return json.loads(text)
    except ValueError as e:  # JSONDecodeError, and integers of more than 4300 digits
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid JSON (nested too deeply)") from None


def load_config(folder):
    """Read folder/config.json into the dataclass its model_type names."""
    path = pathlib.Path(folder) / "config.json"
    d = read_json(path)
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a JSON object at the top level")
    model_type = d.get("model_type")
    if not isinstance(model_type, str) or model_type not in PARSERS:
        raise ConfigError(
            f"{path}: unknown model_type {model_type!r}; minblip knows {sorted(PARSERS)}"
        )
    return PARSERS[model_type](d, str(path))


# ----------------------------------------------------------------------------- T5 / Flan-T5


@dataclass(frozen=True)
class T5Config:
    """transformers.T5Config (model_type "t5"): T5 / Flan-T5, BLIP-2's encoder-decoder LM.

    Three fields are derived when the file is silent, as 5.23's __post_init__ derives them (an
    explicit key always wins: 5.23 setattr()s leftover keys after deriving):
    dense_act_fn from feed_forward_proj ("gated-gelu" -> "gelu_new", "gated-X" / "X" -> "X"),
    is_gated_act (feed_forward_proj starts with "gated-"), and scale_decoder_outputs
    (tie_word_embeddings is not false: original T5 rescales the decoder output by d_model**-0.5
    before its tied head, v1.1 / Flan-T5 do not). num_decoder_layers defaults to num_layers.
    """

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_decoder_layers: object = None
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    initializer_factor: float = 1.0
    feed_forward_proj: str = "relu"
    dense_act_fn: object = None
    is_gated_act: object = None
    tie_word_embeddings: bool = True  # the file's value; 5.23 then forces True (see t5.py)
    scale_decoder_outputs: object = None
    is_encoder_decoder: bool = True
    use_cache: bool = True
    pad_token_id: object = 0
    eos_token_id: object = 1
    bos_token_id: object = None
    decoder_start_token_id: object = None  # generate falls back to bos_token_id, as 5.23 does
    classifier_dropout: float = 0.0
    is_decoder: bool = False
    output_hidden_states: bool = False
    output_attentions: bool = False
    architectures: object = None
    model_type: str = "t5"


_T5_POSITIVE = (
    "vocab_size",
    "d_model",
    "d_kv",
    "d_ff",
    "num_layers",
    "num_heads",
    "relative_attention_num_buckets",
    "relative_attention_max_distance",
)


def t5_config_from_dict(d, where="config.json"):
    """A T5Config with 5.23's derived fields (see T5Config); bad values named with their key."""
    from .ops import ACT2FN

    if not isinstance(d, dict):
        raise ConfigError(f"{where} must be a JSON object, got {type(d).__name__}")
    proj = d.get("feed_forward_proj", "relu")
    parts = proj.split("-") if isinstance(proj, str) else []
    if not parts or len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
        raise ConfigError(
            f"{where}: feed_forward_proj {proj!r} is not 'gated-<act>' or '<act>' "
            "(e.g. 'gated-gelu' or 'relu')"
        )
    derived = {
        "num_decoder_layers": d.get("num_layers", 6)
        if d.get("num_decoder_layers") is None
        else d["num_decoder_layers"],
        "dense_act_fn": "gelu_new" if proj == "gated-gelu" else parts[-1],
        "is_gated_act": parts[0] == "gated",
        "scale_decoder_outputs": d.get("tie_word_embeddings") is not False,
    }
    cfg = _parse(T5Config, d, where, **{k: d.get(k, v) for k, v in derived.items()})
    for name in _T5_POSITIVE + ("num_decoder_layers",):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{where}: {name} must be a positive int, got {value!r}")
    if cfg.layer_norm_epsilon <= 0:
        raise ConfigError(f"{where}: layer_norm_epsilon must be positive")
    if cfg.dense_act_fn not in ACT2FN:
        raise ConfigError(
            f"{where}: dense_act_fn {cfg.dense_act_fn!r} is not supported; known: {sorted(ACT2FN)}"
        )
    for name in ("is_gated_act", "scale_decoder_outputs"):
        if not isinstance(getattr(cfg, name), bool):
            raise ConfigError(f"{where}: {name} must be true or false")
    return cfg
