"""Matching and searching folders of images with a retrieval checkpoint (issue 11).

minblip match photos --texts texts.txt                 # ITM + ITC per (image, text)
minblip index photos -o photos.npz                     # ITC image embeddings, once
minblip search photos.npz "a dog on a beach" --top 5   # text queries from the cache
minblip search photos.npz "a dog on a beach" --rerank  # ... re-scored by ITM (reads the images)

Both retrieval classes work: BLIP (BlipForImageTextRetrieval, blip-itm-*-coco) and BLIP-2
(Blip2ForImageTextRetrieval, blip2-itm-vit-g). The embeddings are exactly the ones their ITC
branch (use_itm_head=False / use_image_text_matching_head=False) compares:

- BLIP: normalize(vision_proj(vision_model(pixels)[:, 0])) per image (E,), normalize(text_proj(
  text_encoder(ids)[:, 0])) per text; the similarity is their dot product (the cosine).
- BLIP-2: every learned query read through the Q-Former, projected and normalised: (Q, E) per
  image; the text's [CLS] output projected and normalised; the similarity is the best cosine over
  the image's Q queries (transformers' `logits_per_image.max(dim=1)`), so an index keeps all Q.

An index file (.npz, written atomically) holds one row per image with its absolute path, size
and mtime (ns), and the model's identity: the checkpoint folder and the sha256 of its
config.json. `minblip index` again embeds only new or changed files (size or mtime differ) and
drops removed ones; `minblip search` refuses an index built by another model, by name.
"""

import functools
import hashlib
import io
import json
import os
import pathlib
import sys
import zipfile

import numpy as np

from .errors import ConfigError, InputError, MinblipError
from .ops import linear, normalize

INDEX_FORMAT = "minblip-index/1"
RETRIEVAL_CLASSES = ("BlipForImageTextRetrieval", "Blip2ForImageTextRetrieval")


class Retriever:
    """A BLIP or BLIP-2 retrieval checkpoint and its processor, loaded once (load_retriever).

    kind is "blip" or "blip-2"; identity is what an index records of the model (its folder and
    the sha256 of config.json)."""

    def __init__(self, model, dtype="float32"):
        from .pipeline import checkpoint_kind

        folder, model_type, architectures = checkpoint_kind(str(model))
        wanted = {"blip": RETRIEVAL_CLASSES[0], "blip-2": RETRIEVAL_CLASSES[1]}.get(model_type)
        if wanted is None or (architectures and wanted not in architectures):
            kind = ", ".join(architectures) or f"model_type {model_type!r}"
            raise ConfigError(
                f"{folder}: a {kind} checkpoint has no image-text matching or contrastive heads; "
                "match, index and search take a retrieval checkpoint: BlipForImageTextRetrieval "
                "(Salesforce/blip-itm-base-coco, blip-itm-large-coco) or "
                "Blip2ForImageTextRetrieval (Salesforce/blip2-itm-vit-g)"
            )
        self.kind, self.folder = model_type, folder
        self.identity = {
            "model": str(model),
            "folder": str(pathlib.Path(folder).resolve()),
            "config_sha256": hashlib.sha256((folder / "config.json").read_bytes()).hexdigest(),
        }
        if model_type == "blip":
            from .pipeline import load_task_model

            self.model, self.processor = load_task_model(RETRIEVAL_CLASSES[0], str(model), dtype)
        else:
            from .blip2 import Blip2ForImageTextRetrieval
            from .pipeline import sized_processor
            from .processing import Blip2Processor

            self.model = Blip2ForImageTextRetrieval.from_pretrained(folder, dtype=dtype)
            processor = Blip2Processor.from_pretrained(folder)
            if self.model.config.image_token_index is None:
                processor.num_query_tokens = None  # a model that strips no placeholders gets none
            elif processor.num_query_tokens is None:
                processor.num_query_tokens = self.model.config.num_query_tokens
            self.processor = sized_processor(processor, self.model)

    def pixels(self, image):
        """One image (path, PIL image or array) -> pixel_values (1, 3, H, W)."""
        return self.processor(images=str(image) if isinstance(image, pathlib.Path) else image)[
            "pixel_values"
        ]

    def image_embeddings(self, pixel_values):
        """ITC image embeddings. Shapes: pixel_values (B, 3, H, W) -> BLIP (B, E), BLIP-2
        (B, Q, E); each row (each query) of unit length."""
        m = self.model
        if self.kind == "blip":
            image = m.vision_outputs(pixel_values)[0]  # (B, N, Dv)
            return normalize(linear(image[:, 0], m.params["vision_proj"]))
        read = m._queries_read(m._image(pixel_values)[0])  # (B, Q, Dq)
        return normalize(linear(read, m.params["vision_projection"]))

    def text_embeddings(self, texts):
        """ITC text embeddings of a list of texts (padded together). Shapes: -> (T, E)."""
        m = self.model
        enc = self.processor(text=list(texts), padding=True)  # no images: no placeholders
        ids, mask = enc["input_ids"], enc["attention_mask"]
        if self.kind == "blip":
            h = m._text("text_encoder", ids, mask)["last_hidden_state"]
            return normalize(linear(h[:, 0], m.params["text_proj"]))
        h = m._text_only(*m._ids(ids, mask, False))  # (T, L, Dq)
        return normalize(linear(h[:, 0], m.params["text_projection"]))

    def itm_probability(self, image, texts):
        """The ITM head's probability of "match" (softmax over its 2 logits, column 1) of each
        text read against one image; the vision tower runs once. Shapes: -> (T,)."""
        m = self.model
        enc = self.processor(
            images=str(image) if isinstance(image, pathlib.Path) else image,
            text=list(texts),
            padding=True,
        )
        ids, mask, pixels = enc["input_ids"], enc["attention_mask"], enc["pixel_values"]
        if self.kind == "blip":  # one image against every text: the batches broadcast
            logits = m(
                input_ids=ids, attention_mask=mask, pixel_values=pixels, use_itm_head=True
            ).itm_score
        else:  # Blip2ForImageTextRetrieval's ITM branch, the image's tower output repeated
            image = np.repeat(m._image(pixels)[0], ids.shape[0], axis=0)
            ids, mask = m._itm_text(ids, mask, image.shape[0])
            h = m._queries_and_text_read(image, ids, mask)  # (T, Q+L, Dq)
            Q = m.config.num_query_tokens
            logits = linear(h[:, :Q], m.params["itm_head"]).mean(axis=1)  # (T, 2)
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return e[:, 1] / e.sum(-1)


@functools.lru_cache(maxsize=2)
def load_retriever(model, dtype="float32"):
    return Retriever(model, dtype)


def itc_scores(image_embeds, text_embed):
    """Cosine of each image with one text; BLIP-2's best over the image's queries.
    Shapes: image_embeds (N, E) or (N, Q, E), text_embed (E,) -> (N,)."""
    s = image_embeds @ text_embed
    return s.max(axis=1) if s.ndim == 2 else s


# ---------------------------------------------------------------------------------- the index


class Index:
    """What an index file holds: paths (absolute), sizes, mtimes_ns, embeddings, identity."""

    def __init__(self, paths, sizes, mtimes_ns, embeddings, identity):
        self.paths, self.sizes, self.mtimes_ns = list(paths), list(sizes), list(mtimes_ns)
        self.embeddings, self.identity = embeddings, identity

    def save(self, path):
        """Written atomically: a temporary file beside it, fsync, os.replace."""
        buf = io.BytesIO()
        np.savez(
            buf,
            format=np.array(INDEX_FORMAT),
            identity=np.array(json.dumps(self.identity, sort_keys=True)),
            paths=np.array(self.paths, dtype=str).reshape(-1),
            sizes=np.array(self.sizes, dtype=np.int64),
            mtimes_ns=np.array(self.mtimes_ns, dtype=np.int64),
            embeddings=self.embeddings,
        )
        from .caption_files import write_atomic

        write_atomic(path, buf.getvalue())


def load_index(path):
    """An index file written by `minblip index`; anything else is refused by name."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such index file (make one with `minblip index FOLDER -o`)")
    how = "not a minblip index (make one with `minblip index FOLDER -o FILE`)"
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"{path}: {how}: {e}") from None
    keys = ("format", "identity", "paths", "sizes", "mtimes_ns", "embeddings")
    if any(k not in data for k in keys) or str(data["format"]) != INDEX_FORMAT:
        raise InputError(f"{path}: {how}: expected the entries {', '.join(keys)} ({INDEX_FORMAT})")
    n = len(data["paths"])
    if not (len(data["sizes"]) == len(data["mtimes_ns"]) == len(data["embeddings"]) == n):
        raise InputError(f"{path}: the index's paths, sizes, mtimes and embeddings disagree")
    try:
        identity = json.loads(str(data["identity"]))
    except json.JSONDecodeError:
        raise InputError(f"{path}: {how}: its identity entry is not JSON") from None
    return Index(
        [str(p) for p in data["paths"]],
        data["sizes"].tolist(),
        data["mtimes_ns"].tolist(),
        data["embeddings"],
        identity,
    )


def same_model(identity, retriever, index_path):
    """Refuse an index made by another model than the retriever's (folder or config differ)."""
    mine = retriever.identity
    if (identity.get("folder"), identity.get("config_sha256")) != (
        mine["folder"],
        mine["config_sha256"],
    ):
        raise InputError(
            f"{index_path} was built with {identity.get('model')} ({identity.get('folder')}, "
            f"config.json sha256 {str(identity.get('config_sha256'))[:12]}...), not with "
            f"{mine['model']} ({mine['folder']}, {mine['config_sha256'][:12]}...): search with "
            "the index's --model, or build a new index with this one"
        )


def _stat(path):
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def build_index(paths, retriever, previous=None, batch_size=8):
    """(Index, counts) for the image paths: rows of previous (an Index of the same model) whose
    file has the same size and mtime are kept, every other image is embedded, images no longer
    among paths are dropped. counts: embedded, kept, removed, failed. A bad image is named on
    stderr and left out. Ctrl-C returns what was done so far (counts["interrupted"])."""
    old = {}
    if previous is not None:
        old = {p: i for i, p in enumerate(previous.paths)}
    rows, todo, counts = {}, [], {"embedded": 0, "kept": 0, "removed": 0, "failed": 0}
    for p in paths:
        key = os.path.abspath(p)
        try:
            stat = _stat(p)
        except OSError as e:
            print(f"minblip: skipped {p}: {e.strerror or e}", file=sys.stderr)
            counts["failed"] += 1
            continue
        i = old.get(key)
        if i is not None and (previous.sizes[i], previous.mtimes_ns[i]) == stat:
            rows[key] = (*stat, previous.embeddings[i])
            counts["kept"] += 1
        else:
            todo.append((p, key, stat))
    counts["removed"] = len(set(old) - {os.path.abspath(p) for p in paths})
    try:
        for start in range(0, len(todo), batch_size):
            good = []
            for p, key, stat in todo[start : start + batch_size]:
                try:
                    good.append((key, stat, retriever.pixels(p)))
                except MinblipError as e:
                    print(f"minblip: skipped {p}: {e}", file=sys.stderr)
                    counts["failed"] += 1
            if good:
                embeds = retriever.image_embeddings(np.concatenate([g[2] for g in good]))
                for (key, stat, _), e in zip(good, embeds):
                    rows[key] = (*stat, e)
                    counts["embedded"] += 1
    except KeyboardInterrupt:
        counts["interrupted"] = True
    keys = sorted(rows)
    if keys:
        embeddings = np.stack([rows[k][2] for k in keys]).astype(np.float32)
    else:
        cfg = retriever.model.config
        shape = (0, cfg.image_text_hidden_size)
        if retriever.kind == "blip-2":
            shape = (0, cfg.num_query_tokens, cfg.image_text_hidden_size)
        embeddings = np.zeros(shape, np.float32)
    index = Index(
        keys,
        [rows[k][0] for k in keys],
        [rows[k][1] for k in keys],
        embeddings,
        retriever.identity,
    )
    return index, counts


# ------------------------------------------------------------------------------- the commands


def _read_texts(args):
    """match's texts: the positional ones, then each line of --texts FILE (blank lines and
    lines starting with # skipped), each once."""
    from .caption_files import text_lines

    texts = list(args.texts or [])
    if args.texts_file:
        texts += text_lines(args.texts_file, "--texts")
    if not texts:
        raise InputError(
            "no text to match: give at least one TEXT, --text T or --texts FILE (a text a line)"
        )
    return list(dict.fromkeys(texts))


def run_match(args):
    """`minblip match FOLDER_OR_IMAGE --texts FILE`: a record per (image, text) with the ITM
    probability and the ITC similarity; a bad image is named and the rest go on (exit 1)."""
    from .caption_files import image_paths

    texts = _read_texts(args)
    retriever = load_retriever(str(args.model))
    paths = image_paths([args.image], getattr(args, "shard", None))
    text_embeds = retriever.text_embeddings(texts)  # (T, E)
    failed = 0
    for path in paths:
        try:
            pixels = retriever.pixels(path)
            itm = retriever.itm_probability(path, texts)
        except MinblipError as e:
            print(f"minblip: skipped {path}: {e}", file=sys.stderr)
            failed += 1
            continue
        image = retriever.image_embeddings(pixels)  # (1, E) or (1, Q, E)
        itc = [float(itc_scores(image, t)[0]) for t in text_embeds]
        for text, p, c in zip(texts, itm, itc):
            record = {"path": str(path), "text": text, "itm_probability": float(p)}
            record["itc_cosine"] = c
            if args.json:
                print(json.dumps(record, ensure_ascii=False), flush=True)
            else:
                print(f"{path}: {p:.4f}  itc {c:+.4f}  {text}", flush=True)
    if failed:
        print(f"minblip: {failed} of {len(paths)} image(s) failed", file=sys.stderr)
    return 1 if failed else 0


def cmd_index(args):
    """`minblip index FOLDER... -o FILE`: embed new or changed images, keep the rest."""
    from .caption_files import image_paths

    out = pathlib.Path(args.output)
    if out.is_dir() or not out.parent.is_dir():
        raise InputError(f"-o {out}: expected a file name in an existing folder")
    retriever = load_retriever(str(args.model))
    previous = None
    if out.exists():
        previous = load_index(out)
        same_model(previous.identity, retriever, out)
    paths = image_paths(args.folders)
    index, counts = build_index(paths, retriever, previous, args.batch_size)
    index.save(out)
    said = ", ".join(f"{v} {k}" for k, v in counts.items() if k != "interrupted")
    print(f"minblip: {out}: {len(index.paths)} image(s) ({said})", file=sys.stderr)
    if counts.get("interrupted"):
        print(
            "minblip: interrupted: what was embedded is saved; run the same command again to "
            "do the rest",
            file=sys.stderr,
        )
        return 130
    return 1 if counts["failed"] else 0


def cmd_search(args):
    """`minblip search INDEX QUERY...`: the top K images by ITC cosine, optionally re-ranked
    by ITM (which reads the images again)."""
    if args.top < 1:
        raise InputError(f"--top {args.top}: expected a number of results >= 1")
    index = load_index(args.index)
    retriever = load_retriever(str(args.model or index.identity.get("model")))
    same_model(index.identity, retriever, args.index)
    failed = 0
    for query in args.queries:
        scores = itc_scores(index.embeddings, retriever.text_embeddings([query])[0])
        top = np.argsort(-scores, kind="stable")[: args.top]
        hits = [{"path": index.paths[i], "itc_cosine": float(scores[i])} for i in top]
        if args.rerank:
            kept = []
            for hit in hits:
                try:
                    hit["itm_probability"] = float(
                        retriever.itm_probability(hit["path"], [query])[0]
                    )
                    kept.append(hit)
                except MinblipError as e:
                    print(f"minblip: cannot re-rank {hit['path']}: {e}", file=sys.stderr)
                    failed += 1
            hits = sorted(kept, key=lambda h: -h["itm_probability"])
        if not args.json and len(args.queries) > 1:
            print(f"# {query}")
        for rank, hit in enumerate(hits, 1):
            if args.json:
                print(json.dumps({"query": query, "rank": rank, **hit}, ensure_ascii=False))
            elif args.rerank:
                print(f"{hit['itm_probability']:.4f}  itc {hit['itc_cosine']:+.4f}  {hit['path']}")
            else:
                print(f"{hit['itc_cosine']:+.4f}  {hit['path']}")
    return 1 if failed else 0


def add_match_options(p):
    """match's folder-scale options (the positional TEXT... stay)."""
    p.add_argument(
        "--texts",
        dest="texts_file",
        metavar="FILE",
        help="a file of texts, one a line (# comments); with a folder: one record per image "
        "and text (path, text, itm_probability, itc_cosine)",
    )


def add_subcommands(sub, model_option, json_option):
    """`minblip index` and `minblip search`."""
    from .caption_files import positive_int
    from .pipeline import DEFAULT_ITM_MODEL

    p = sub.add_parser(
        "index",
        help="embed a folder of images once for text search (ITC)",
        description="Compute the contrastive (ITC) image embeddings of every image in the "
        "folders with a retrieval checkpoint (BLIP: BlipForImageTextRetrieval; BLIP-2: "
        "Blip2ForImageTextRetrieval) and store them with each file's path, size and mtime and "
        "the model's identity. Run it again on the same -o file: only new or changed images "
        "are embedded and removed ones are dropped.",
    )
    p.add_argument("folders", nargs="+", metavar="FOLDER", help="image folders or files")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the index (.npz)")
    model_option(p, DEFAULT_ITM_MODEL)
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=8,
        metavar="N",
        help="images per vision-tower call (default 8)",
    )
    p.set_defaults(func=cmd_index)

    p = sub.add_parser(
        "search",
        help="find images in an index by a text query",
        description="Rank the images of an index (minblip index) by the ITC cosine of each "
        "with the text query, best first; BLIP-2's score is the best over the image's query "
        "embeddings, as transformers computes it. --rerank re-scores the top K with the ITM "
        "head (reading those images again).",
    )
    p.add_argument("index", metavar="INDEX", help="an index file made by minblip index")
    p.add_argument("queries", nargs="+", metavar="QUERY", help='e.g. "a dog on a beach"')
    p.add_argument("--top", type=int, default=10, metavar="K", help="results per query (10)")
    p.add_argument(
        "--rerank",
        action="store_true",
        help="re-rank the top K by ITM probability (needs the image files)",
    )
    p.add_argument(
        "--model",
        default=None,
        help="the retrieval checkpoint (default: the one the index was built with; another "
        "one is refused)",
    )
    json_option(
        p,
        "one JSON object per result: query, rank, path, itc_cosine (and itm_probability)",
        cmd_search,
    )
