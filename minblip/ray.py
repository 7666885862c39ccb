"""Ray Data, when one machine is not enough (issue 11, item 5; docs/scale-out.md).

    import ray
    from minblip.ray import Captioner, actor_options

    ds = ray.data.read_binary_files("s3://bucket/photos", include_paths=True)
    ds = ds.map_batches(
        Captioner,
        fn_constructor_kwargs={"model": "/models/blip-base", "max_new_tokens": 20},
        compute=ray.data.ActorPoolStrategy(size=4),  # actors: each loads the model once
        batch_size=8,  # images per generate call
        **actor_options(threads=2),  # CPUs and BLAS / Numba threads per actor
    )
    ds.write_parquet("s3://bucket/captions")

Ray is the engine: it reads the files, runs a pool of actors, streams batches through them and
writes the result. minblip provides the callable classes the actors run (Captioner; Matcher for
image-text scores): the model is loaded once in __init__, each __call__ takes a batch (a dict
of columns) and returns one. Rows in: `bytes` + `path` (read_binary_files(include_paths=True):
decoded here exactly as `minblip caption` decodes a file, so the captions are the CLI's) or
`image` + `path` (read_images: decoded by Ray; use mode="RGB"). Rows out: flat columns (one
schema for every block, so Parquet, JSON and CSV take them); a bad image is an error row, never
a failed job.

This module does not import ray (the classes need NumPy alone, so they run and are tested
without a cluster too); `pip install 'minblip[ray]'` installs Ray Data.
"""

import numpy as np

from .errors import InputError, MinblipError

THREAD_VARIABLES = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)


def actor_options(threads=1):
    """map_batches keywords that give each actor `threads` CPUs and size its BLAS and Numba
    thread pools to match: num_cpus (Ray's scheduling: actors per node = the node's CPUs //
    threads) and a runtime_env whose environment variables are set before the actor's process
    imports NumPy (the pools are sized when the libraries load, too late in __init__)."""
    if not isinstance(threads, int) or threads < 1:
        raise InputError(f"actor_options: threads must be an int >= 1, got {threads!r}")
    return {
        "num_cpus": threads,
        "runtime_env": {"env_vars": dict.fromkeys(THREAD_VARIABLES, str(threads))},
    }


def _set_threads(threads):
    """What can still change in a process where NumPy is loaded: Numba's thread count (up to
    the pool it started with). OpenBLAS's pool comes from actor_options' environment."""
    if threads is None:
        return
    import numba

    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))


def _batch_images(batch):
    """A batch's rows as (path, PIL image or (H, W, C) array, or the ImageError of its bytes)."""
    from .preprocess import decode_image

    if "bytes" in batch:
        column, decode = batch["bytes"], True
    elif "image" in batch:
        column, decode = batch["image"], False
    else:
        raise InputError(
            f"a batch with columns {sorted(batch)}: expected 'bytes' (read_binary_files) or "
            "'image' (read_images), with 'path' (include_paths=True)"
        )
    paths = batch["path"] if "path" in batch else [f"row {i}" for i in range(len(column))]
    rows = []
    for path, value in zip(paths, column):
        path = str(path)
        if not decode:
            rows.append((path, np.asarray(value)))
            continue
        try:
            rows.append((path, decode_image(value, path)))
        except MinblipError as e:
            rows.append((path, e))
    return rows


class Captioner:
    """Captions for ray.data.Dataset.map_batches (one per actor of the pool).

    model: a checkpoint folder or cached hub id, BLIP captioning or BLIP-2 (loaded once, in
    __init__); prompt: the text captions continue; threads: Numba threads of this actor (set
    the BLAS ones with actor_options); generate_kwargs: transformers' generate settings
    (max_new_tokens, num_beams, ...). Each batch goes through one generate call, so
    map_batches' batch_size is the generate batch; captions equal one-at-a-time ones.

    Returns columns: path, caption, mean_logprob (of the new tokens), num_new_tokens and error
    ("" when the row was captioned; a bad image gets its message, caption "", mean_logprob NaN,
    0 tokens). Flat columns only, so every batch has one schema (Parquet, JSON, CSV).
    """

    def __init__(self, model, prompt=None, threads=None, dtype="float32", **generate_kwargs):
        from .pipeline import load_captioner, prompt_length

        _set_threads(threads)
        self.model, self.processor = load_captioner(str(model), dtype)
        self.prompt, self.generate_kwargs = prompt, generate_kwargs
        # the ids generate's row starts with (the prompt's): the same for every image
        side = self.model.config.vision_config.image_size
        probe = self.processor(images=np.zeros((side, side, 3), np.uint8), text=prompt)
        self.n_prompt = prompt_length(self.model, probe, prompt)

    def __call__(self, batch):
        from .caption_files import caption_batch

        rows = _batch_images(batch)
        good = [(i, image) for i, (_, image) in enumerate(rows) if not isinstance(image, Exception)]
        made = {}
        if good:
            try:
                results = caption_batch(
                    [image for _, image in good],
                    self.model,
                    self.processor,
                    self.prompt,
                    **self.generate_kwargs,
                )
                made = dict(zip([i for i, _ in good], results))
            except MinblipError:  # one image the processor refuses: name it alone
                for i, image in good:
                    made[i] = self._one(image)
        out = {k: [] for k in ("caption", "mean_logprob", "num_new_tokens", "error")}
        for i, (_, image) in enumerate(rows):
            result = made.get(i, image)
            if isinstance(result, Exception):
                out["caption"].append("")
                out["mean_logprob"].append(float("nan"))
                out["num_new_tokens"].append(0)
                out["error"].append(str(result))
            else:
                text, ids, mean_logprob = result
                out["caption"].append(text)
                out["mean_logprob"].append(mean_logprob)
                out["num_new_tokens"].append(len(ids) - self.n_prompt)
                out["error"].append("")
        return {
            "path": np.array([path for path, _ in rows], dtype=object),
            "caption": np.array(out["caption"], dtype=object),
            "mean_logprob": np.array(out["mean_logprob"], np.float64),
            "num_new_tokens": np.array(out["num_new_tokens"], np.int64),
            "error": np.array(out["error"], dtype=object),
        }

    def _one(self, image):
        from .caption_files import caption_batch

        try:
            return caption_batch(
                [image], self.model, self.processor, self.prompt, **self.generate_kwargs
            )[0]
        except MinblipError as e:
            return e


class Matcher:
    """Image-text scores for ray.data.Dataset.map_batches: each image against every text given
    here, with a BLIP retrieval checkpoint (BlipForImageTextRetrieval, loaded once in
    __init__), as `minblip match` and minblip.match score them.

    Returns one row per image and text, in the texts' order: path, text, itm_probability (the
    ITM head's probability of "match"), itc_cosine (the contrastive cosine) and error (""; or
    the message of an image that could not be decoded, with NaN scores).
    """

    def __init__(self, model, texts, threads=None):
        from .pipeline import match

        if isinstance(texts, str) or not texts:
            raise InputError(f"Matcher: texts must be a non-empty list of strings, got {texts!r}")
        _set_threads(threads)
        self.model, self.texts = str(model), list(dict.fromkeys(texts))
        # load and check the checkpoint now (an actor that cannot score fails at its start);
        # pipeline keeps the model in its per-process cache for every batch after
        match(np.zeros((8, 8, 3), np.uint8), self.texts[:1], self.model)

    def __call__(self, batch):
        from .pipeline import match

        out = {k: [] for k in ("path", "text", "itm_probability", "itc_cosine", "error")}
        for path, image in _batch_images(batch):
            scores, error = {}, ""
            if isinstance(image, Exception):
                error = str(image)
            else:
                try:
                    scores = {r["text"]: r for r in match(image, self.texts, self.model)}
                except MinblipError as e:
                    error = str(e)
            for text in self.texts:
                row = scores.get(text, {})
                out["path"].append(path)
                out["text"].append(text)
                out["itm_probability"].append(row.get("itm_probability", float("nan")))
                out["itc_cosine"].append(row.get("itc_cosine", float("nan")))
                out["error"].append(error)
        return {
            "path": np.array(out["path"], dtype=object),
            "text": np.array(out["text"], dtype=object),
            "itm_probability": np.array(out["itm_probability"], np.float64),
            "itc_cosine": np.array(out["itc_cosine"], np.float64),
            "error": np.array(out["error"], dtype=object),
        }
