"""The minblip command line.

minblip caption IMAGE_OR_FOLDER...   caption photos (BLIP captioning checkpoint)
minblip ask IMAGE QUESTION           answer a question about a photo (BLIP VQA checkpoint)
minblip match IMAGE TEXT...          rank texts by how well they describe a photo (BLIP ITM)
minblip info MODEL                   what a checkpoint is: type, config in brief, parameters, size
"""

import argparse
import json
import sys
from collections import Counter

from .errors import InputError, MinblipError

DEFAULT_MODEL = "Salesforce/blip-image-captioning-base"


def cmd_caption(args):
    """Caption every image; report unreadable ones and carry on; exit 1 if any failed."""
    from .pipeline import caption_one, find_images, load_captioner

    paths = find_images(args.images)
    if not paths:
        raise InputError("no images found in " + ", ".join(args.images))
    model, processor = load_captioner(args.model)
    gen = {"num_beams": args.num_beams}
    if args.max_new_tokens is not None:
        gen["max_new_tokens"] = args.max_new_tokens
    bar = _Progress(len(paths)) if len(paths) > 1 and sys.stderr.isatty() else None
    failed = 0
    for path in paths:
        try:
            text, ids, mean_logprob = caption_one(str(path), model, processor, args.prompt, **gen)
        except MinblipError as e:
            failed += 1
            _clear(bar)
            print(f"minblip: skipped {path}: {e}", file=sys.stderr)
        else:
            _clear(bar)
            if args.json:
                print(
                    json.dumps(
                        {
                            "path": str(path),
                            "caption": text,
                            "token_ids": ids,
                            "mean_logprob": mean_logprob,
                        }
                    ),
                    flush=True,
                )
            else:
                print(f"{path}: {text}" if len(paths) > 1 else text, flush=True)
        if bar:
            bar.step()
    _clear(bar)
    if failed:
        print(f"minblip: {failed} of {len(paths)} image(s) could not be captioned", file=sys.stderr)
    return 1 if failed else 0


def cmd_ask(args):
    from .pipeline import answer

    text, ids = answer(args.image, args.question, args.model, num_beams=args.num_beams)
    if args.json:
        print(
            json.dumps(
                {"path": args.image, "question": args.question, "answer": text, "token_ids": ids}
            )
        )
    else:
        print(text)
    return 0


def cmd_match(args):
    from .pipeline import match

    rows = match(args.image, args.texts, args.model)
    for r in rows:
        if args.json:
            print(json.dumps({"path": args.image, **r}))
        else:
            print(f"{r['itm_probability']:.4f}  itc {r['itc_cosine']:+.4f}  {r['text']}")
    return 0


class _Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal)."""

    def __init__(self, total):
        self.total, self.done = total, 0
        self.draw()

    def step(self):
        self.done += 1
        self.draw()

    def draw(self):
        filled = 30 * self.done // self.total
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total}")
        sys.stderr.flush()


def _clear(bar):
    if bar:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def cmd_info(args):
    """Read config.json and the safetensors headers only (no weights are loaded)."""
    from .config import load_config
    from .hub import resolve
    from .weights import read_header, weight_files

    folder = resolve(args.model)
    cfg = load_config(folder)
    files, _ = weight_files(folder)
    params, dtypes, disk = Counter(), Counter(), 0
    for path in files:
        header, _, size = read_header(path)
        disk += size
        for key, e in header.items():
            n = 1
            for s in e["shape"]:
                n *= s
            params[_component(key)] += n
            dtypes[e["dtype"]] += n
    info = {
        "model": str(args.model),
        "folder": str(folder),
        "model_type": cfg.model_type,
        "architectures": getattr(cfg, "architectures", None),
        "config": _brief(cfg),
        "parameters": dict(params),
        "total_parameters": sum(params.values()),
        "dtype": dict(dtypes),
        "files": [p.name for p in files],
        "size_on_disk_bytes": disk,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['model']}  ({folder})")
    print(
        f"  model_type     {cfg.model_type}"
        + (f"  {cfg.architectures}" if info["architectures"] else "")
    )
    for tower, brief in info["config"].items():
        print(f"  {tower:<14} " + ", ".join(f"{k}={v}" for k, v in brief.items()))
    print("  parameters")
    for comp, n in params.items():
        print(f"    {comp:<24} {n:>14,}")
    print(f"    {'total':<24} {info['total_parameters']:>14,}")
    print("  dtype          " + ", ".join(f"{d} ({n:,} values)" for d, n in dtypes.items()))
    print(f"  on disk        {disk / 2**20:,.1f} MiB in {len(files)} file(s)")
    return 0


def _component(key):
    """The top-level module a tensor belongs to (text_decoder.bert.*, text_decoder.cls.* apart)."""
    parts = key.split(".")
    depth = 2 if parts[0] in ("text_decoder", "language_model") and len(parts) > 2 else 1
    return ".".join(parts[:depth])


_BRIEF_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "image_size",
    "patch_size",
    "vocab_size",
    "max_position_embeddings",
    "layer_norm_eps",
)


def _brief(cfg):
    towers = {}
    for name in ("vision_config", "text_config", "qformer_config"):
        sub = getattr(cfg, name, None)
        if sub is not None:
            towers[name.replace("_config", "")] = {
                f: getattr(sub, f) for f in _BRIEF_FIELDS if hasattr(sub, f)
            }
    if not towers:
        towers[cfg.model_type] = {f: getattr(cfg, f) for f in _BRIEF_FIELDS if hasattr(cfg, f)}
    return towers


def _model_option(p, default, note=""):
    p.add_argument(
        "--model", default=default, help=f"checkpoint folder or hub id (default: {default}{note})"
    )


def _json_option(p, what, func):
    """--json (what each JSON line holds), and the command's function."""
    p.add_argument("--json", action="store_true", help=what)
    p.set_defaults(func=func)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="minblip",
        description="BLIP and BLIP-2 in NumPy: caption, ask and match images on a CPU, no torch.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "caption",
        help="caption images with a BLIP captioning model",
        description="Caption images, or every image in the given folders (walked recursively). "
        "An unreadable image is reported on stderr and skipped; the exit status is 1 if any "
        "image failed.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files or folders")
    _model_option(p, DEFAULT_MODEL, ", from the Hugging Face cache")
    p.add_argument("--prompt", default=None, help='text the caption continues, e.g. "a picture of"')
    p.add_argument(
        "--num-beams",
        type=int,
        default=1,
        metavar="N",
        help="beam search width (default 1: greedy)",
    )
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        metavar="N",
        help="longest caption in tokens (default 20, as transformers)",
    )
    _json_option(
        p, "one JSON object per image: path, caption, token_ids, mean_logprob", cmd_caption
    )

    from .pipeline import DEFAULT_ITM_MODEL, DEFAULT_VQA_MODEL

    p = sub.add_parser(
        "ask",
        help="answer a question about an image (visual question answering)",
        description="Answer a question about an image with a BLIP VQA model.",
    )
    p.add_argument("image", metavar="IMAGE", help="image file")
    p.add_argument("question", metavar="QUESTION", help='e.g. "how many dogs are there?"')
    _model_option(p, DEFAULT_VQA_MODEL)
    p.add_argument(
        "--num-beams", type=int, default=1, metavar="N", help="beam search width (default 1)"
    )
    _json_option(p, "one JSON object: path, question, answer, token_ids", cmd_ask)

    p = sub.add_parser(
        "match",
        help="rank texts by how well they match an image (ITM and ITC)",
        description="Score each text against an image with a BLIP retrieval model: the "
        "image-text-matching probability (ITM head) and the contrastive cosine "
        "similarity (ITC), ranked by ITM probability, best first.",
    )
    p.add_argument("image", metavar="IMAGE", help="image file")
    p.add_argument("texts", nargs="+", metavar="TEXT", help="candidate descriptions")
    _model_option(p, DEFAULT_ITM_MODEL)
    _json_option(p, "one JSON object per text: text, itm_probability, itc_cosine", cmd_match)

    p = sub.add_parser(
        "info",
        help="describe a checkpoint: type, config, parameters, dtype, size",
        description="Describe a checkpoint folder or cached hub id without loading "
        "its weights: model type, config in brief, parameters per component, "
        "dtype and size on disk.",
    )
    p.add_argument("model", metavar="MODEL", help="checkpoint folder or hub id")
    _json_option(p, "print one JSON object", cmd_info)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MinblipError as e:
        print(f"minblip: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
