"""What every minblip model class shares: from_pretrained, dtype handling, input checks.

A model object holds `config` (frozen dataclass), `params` (read-only nested dict keyed as the
checkpoint) and the folder it came from; calling it runs a pure function of the three.
"""

import numpy as np

from . import quantize
from .config import load_config
from .errors import CheckpointError, ConfigError, InputError
from .hub import resolve
from .outputs import BaseModelOutputWithPooling
from .weights import check_params, is_buffer, load_flat, to_tree

_DTYPE_NAMES = {"float32": np.float32, "float64": np.float64, "auto": np.float32, None: np.float32}


def compute_dtype(dtype):
    """float32 (default; f16/bf16 files are widened to it) or float64 (for precision checks).
    "auto" computes in float32 too, with 16-bit weights kept as stored (load_flat keep_16bit)."""
    if isinstance(dtype, str) or dtype is None:
        if dtype in ("bfloat16", "float16", "half"):
            raise InputError(
                f"dtype={dtype!r}: minblip computes in float32 (or float64) only; to run a "
                "bf16 / float16 checkpoint with its weights kept 16-bit in memory, pass "
                "dtype='auto'"
            )
        if dtype not in _DTYPE_NAMES:
            raise InputError(f"dtype must be 'float32', 'float64' or 'auto', got {dtype!r}")
        return np.dtype(_DTYPE_NAMES[dtype])
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):  # np.float16 included: see the string case above
        raise InputError(f"dtype must be float32 or float64, got {dt}")
    return dt


class PreTrainedModel:
    """Base of the model classes. Subclasses define:

    config_types: the config dataclass(es) this class accepts, and `sub_config(cfg)` to pick
    its part of a bigger config; `expected_shapes(cfg)` ({key: shape}); optionally `prefix` (the
    subtree of a bigger checkpoint it reads) and `optional_keys(cfg)` (tied copies).
    """

    config_types = ()
    prefix = ""

    def __init__(self, config, params, name_or_path=None):
        self.config, self.params, self.name_or_path = config, params, name_or_path
        self.dtype = _params_dtype(params)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path,
        *,
        dtype=None,
        torch_dtype=None,
        revision=None,
        cache_dir=None,
        local_files_only=False,
        subfolder="",
        load_in_8bit=False,
        quantization_config=None,
        **kwargs,
    ):
        """Load a checkpoint folder or a cached hub id, as transformers' from_pretrained does.

        dtype: "float32" (default; the weights' own f16/bf16 are widened to it), "float64", or
        "auto": the checkpoint's bf16 / float16 matrices stay as stored (memory-mapped, half the
        bytes of float32) and every product widens them to float32 (ops.matmul_stored).
        transformers 5.23's "auto" (its default) computes in the stored 16-bit dtype; minblip's
        arithmetic stays float32 (docs/deviations.md). On a float32 file "auto" = "float32".
        load_in_8bit / quantization_config (BitsAndBytesConfig's load_in_8bit and
        llm_int8_skip_modules): int8 weight-only Linears, float32 arithmetic (minblip/quantize.py).
        A folder written by `minblip quantize` loads as int8 whatever is passed.
        subfolder: a folder inside the checkpoint or repo that holds the files. Accepted and
        without effect here: use_safetensors, trust_remote_code, low_cpu_mem_usage, device_map,
        attn_implementation (every attention implementation computes the same function), token.
        """
        unknown = set(kwargs) - {
            "use_safetensors",
            "trust_remote_code",
            "low_cpu_mem_usage",
            "device_map",
            "attn_implementation",
            "token",
        }
        if unknown:
            raise InputError(
                f"{cls.__name__}.from_pretrained: unknown argument(s) {sorted(unknown)}"
            )
        folder = resolve(pretrained_model_name_or_path, revision, cache_dir, local_files_only)
        if subfolder:
            folder = folder / subfolder
            if not folder.is_dir():
                raise CheckpointError(
                    f"{folder}: no such subfolder in {pretrained_model_name_or_path}"
                )
        config = cls.sub_config(load_config(folder), folder)
        requested = dtype if dtype is not None else torch_dtype
        compute = compute_dtype(requested)
        plan = quantize.read_plan(folder, load_in_8bit, quantization_config)
        if plan is not None and compute != np.float32:
            raise InputError(f"int8 weights compute in float32, not {compute} (dtype={dtype!r})")
        keep = isinstance(requested, str) and requested == "auto"
        flat = cls.select_weights(load_flat(folder, compute, keep_16bit=keep))
        where = f"{folder} ({cls.__name__})"
        expected, stored = cls.expected_shapes(config), []
        if keep:
            stored = [k for k, shape in expected.items() if len(shape) == 2]
        if plan is not None:
            flat, expected, quantized = quantize.apply(flat, expected, plan, where)
            stored += quantized
        check_params(flat, expected, where, cls.optional_keys(config), is_buffer, set(stored))
        params = to_tree({k: v for k, v in flat.items() if not is_buffer(k)})
        model = cls(config, params, str(pretrained_model_name_or_path))
        model.folder = folder  # the resolved checkpoint folder (for files beside the weights)
        return model

    @classmethod
    def sub_config(cls, config, folder):
        if isinstance(config, cls.config_types):
            return config
        for name in ("vision_config", "text_config", "qformer_config"):
            sub = getattr(config, name, None)
            if isinstance(sub, cls.config_types):
                return sub
        raise ConfigError(
            f"{folder}/config.json: model_type {config.model_type!r} cannot be loaded as "
            f"{cls.__name__}"
        )

    @classmethod
    def select_weights(cls, flat):
        """The tensors this class reads: its prefix's subtree when the file has that prefix."""
        if cls.prefix and any(k.startswith(cls.prefix + ".") for k in flat):
            n = len(cls.prefix) + 1
            return {k[n:]: v for k, v in flat.items() if k.startswith(cls.prefix + ".")}
        return flat

    @classmethod
    def optional_keys(cls, config):
        return ()

    def num_parameters(self):
        return sum(a.size for a in _leaves(self.params))


def _leaves(node):
    if isinstance(node, np.ndarray):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _leaves(v)
    else:
        for v in node:
            yield from _leaves(v)


def _params_dtype(params):
    """The compute dtype: the first float32 / float64 leaf's (16-bit and int8 weights kept as
    stored are widened to float32 inside each product)."""
    for a in _leaves(params):
        if a.dtype in (np.float32, np.float64):
            return a.dtype
    return np.dtype(np.float32)


# ----------------------------------------------------------------------------- input checks


def as_pixel_values(pixel_values, dtype, name="pixel_values", patch_size=None):
    """Check a (B, 3, H, W) float array and cast it to the model's compute dtype; with patch_size,
    refuse an image smaller than one patch (torch's convolution would refuse it)."""
    x = np.asarray(pixel_values)
    if x.dtype.kind not in "fiu":
        raise InputError(f"{name} must be a numeric array, got dtype {x.dtype}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise InputError(
            f"{name} must have shape (batch, 3, height, width), got {tuple(x.shape)}"
            + (
                "; did you pass channels-last (B, H, W, 3)?"
                if x.ndim == 4 and x.shape[-1] == 3
                else ""
            )
        )
    if x.shape[0] == 0:
        raise InputError(f"{name} has an empty batch")
    x = x.astype(dtype, copy=False)
    if not np.isfinite(x).all():  # transformers would run and return ids computed from nan
        bad = np.argwhere(~np.isfinite(x))[0].tolist()
        raise InputError(f"{name} holds nan or inf (first at index {bad}, value {x[tuple(bad)]})")
    if patch_size is not None and min(x.shape[2:]) < patch_size:
        raise InputError(
            f"{name} of {x.shape[2]}x{x.shape[3]} are smaller than one {patch_size}-pixel patch"
        )
    return x


def token_ids(input_ids, vocab_size, name="input_ids"):
    """A (B, T) integer array of ids in [0, V), copied (callers' arrays are never written)."""
    ids = np.array(input_ids)
    if ids.dtype.kind not in "iu" or ids.ndim != 2:
        raise InputError(
            f"{name} must be a 2-D integer array (batch, tokens), got {ids.dtype} {ids.shape}"
        )
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise InputError(
            f"{name} holds ids outside the vocabulary [0, {vocab_size}): {ids.min()}..{ids.max()}"
        )
    return ids.astype(np.int64)


def mask_like(attention_mask, like, name="attention_mask", like_name="input_ids"):
    """attention_mask as int64, checked to have the shape of `like` (an array or a shape)."""
    if attention_mask is None:
        return None
    mask = np.asarray(attention_mask)
    shape = tuple(getattr(like, "shape", like))
    if mask.shape != shape:
        raise InputError(f"{name} has shape {mask.shape}, {like_name} has {shape}")
    return mask.astype(np.int64)


def features(states, width, dtype, name="encoder_hidden_states", dims="batch, tokens, "):
    """(B, N, width) features given by the caller, cast to the model's dtype; dims names the
    axes in the message."""
    x = np.asarray(states).astype(dtype, copy=False)
    if x.ndim != 3 or x.shape[2] != width:
        raise InputError(f"{name} must be ({dims}{width}), got {x.shape}")
    return x


def paired_batch(n_text, n_image, what="texts"):
    """The batch of texts read against images through cross-attention. transformers passes the
    two batches to torch as they are, and torch broadcasts them: equal, or either one is 1 (one
    image for every text, one text for every image). Anything else is refused."""
    if n_text == n_image or 1 in (n_text, n_image):
        return max(n_text, n_image)
    raise InputError(
        f"{n_text} {what} for {n_image} images: pass one per image, one image for all of them, "
        f"or one for all images"
    )


def generate_pairing(n_prompts, n_images, generate_kwargs, images="images"):
    """generate's rule for prompt and image batches: transformers copies both for beams and
    returned sequences, after which torch can no longer broadcast them, so one image serves
    several prompts only when nothing is copied (greedy, or sampling with one sequence each);
    otherwise there is one prompt per image."""
    copies = max(
        generate_kwargs.get("num_beams") or 1, generate_kwargs.get("num_return_sequences") or 1
    )
    if n_prompts != n_images and not (n_images == 1 and copies == 1):
        raise InputError(
            f"input_ids has {n_prompts} prompts for {n_images} {images}: pass one per image "
            "(one image serves several prompts only in greedy or sampled generation with "
            "num_return_sequences=1, as in transformers)"
        )


def require(what, **arguments):
    """Refuse a call that leaves out an argument it needs: '{what} needs a and b'."""
    if any(v is None for v in arguments.values()):
        raise InputError(f"{what} needs {' and '.join(arguments)}")


def labels_loss(labels, logits, loss_fn, pairing, logits_name="the logits"):
    """loss_fn(logits, labels) once labels are checked to match the logits' (B, T).

    pairing says how the batch came about, for the message ('texts x tokens, after ...')."""
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.shape != logits.shape[:2]:
        raise InputError(
            f"labels have shape {labels.shape}, {logits_name} {logits.shape[:2]} ({pairing})"
        )
    return loss_fn(logits, labels)


# ----------------------------------------------------------------------------- outputs


def output_flags(cfg, output_hidden_states, output_attentions):
    """(want hidden states, want attentions): the call's choice, else the config's."""
    want_h = cfg.output_hidden_states if output_hidden_states is None else output_hidden_states
    want_a = cfg.output_attentions if output_attentions is None else output_attentions
    return want_h, want_a


def tower_fields(last, hidden_states, attentions, want_h, want_a):
    """last_hidden_state, and the hidden states and attentions as asked for: the fields that
    transformers' outputs copy from the vision tower."""
    return {
        "last_hidden_state": last,
        "hidden_states": select_hidden_states(hidden_states, want_h),
        "attentions": tuple(attentions) if want_a else None,
    }


def tower_output(last, pooled, hidden_states, attentions, want_h, want_a):
    """A tower's BaseModelOutputWithPooling, its hidden states and attentions as asked for."""
    fields = tower_fields(last, hidden_states, attentions, want_h, want_a)
    return BaseModelOutputWithPooling(pooler_output=pooled, **fields)


def select_hidden_states(hidden_states, output_hidden_states):
    """transformers 5.x's output_hidden_states: False/None -> None, True -> all, an int or a list
    of ints (negative allowed) -> a tuple of the same length with None where not selected."""
    if output_hidden_states is None or output_hidden_states is False:
        return None
    if output_hidden_states is True:
        return tuple(hidden_states)
    chosen = (
        [output_hidden_states]
        if isinstance(output_hidden_states, int)
        else list(output_hidden_states)
    )
    n = len(hidden_states)
    keep = {i % n for i in chosen if -n <= i < n}  # out-of-range indices select nothing
    return tuple(h if i in keep else None for i, h in enumerate(hidden_states))


def submodel(cls, config, params, dtype, name_or_path=None):
    """A cls object over part of another model's parameters (BLIP-2's language model): no
    checks and no walk over the weights (a walk would count as reading every tensor in the
    tests' KeyTracker)."""
    model = cls.__new__(cls)
    model.config, model.params, model.name_or_path, model.dtype = (
        config,
        params,
        name_or_path,
        dtype,
    )
    return model
