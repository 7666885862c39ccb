"""The minblip command line.

minblip caption IMAGE_OR_FOLDER...   caption photos (BLIP captioning or BLIP-2 checkpoint)
minblip ask IMAGE QUESTION           answer a question about a photo (BLIP VQA or BLIP-2)
minblip match IMAGE TEXT...          rank texts by how well they describe a photo (BLIP ITM)
minblip match FOLDER --texts FILE    a record per (image, text): ITM and ITC (BLIP or BLIP-2)
minblip index FOLDER -o index.npz    ITC image embeddings of a folder, re-indexed incrementally
minblip search index.npz "QUERY"     the images that best match a text (--rerank: by ITM)
minblip info MODEL                   what a checkpoint is: type, config in brief, parameters, size
minblip trace IMAGE --model M -o T   record every module's output (see docs/verify-your-port.md)
minblip compare A.npz B.npz          name the first module where two traces diverge
minblip explain IMAGE --out DIR      caption a photo and draw where each word looked
                                     (--question Q: an answer; match --explain: an ITM score)
"""

import argparse
import json
import os
import sys
from collections import Counter

from .errors import InputError, MinblipError

DEFAULT_MODEL = "Salesforce/blip-image-captioning-base"


def cmd_caption(args):
    """Caption every image; report unreadable ones and carry on; exit 1 if any failed. With
    --output, to sidecars / JSONL / CSV files (minblip/caption_files.py)."""
    from .caption_files import batches_of, caption_chunk, generation_kwargs, run_caption, shard_of
    from .pipeline import find_images, load_captioner

    gen = generation_kwargs(args)
    if args.output:
        return run_caption(args, gen)
    if not args.images:
        raise InputError("no image or folder given")
    paths = find_images(args.images)
    if not paths:
        raise InputError("no images found in " + ", ".join(args.images))
    paths = shard_of(paths, args.shard)
    if args.workers > 1:  # K processes, results in this order (minblip/workers.py)
        from .workers import results, say_workers

        items = [(p, None) for p in paths]
        chunks = ([(p, r)] for p, _, r in results(items, args, gen, "caption"))
    else:
        model, processor = load_captioner(args.model)
        chunks = (
            caption_chunk(chunk, model, processor, args.prompt, gen)
            for chunk in batches_of(paths, args.batch_size)
        )
    if args.verbose:
        say_workers(args.workers) if args.workers > 1 else _say_model(model)
        said = "none: generate from the image alone" if args.prompt is None else repr(args.prompt)
        print(f"minblip: prompt {said}", file=sys.stderr)
    bar = _Progress(len(paths)) if len(paths) > 1 and sys.stderr.isatty() else None
    failed = 0
    for chunk in chunks:
        for path, result in chunk:
            _clear(bar)
            if isinstance(result, MinblipError):
                failed += 1
                print(f"minblip: skipped {path}: {result}", file=sys.stderr)
                result = []
            many = isinstance(result, list)  # --num-return-sequences N > 1: N sequences
            for j, (text, ids, mean_logprob, *score) in enumerate(result if many else [result]):
                if not text:
                    _say_empty(path)
                text = f"{args.prefix}{text}{args.suffix}"
                if args.json:
                    row = {
                        "path": str(path),
                        "caption": text,
                        "token_ids": ids,
                        "mean_logprob": mean_logprob,
                    }
                    if many:
                        row["sequence"] = j
                        if score[0] is not None:
                            row["score"] = score[0]
                    print(json.dumps(row), flush=True)
                else:
                    print(f"{path}: {text}" if len(paths) > 1 else text, flush=True)
            if bar:
                bar.step()
    _clear(bar)
    if failed:
        print(f"minblip: {failed} of {len(paths)} image(s) could not be captioned", file=sys.stderr)
    return 1 if failed else 0


def cmd_ask(args):
    """BLIP VQA reads the question as it is; BLIP-2 continues "Question: {q} Answer:"."""
    from .caption_files import generation_kwargs, run_ask_command
    from .pipeline import answer, answer_prompt, is_blip2, load_captioner

    gen = generation_kwargs(args)
    many = args.questions or args.questions_given or not os.path.isfile(args.image)
    if many or args.output or args.shard or gen.get("num_return_sequences", 1) > 1:
        return run_ask_command(args, gen)  # folders, several questions, files: caption_files
    if args.verbose:
        if is_blip2(args.model):
            _say_model(load_captioner(args.model)[0])
            prompt = answer_prompt(args.question)
            print(f"minblip: prompt {prompt!r} (BLIP-2's model-card format)", file=sys.stderr)
        else:
            print(f"minblip: BLIP VQA, question {args.question!r}", file=sys.stderr)
    text, ids = answer(args.image, args.question, args.model, **gen)
    if not text:
        _say_empty(args.image)
    if args.json:
        print(
            json.dumps(
                {"path": args.image, "question": args.question, "answer": text, "token_ids": ids}
            )
        )
    else:
        print(text)
    return 0


def _say_empty(path):
    """An empty line alone would look like a crash: say what happened (random-weight folders
    often repeat </s> or <image>, which decoding skips as special tokens)."""
    print(
        f"minblip: {path}: the text is empty: every generated token is a special token, which "
        "decoding skips (--json shows the token_ids)",
        file=sys.stderr,
    )


def _say_model(model):
    """One stderr line naming what was loaded (for --verbose)."""
    cfg = model.config
    if cfg.model_type == "blip-2":
        lm = cfg.text_config.model_type
        kind = f"BLIP-2 with {'OPT' if lm == 'opt' else 'T5'} ({lm})"
    else:
        kind = "BLIP"
    print(f"minblip: {kind} from {model.folder}", file=sys.stderr)


def cmd_match(args):
    """One image and texts given: ranked by ITM (pipeline.match). A folder, --texts FILE or a
    BLIP-2 retrieval checkpoint: a record per (image, text) (minblip/search.py)."""
    from .pipeline import checkpoint_kind, match
    from .search import run_match

    args.texts = args.texts + args.text  # positional TEXTs, then --text ones
    if args.explain:  # the ITM map (minblip/cli_inside.py)
        from .cli_inside import cmd_match_explain

        if not args.texts:
            raise InputError(
                "no text to match: give at least one TEXT, --text T or --texts FILE (a text a line)"
            )
        return cmd_match_explain(args, args.texts)
    if (
        args.texts_file
        or not os.path.isfile(args.image)
        or checkpoint_kind(args.model)[1] != "blip"
    ):
        return run_match(args)
    if not args.texts:
        raise InputError(
            "no text to match: give at least one TEXT, --text T or --texts FILE (a text a line)"
        )
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
    params, nbytes, dtypes, disk = Counter(), Counter(), Counter(), 0
    for path in files:
        header, _, size = read_header(path)
        disk += size
        for key, e in header.items():
            n = 1
            for s in e["shape"]:
                n *= s
            part = _component(key, cfg.model_type)
            params[part] += n
            nbytes[part] += e["data_offsets"][1] - e["data_offsets"][0]
            dtypes[e["dtype"]] += n
    params = dict(sorted(params.items(), key=lambda kv: _PIPELINE_ORDER.get(kv[0], 99)))
    info = {
        "model": str(args.model),
        "folder": str(folder),
        "model_type": cfg.model_type,
        "architectures": getattr(cfg, "architectures", None),
        "config": _brief(cfg),
        "parameters": dict(params),
        "parameter_bytes": dict(nbytes),
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
        print(f"    {comp:<34} {n:>15,}  {nbytes[comp] / 2**20:>10,.1f} MiB")
    print(f"    {'total':<34} {info['total_parameters']:>15,}")
    print("  dtype          " + ", ".join(f"{d} ({n:,} values)" for d, n in dtypes.items()))
    print(f"  on disk        {disk / 2**20:,.1f} MiB in {len(files)} file(s)")
    return 0


# BLIP-2's parts in the order the image flows through them
_PIPELINE_ORDER = {
    "vision_model": 0,
    "qformer + query_tokens": 1,
    "language_projection": 2,
    "language_model": 3,
}


def _component(key, model_type=None):
    """The part a tensor belongs to. BLIP: the top-level module (text_decoder.bert.* and
    text_decoder.cls.* apart). BLIP-2: vision_model, qformer (its learned query_tokens with it),
    language_projection, language_model."""
    parts = key.split(".")
    if model_type == "blip-2":
        return "qformer + query_tokens" if parts[0] in ("qformer", "query_tokens") else parts[0]
    depth = 2 if parts[0] in ("text_decoder", "language_model") and len(parts) > 2 else 1
    return ".".join(parts[:depth])


_BRIEF_FIELDS = (
    "model_type",
    "hidden_size",
    "d_model",
    "num_hidden_layers",
    "num_layers",
    "num_decoder_layers",
    "num_attention_heads",
    "num_heads",
    "intermediate_size",
    "ffn_dim",
    "d_ff",
    "feed_forward_proj",
    "cross_attention_frequency",
    "image_size",
    "patch_size",
    "vocab_size",
    "max_position_embeddings",
    "layer_norm_eps",
    "layer_norm_epsilon",
    "tie_word_embeddings",
)


def _brief(cfg):
    """The towers' sizes from config.json (BLIP-2's text tower is its language_model)."""
    towers = {}
    for name in ("vision_config", "qformer_config", "text_config"):
        sub = getattr(cfg, name, None)
        if sub is not None:
            tower = name.replace("_config", "")
            if cfg.model_type == "blip-2" and tower == "text":
                tower = "language_model"
            towers[tower] = {f: getattr(sub, f) for f in _BRIEF_FIELDS if hasattr(sub, f)}
    if cfg.model_type == "blip-2":
        towers["qformer"]["num_query_tokens"] = cfg.num_query_tokens
        towers["blip-2"] = {"image_token_index": cfg.image_token_index}
    if not towers:
        towers[cfg.model_type] = {f: getattr(cfg, f) for f in _BRIEF_FIELDS if hasattr(cfg, f)}
    return towers


def positive_int(text):
    """An option value that must be an int >= 1, refused by argparse (exit 2) otherwise."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text!r}")
    return int(text)


def _model_option(p, default, note=""):
    p.add_argument(
        "--model", default=default, help=f"checkpoint folder or hub id (default: {default}{note})"
    )


def _json_option(p, what, func):
    """--json (what each JSON line holds), and the command's function."""
    p.add_argument("--json", action="store_true", help=what)
    p.set_defaults(func=func)


def _length_options(p, beams_default, max_new_tokens_type, max_new_tokens_help):
    """--num-beams and --max-new-tokens (None: the --preset's, else
    caption_files.generation_kwargs' defaults)."""
    p.add_argument(
        "--num-beams",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"beam search width (default {beams_default})",
    )
    p.add_argument(
        "--max-new-tokens",
        type=max_new_tokens_type,
        default=None,
        metavar="N",
        help=max_new_tokens_help,
    )


def build_parser():
    parser = argparse.ArgumentParser(
        prog="minblip",
        description="BLIP and BLIP-2 in NumPy: caption, ask and match images on a CPU, no torch.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "caption",
        help="caption images with a BLIP captioning or BLIP-2 model",
        description="Caption images, or every image in the given folders (walked recursively), "
        "with a BLIP captioning checkpoint or a BLIP-2 one (blip2-opt-*, blip2-flan-t5-*: "
        "config.json's model_type says which). An unreadable image is reported on stderr and "
        "skipped; the exit status is 1 if any image failed.",
    )
    # nargs="*": `--output txt FOLDER` hands FOLDER back to the images (caption_files)
    p.add_argument("images", nargs="*", metavar="IMAGE_OR_FOLDER", help="image files or folders")
    _model_option(p, DEFAULT_MODEL, ", from the Hugging Face cache")
    p.add_argument("--prompt", default=None, help='text the caption continues, e.g. "a picture of"')
    _length_options(
        p, "1: greedy", positive_int, "longest caption in tokens (default 20, as transformers)"
    )
    _json_option(
        p,
        "one JSON object per image: path, caption, token_ids (generate's row, prompt included as "
        "transformers returns it), mean_logprob (of the new tokens)",
        cmd_caption,
    )
    p.add_argument(
        "--verbose", action="store_true", help="say on stderr which model and prompt are used"
    )
    from .caption_files import add_generation_options, add_output_options

    add_generation_options(p)
    add_output_options(p)

    from .pipeline import DEFAULT_ITM_MODEL, DEFAULT_VQA_MODEL

    p = sub.add_parser(
        "ask",
        help="answer a question about an image (visual question answering)",
        description="Answer a question about an image with a BLIP VQA checkpoint, or with a "
        'BLIP-2 checkpoint, which continues the prompt "Question: QUESTION Answer:" (the '
        "format of BLIP-2's model cards; --verbose prints it).",
    )
    p.add_argument("image", metavar="IMAGE_OR_FOLDER", help="image file or folder")
    p.add_argument(
        "question", nargs="?", metavar="QUESTION", help='e.g. "how many dogs are there?"'
    )
    _model_option(p, DEFAULT_VQA_MODEL)
    _length_options(
        p, "1", int, "longest answer in tokens (default: the checkpoint's generation settings)"
    )
    _json_option(p, "one JSON object: path, question, answer, token_ids", cmd_ask)
    p.add_argument(
        "--verbose", action="store_true", help="say on stderr which model and prompt are used"
    )
    from .caption_files import add_ask_options

    add_ask_options(p)

    p = sub.add_parser(
        "match",
        help="rank texts by how well they match an image (ITM and ITC)",
        description="Score each text against an image with a retrieval checkpoint "
        "(BlipForImageTextRetrieval, or Blip2ForImageTextRetrieval; other checkpoints are "
        "refused by name): the image-text-matching probability (ITM head) and the contrastive "
        "cosine similarity (ITC; BLIP-2: the best over its query embeddings). One image with "
        "BLIP: ranked by ITM probability, best first. A folder or --texts FILE: one line (JSON "
        "record with --json) per image and text, in file order.",
    )
    p.add_argument("image", metavar="IMAGE_OR_FOLDER", help="image file or folder")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="candidate descriptions")
    _model_option(p, DEFAULT_ITM_MODEL)
    _json_option(p, "one JSON object per text: text, itm_probability, itc_cosine", cmd_match)
    from .cli_inside import add_match_explain
    from .search import add_match_options
    from .search import add_subcommands as add_search

    add_match_explain(p)  # --text, --explain (the ITM map), --layer, --out, --overwrite
    add_match_options(p)  # --texts FILE and the folder outputs

    # index, search: ITC embeddings of a folder, text queries (minblip/search.py)
    add_search(sub, _model_option, _json_option)

    p = sub.add_parser(
        "info",
        help="describe a checkpoint: type, config, parameters, dtype, size",
        description="Describe a checkpoint folder or cached hub id without loading "
        "its weights (config.json and the safetensors headers, sharded or not): model type, "
        "towers in brief (BLIP-2: vision, Q-Former, language model), parameters and bytes per "
        "part, stored dtypes and size on disk.",
    )
    p.add_argument("model", metavar="MODEL", help="checkpoint folder or hub id")
    _json_option(p, "print one JSON object", cmd_info)

    # trace, compare, explain: looking inside (minblip/cli_inside.py)
    from .cli_inside import add_subcommands

    add_subcommands(sub)

    # quantize: an int8 weight-only copy of a checkpoint folder (minblip/quantize.py)
    from .quantize import add_subcommand as add_quantize

    add_quantize(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MinblipError as e:
        print(f"minblip: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`minblip info ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit flush
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by it


if __name__ == "__main__":
    sys.exit(main())
