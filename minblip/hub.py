"""Resolve a model argument to a local folder: a path as it is, a hub id through the HF cache.

Hub ids ("Salesforce/blip-image-captioning-base") resolve through the standard Hugging Face cache
(HF_HOME / HF_HUB_CACHE honoured). With HF_HUB_OFFLINE=1, or when the hub is out of reach, only
what is already cached is used, and an id that is not cached gets an error saying how to get it.
"""

import os
import pathlib

from .errors import CheckpointError

# what a minblip model can use from a repository (never *.bin pickles, never TF/Flax weights)
ALLOW = ["*.json", "*.safetensors", "*.txt", "*.model"]


def _offline():
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve(path_or_id, revision=None, cache_dir=None, local_files_only=False):
    """A local folder for path_or_id: the folder itself, or a cached snapshot of a hub repo."""
    p = pathlib.Path(os.fspath(path_or_id)).expanduser()
    if p.is_dir():
        return p
    s = str(path_or_id)
    looks_like_id = s.count("/") <= 1 and not s.startswith((".", "/", "~")) and not p.suffix
    if not looks_like_id or p.exists():
        raise CheckpointError(f"{s}: checkpoint folder not found")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        raise CheckpointError(f"{s}: not a folder, and huggingface_hub is not installed") from None
    offline = local_files_only or _offline()
    try:
        return pathlib.Path(
            snapshot_download(
                s,
                revision=revision,
                cache_dir=cache_dir,
                allow_patterns=ALLOW,
                local_files_only=True,
            )
        )
    except HFValidationError:
        raise CheckpointError(f"{s}: neither a folder nor a valid hub id") from None
    except Exception as cached_err:  # not in the cache (or an incomplete snapshot)
        if offline:
            raise CheckpointError(
                _how_to_get(s, "offline (HF_HUB_OFFLINE=1) and not in the cache", cache_dir)
            ) from None
        try:
            return pathlib.Path(
                snapshot_download(s, revision=revision, cache_dir=cache_dir, allow_patterns=ALLOW)
            )
        except Exception as e:
            raise CheckpointError(
                _how_to_get(s, f"not cached and the download failed: {e}", cache_dir)
            ) from cached_err


def _how_to_get(repo, why, cache_dir=None):
    """The error for a hub id that is not cached: where minblip looked, for which files, and the
    command that fetches them. huggingface_hub >= 1.0 ships the `hf` command (`huggingface-cli`
    is gone); its --include takes one pattern per flag."""
    if cache_dir is None:
        from huggingface_hub import constants

        cache_dir = constants.HF_HUB_CACHE
    include = " ".join(f"--include '{pattern}'" for pattern in ALLOW)
    return (
        f"{repo}: {why}. minblip looked in the Hugging Face cache {cache_dir} for a snapshot of "
        f"{repo} with the files {', '.join(ALLOW)} (config.json and the safetensors weights at "
        "least). Get them on a machine with internet access with\n"
        f"    hf download {repo} {include}\n"
        "and copy the Hugging Face cache (~/.cache/huggingface or $HF_HOME) here, or pass the "
        "path of a local checkpoint folder instead of the hub id."
    )
