"""Record a transformers trace: the reference side of `minblip compare` (needs torch).

    python tools/trace_transformers.py IMAGE [--text T] --model M -o ref.npz
    python tools/trace_transformers.py --inputs ours.npz --model M -o ref.npz

runs one forward call of the checkpoint's transformers class (config.json's architectures) with
forward hooks on every module golden/FORMAT.md records (tools/golden_common.Recorder: the
golden generator's own hooks), and writes the trace file format of minblip/compare.py: the
same keys `minblip trace` writes, so `minblip compare ours.npz ref.npz` lines them up.
--inputs reuses the arrays of another trace (or any .npz of named arrays) so both sides see
bit-identical inputs; otherwise transformers' own processor prepares IMAGE and --text.
"""

import argparse
import json
import pathlib
import sys

import torch
import transformers

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from golden_common import flatten_output, quiet, run  # noqa: E402

from minblip.compare import config_sha256, read_inputs, save_trace  # noqa: E402
from minblip.hub import resolve  # noqa: E402


def make_inputs(folder, class_name, image, text):
    """transformers' processor on one photo (and text), as numpy arrays."""
    from PIL import Image

    photo = Image.open(image).convert("RGB")
    sized = {}
    if not (folder / "preprocessor_config.json").is_file():  # as minblip.compare.make_inputs
        config = json.loads((folder / "config.json").read_text())
        side = config.get("vision_config", config).get("image_size")
        sized = {"size": {"height": side, "width": side}} if side else {}
    if "Vision" in class_name:
        has_config = (folder / "preprocessor_config.json").is_file()
        # the PIL backend: minblip's preprocessing is PIL's (no torchvision here)
        kind = getattr(transformers, "BlipImageProcessorPil", transformers.BlipImageProcessor)
        images = kind.from_pretrained(folder) if has_config else kind()
        enc = images(photo, return_tensors="np", **sized)
    else:
        processor = transformers.AutoProcessor.from_pretrained(folder)
        text = "" if text is None else text
        enc = processor(images=photo, text=text, return_tensors="np", **sized)
    return {k: v for k, v in enc.items() if k != "token_type_ids"}


def trace(model, image=None, text=None, inputs=None, dtype="float32"):
    folder = resolve(model)
    config = json.loads((folder / "config.json").read_text())
    class_name = (config.get("architectures") or [None])[0]
    if class_name is None or not hasattr(transformers, class_name):
        raise SystemExit(f"{folder}/config.json: architectures names no transformers class")
    if inputs is None:
        inputs = make_inputs(folder, class_name, image, text)
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    with quiet():
        net = getattr(transformers, class_name).from_pretrained(folder).to(torch_dtype).eval()
    out, rec = run(net, "forward", inputs, {}, torch_dtype)
    modules = {k: rec.outputs[k] for k in rec.order}
    modules.update(flatten_output(out))
    meta = {
        "producer": f"transformers {transformers.__version__} (torch {torch.__version__})",
        "model": str(model),
        "class": class_name,
        "config_sha256": config_sha256(folder),
        "dtype": dtype,
    }
    return meta, inputs, modules


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("image", nargs="?", metavar="IMAGE")
    ap.add_argument("--text", default=None)
    ap.add_argument("--model", required=True, help="checkpoint folder or hub id")
    ap.add_argument("--inputs", default=None, metavar="FILE", help="call with these arrays")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = ap.parse_args(argv)
    if (args.inputs is None) == (args.image is None):
        ap.error("give either IMAGE [--text T] or --inputs FILE")
    inputs = None if args.inputs is None else read_inputs(args.inputs)
    meta, inputs, modules = trace(args.model, args.image, args.text, inputs, args.dtype)
    save_trace(args.output, meta, inputs, modules)
    print(f"{args.output}: {len(modules)} module outputs of {meta['class']} ({meta['model']})")


if __name__ == "__main__":
    main()
