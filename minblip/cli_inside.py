"""`minblip trace`, `minblip compare` and `minblip explain`: subcommands for looking inside.

Kept apart from __main__.py so that file only registers them (add_subcommands).
"""

import pathlib

from .errors import InputError


def cmd_trace(args):
    from .compare import read_inputs, run_trace, save_trace

    out = pathlib.Path(args.output)
    if out.exists() and not args.overwrite:
        raise InputError(f"{out} exists; pass --overwrite to replace it")
    inputs = None if args.inputs is None else read_inputs(args.inputs)
    if inputs is not None and (args.image is not None or args.text is not None):
        raise InputError("give either IMAGE [--text T] or --inputs FILE, not both")
    meta, inputs, modules = run_trace(args.model, args.image, args.text, inputs, args.dtype)
    save_trace(out, meta, inputs, modules)
    print(f"{out}: {len(modules)} module outputs of {meta['class']} ({meta['model']})")
    return 0


def cmd_compare(args):
    from .compare import compare_traces, format_rows, load_trace

    a, b = load_trace(args.a), load_trace(args.b)
    rows = compare_traces(a, b, atol=args.atol)
    print(f"A: {args.a}  ({a[0].get('producer')}, {a[0].get('class')}, {a[0].get('model')})")
    print(f"B: {args.b}  ({b[0].get('producer')}, {b[0].get('class')}, {b[0].get('model')})")
    for line in format_rows(rows, args.atol):
        print(line)
    extra = [k for k in b[0]["order"] if k not in a[2]]
    if extra:
        print(f"note: B recorded {len(extra)} module(s) A did not, first {extra[0]}")
    return 0 if rows and rows[-1]["ok"] else 1


def add_subcommands(sub):
    """Register trace, compare and explain on __main__'s subparsers."""
    p = sub.add_parser(
        "trace",
        help="record every module's output of one forward call into a trace file",
        description="Run one forward call of a checkpoint on a photo (and text) and save every "
        "module's output under transformers' module path, with the inputs and the model "
        "in metadata, as an .npz for `minblip compare`. tools/trace_transformers.py writes the "
        "same file from transformers. See docs/verify-your-port.md.",
    )
    p.add_argument("image", nargs="?", metavar="IMAGE", help="image file")
    p.add_argument("--text", default=None, help="text input (default: empty text)")
    p.add_argument("--model", required=True, help="checkpoint folder or hub id")
    p.add_argument(
        "--inputs",
        default=None,
        metavar="FILE",
        help="call with the arrays of this .npz (a trace file's inputs, or any .npz of named "
        "arrays) instead of IMAGE/--text",
    )
    p.add_argument("-o", "--output", required=True, metavar="TRACE.npz", help="file to write")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_trace)

    p = sub.add_parser(
        "compare",
        help="compare two trace files module by module; name the first divergence",
        description="Walk A's modules in forward order, print each one's max abs and relative "
        "error against B, and stop at the first beyond --atol, naming it (exit status 1). "
        "Traces of different models or inputs are refused.",
    )
    p.add_argument("a", metavar="A.npz")
    p.add_argument("b", metavar="B.npz", help="the reference (relative errors are against it)")
    p.add_argument(
        "--atol",
        type=float,
        default=1e-4,
        help="largest allowed max abs error per module (default 1e-4: minblip's bar for "
        "full-size float32 models; 1e-5 for tiny ones, 1e-10 in float64)",
    )
    p.set_defaults(func=cmd_compare)
    add_explain(sub)


def cmd_explain(args):
    """Check --out and the photo, pick the model by config.json, compute, and only then make
    --out and write: a refused model leaves nothing behind."""
    from .explain import check_out_dir
    from .pipeline import checkpoint_kind
    from .preprocess import load_image

    if args.question is not None and args.prompt is not None:
        raise InputError(
            "--question and --prompt: give one (a question is asked through its own prompt)"
        )
    out = check_out_dir(args.out, args.overwrite)
    photo = load_image(args.image)
    folder, model_type, architectures = checkpoint_kind(args.model)
    title = f"minblip explain {args.image}"
    if args.question is not None:
        return _explain_question(args, out, photo, folder, model_type, architectures, title)
    if (
        model_type == "blip"
        and architectures
        and "BlipForConditionalGeneration" not in architectures
    ):
        hint = {
            "BlipForQuestionAnswering": "; pass --question Q to explain an answer",
            "BlipForImageTextRetrieval": "; `minblip match IMAGE TEXT --explain` explains a score",
        }
        said = "".join(hint.get(a, "") for a in architectures)
        raise InputError(
            f"{folder}: a {', '.join(architectures)} checkpoint does not caption; explain "
            f"captions with BlipForConditionalGeneration or BLIP-2{said}"
        )
    from .blip2 import Blip2ForConditionalGeneration
    from .explain import caption_attention, write_explanation
    from .pipeline import load_captioner

    model, processor = load_captioner(args.model)
    if isinstance(model, Blip2ForConditionalGeneration):
        return _explain_blip2(args, out, photo, model, processor, title)
    result = caption_attention(
        model, processor, photo, args.prompt, args.layer, args.max_new_tokens
    )
    return _report(result["caption"], write_explanation(out, photo, result, title=title))


def _report(line, written):
    """Print the explained result's line and each file written; exit status 0."""
    print(line)
    for path in written:
        print(f"  wrote {path}")
    return 0


def _explain_question(args, out, photo, folder, model_type, architectures, title):
    """--question: BLIP VQA (question encoder over the photo, answer decoder over the question)
    or BLIP-2 (through the "Question: Q Answer:" prompt `minblip ask` builds)."""
    from .pipeline import answer_prompt, load_captioner, load_task_model

    if model_type == "blip-2":
        model, processor = load_captioner(args.model)
        prompt = answer_prompt(args.question)
        return _explain_blip2(args, out, photo, model, processor, title, prompt, args.question)
    if model_type != "blip" or (architectures and "BlipForQuestionAnswering" not in architectures):
        kind = ", ".join(architectures) or f"model_type {model_type!r}"
        raise InputError(
            f"--question: {folder} is a {kind} checkpoint, which does not answer questions; "
            "give a BLIP VQA checkpoint (BlipForQuestionAnswering, e.g. Salesforce/blip-vqa-base) "
            "or a BLIP-2 one (Blip2ForConditionalGeneration)"
        )
    from .explain import question_attention, write_question_explanation

    model, processor = load_task_model("BlipForQuestionAnswering", args.model)
    result = question_attention(
        model, processor, photo, args.question, args.layer, args.max_new_tokens
    )
    written = write_question_explanation(out, photo, result, title=title)
    return _report(result["answer"], written)


def _explain_blip2(args, out, photo, model, processor, title, prompt=None, question=None):
    """BLIP-2: each learned query's cross-attention over the photo, and per generated word
    which queries the language model read. question: asked through prompt."""
    from .explain import query_attention, write_query_explanation

    prompt = args.prompt if question is None else prompt
    inputs = processor(images=photo, text=prompt)
    result = query_attention(
        model,
        inputs["pixel_values"],
        inputs.get("input_ids") if prompt is not None else None,
        args.layer,
        args.max_new_tokens,
    )
    ids = result["token_ids"]
    words = [
        processor.decode([int(ids[p])]).strip() or repr(processor.decode([int(ids[p])]))
        for p in result["positions"]
    ]
    written = write_query_explanation(
        out, photo, result, words, title=title, question=question, prompt=prompt
    )
    return _report(processor.decode([int(ids[p]) for p in result["positions"]]).strip(), written)


def cmd_match_explain(args, texts):
    """`minblip match IMAGE TEXT --explain`: the ITM score and the text encoder's
    cross-attention per text token over the photo."""
    from .explain import check_out_dir, itm_attention, write_explanation
    from .pipeline import load_itm
    from .preprocess import load_image

    if len(texts) != 1:
        raise InputError(
            f"--explain draws the map of one text; got {len(texts)} (give one TEXT, or rank "
            "them first without --explain)"
        )
    out = check_out_dir(args.out, args.overwrite)
    photo = load_image(args.image)
    model, processor = load_itm(args.model)
    result = itm_attention(model, processor, photo, texts[0], args.layer)
    written = write_explanation(out, photo, result, title=f"minblip match --explain {args.image}")
    if args.json:
        import json

        row = {"path": args.image, "text": texts[0], "itm_probability": result["itm_probability"]}
        print(json.dumps({**row, "written": [str(p) for p in written]}))
        return 0
    return _report(f"{result['itm_probability']:.4f}  {texts[0]}", written)


def add_match_explain(p):
    """match's --text, --explain, --layer, --out and --overwrite (registered by __main__)."""
    p.add_argument(
        "--text",
        action="append",
        default=[],
        metavar="T",
        help="a candidate description (repeatable; same as a positional TEXT)",
    )
    p.add_argument(
        "--explain",
        action="store_true",
        help="for one text: write the ITM probability and, per text token, the text encoder's "
        "cross-attention over the photo (explain.png, explain.html, explain.npz in --out)",
    )
    add_drawing_options(
        p,
        "with --explain: draw text-encoder layer K (default: the mean over layers)",
        "with --explain: ",
    )


def add_drawing_options(p, layer_help, when=""):
    """explain's --layer K (layer_help says which layers), --out DIR and --overwrite; when (e.g.
    "with --explain: ") leads --out's help."""
    p.add_argument("--layer", type=int, default=None, metavar="K", help=layer_help)
    p.add_argument(
        "--out", default="explain", metavar="DIR", help=f"{when}folder (default ./explain)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace files already in --out")


def add_explain(sub):
    from .pipeline import DEFAULT_MODEL

    p = sub.add_parser(
        "explain",
        help="caption a photo (or answer --question) and draw where each word looked",
        description="Caption a photo with a BLIP captioning model (greedy) and draw, per "
        "generated word, the decoder's cross-attention over the image patches as a heatmap "
        "over the photo: explain.png (a grid), explain.html (one self-contained page) and "
        "explain.npz (the numbers) in --out. With a BLIP-2 checkpoint: each learned query's "
        "Q-Former cross-attention over the photo, and per word which queries the language "
        "model read. With --question: an answer instead (see --question). `minblip match "
        "IMAGE TEXT --explain` draws the map behind an ITM score.",
    )
    p.add_argument("image", metavar="IMAGE", help="image file")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"default: {DEFAULT_MODEL}")
    p.add_argument("--prompt", default=None, help='text the caption continues, e.g. "a picture of"')
    p.add_argument(
        "--question",
        default=None,
        metavar="Q",
        help="answer Q instead of captioning: with a BLIP VQA checkpoint, draw the question "
        "encoder's cross-attention over the photo per question token and the answer decoder's "
        "attention over the question per answer word (it never reads the image itself); with "
        'BLIP-2, ask through the "Question: Q Answer:" prompt',
    )
    p.add_argument("--max-new-tokens", type=int, default=None, metavar="N")
    add_drawing_options(
        p,
        "draw decoder layer K's cross-attention (BLIP-2: the Q-Former's K-th cross-attention "
        "layer; default: the mean over layers)",
    )
    p.set_defaults(func=cmd_explain)
