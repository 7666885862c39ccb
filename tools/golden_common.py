"""Shared machinery of the golden generator: build, fill, run, record and save one case.

Only tools/ imports torch and transformers. A case module (tools/golden_cases/<group>.py) calls

    write_case(case_dir, "BlipVisionModel", config_dict, seed=0,
               inputs={"pixel_values": array}, kwargs={"interpolate_pos_encoding": True})

which writes everything golden/FORMAT.md describes:

1. builds the transformers class from the config dict (the config class named by the model class);
2. fills it with minblip.testing.random_weights over its state-dict shapes, tied parameters
   getting the value of the key save_pretrained keeps (strict load, then every parameter and
   persistent buffer is checked against the generated value: nothing is left at init);
3. save_pretrained into case_dir/model/ in float32, reloads that folder with from_pretrained and
   checks that the reloaded model reproduces the outputs (to a few ulps; so the committed files,
   not the in-memory model, are what the outputs belong to);
4. runs the call (forward or generate or any method) under torch.no_grad in float32, or in
   float64 after model.double(), with forward hooks on every non-leaf-primitive module;
5. writes inputs.npz, outputs.npz and meta.json; for full_size=True cases, replaces
   model/model.safetensors by weights.json (seed, key/shape/dtype list, sha256).

A group lists its cases as case(name, inputs, config=..., ...) entries (often through a
functools.partial binding its class and config) and hands them to build_group.
"""

import contextlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.numpy import load_file
from transformers.utils import ModelOutput

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from minblip.testing import array_sha256, checksum, random_pixels, random_weights  # noqa: E402

# Leaf modules whose output is not recorded: the implementation computes them inline (a Linear
# is one line of its caller), so recording them would only force pointless taps.
SKIPPED_LEAVES = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Dropout, torch.nn.Embedding)


def is_skipped(module):
    """True for modules FORMAT.md excludes: Linear, Conv2d, Dropout, Embedding, activations."""
    if isinstance(module, SKIPPED_LEAVES):
        return True
    kind = type(module).__module__
    return kind in ("transformers.activations", "torch.nn.modules.activation")


def build_model(class_name, config):
    """transformers.<class_name> built from a config dict (nested sub-config dicts allowed)."""
    cls = getattr(transformers, class_name)
    cfg = cls.config_class(**config)
    model = cls(cfg)
    model.eval()
    return model


def tied_groups(model):
    """Lists of state-dict keys that share one tensor storage (tied parameters), each list with
    the key save_pretrained keeps first: the one that is not a tie target."""
    targets = set(getattr(model, "all_tied_weights_keys", {}) or {})
    groups = {}
    for key, t in model.state_dict(keep_vars=True).items():
        groups.setdefault(
            (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape)), []
        ).append(key)
    out = []
    for keys in groups.values():
        if len(keys) > 1:
            out.append(sorted(keys, key=lambda k: (k in targets, k)))
    return out


def fill_random(model, seed):
    """Load random_weights(state-dict shapes, seed) into model; return {alias: source} ties.

    Every key of a tied group gets the source key's value, so the saved file (which holds only
    the source) regenerates exactly with random_weights over the saved keys.
    """
    state = model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    weights = random_weights(shapes, seed)
    ties = {}
    for group in tied_groups(model):
        for alias in group[1:]:
            weights[alias] = weights[group[0]]
            ties[alias] = group[0]
    for key, t in state.items():
        if weights[key].dtype.kind == "f" and not t.is_floating_point():
            raise TypeError(f"{key}: random_weights made a float for an integer buffer {t.dtype}")
    tensors = {
        k: torch.from_numpy(np.array(v, order="C")).to(state[k].dtype) for k, v in weights.items()
    }
    model.load_state_dict(tensors, strict=True)
    # Nothing left at init: every parameter and persistent buffer now holds the generated value.
    for key, t in model.state_dict().items():
        if not torch.equal(t, tensors[key]):
            raise AssertionError(f"{key} does not hold its random value after load_state_dict")
    return ties


class Recorder:
    """Forward hooks recording each module's output under its named_modules() path.

    A module called again gets "#1", "#2", ... appended (decoder layers during generate).
    `order` lists the keys in the order the outputs were produced: a module after its children.
    """

    def __init__(self, model, only=None):
        self.outputs, self.order, self.handles = {}, [], []
        for name, module in model.named_modules():
            if name == "" or is_skipped(module):
                continue
            if only is not None and name not in only:
                continue
            self.handles.append(module.register_forward_hook(self._hook(name)))

    def _hook(self, name):
        def hook(module, args, output):
            t = first_tensor(output)
            if t is None:
                return
            key, n = name, 0
            while key in self.outputs:
                n += 1
                key = f"{name}#{n}"
            self.outputs[key] = t.detach().cpu().numpy().copy()
            self.order.append(key)

        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def first_tensor(output):
    """The tensor a module output stands for: itself, or the first of a tuple / ModelOutput."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, ModelOutput):
        output = output.to_tuple()
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


def flatten_output(out, prefix="out"):
    """{"out.<field>[.<i>]": array} for a call's result: a tensor, a ModelOutput or a tuple.
    Non-tensor leaves (caches, None) are skipped; tuples (hidden_states, attentions, scores)
    become .0, .1, ..."""
    flat = {}
    if isinstance(out, torch.Tensor):
        flat[prefix] = out.detach().cpu().numpy().copy()
    elif isinstance(out, ModelOutput):
        for field, value in out.items():
            flat.update(flatten_output(value, f"{prefix}.{field}"))
    elif isinstance(out, (tuple, list)):
        for i, value in enumerate(out):
            flat.update(flatten_output(value, f"{prefix}.{i}"))
    return flat


def to_torch(value, dtype):
    """numpy arrays -> tensors (floating ones cast to the run dtype); anything else unchanged."""
    if isinstance(value, np.ndarray):
        t = torch.from_numpy(np.array(value, order="C"))  # keeps 0-d arrays 0-d
        return t.to(dtype) if t.is_floating_point() else t
    return value


def run(model, method, inputs, kwargs, dtype, only=None):
    """Call model.<method>(**inputs, **kwargs) under no_grad with the recorder installed."""
    rec = Recorder(model, only)
    args = {k: to_torch(v, dtype) for k, v in {**inputs, **kwargs}.items()}
    try:
        with torch.no_grad():
            out = getattr(model, method)(**args)
    finally:
        rec.remove()
    return out, rec


def versions():
    return {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }


def write_case(
    case_dir,
    class_name,
    config,
    *,
    seed,
    inputs,
    kwargs=None,
    method="forward",
    dtype="float32",
    full_size=False,
    record=None,
    saved_config=None,
    notes="",
    prepare=None,
):
    """Generate one golden case into case_dir (wiped first). See the module docstring.

    inputs       {argument name: np.ndarray} -> inputs.npz (stored as given; float64 runs upcast)
    kwargs       non-array arguments (flags, generation settings) -> meta.json
    method       "forward", "generate", or any other method of the model
    dtype        "float32" or "float64": the precision transformers runs in
    full_size    commit weights.json + checksum instead of model.safetensors
    record       None (every module) or a collection of module paths to hook; full-size cases
                 record few modules to keep golden/ small
    saved_config a dict to write as model/config.json instead of save_pretrained's (e.g. a
                 minimal config); it is checked to load back as the same configuration
    prepare      None or a callable run on the built model before it is filled (e.g. to give T5
                 an untied lm_head: 5.23 builds every T5 with the head tied to `shared`)
    """
    case_dir = Path(case_dir)
    kwargs = dict(kwargs or {})
    torch.manual_seed(seed)
    if case_dir.exists():
        shutil.rmtree(case_dir)
    model_dir = case_dir / "model"
    model = build_model(class_name, config)
    if prepare is not None:
        prepare(model)
    ties = fill_random(model, seed)

    # Save in float32 before any .double(): the file is what a float32 checkpoint looks like.
    model.save_pretrained(model_dir, safe_serialization=True)
    saved = load_file(str(model_dir / "model.safetensors"))
    check_saved(model, saved, ties, seed)
    if saved_config is not None:
        check_minimal_config(class_name, model, saved_config, model_dir)

    torch_dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    model = model.to(torch_dtype)
    out, rec = run(model, method, inputs, kwargs, torch_dtype, record)
    flat = flatten_output(out)

    # The committed folder, reloaded by transformers itself, must give the very same outputs.
    # (with the attention implementation the case ran with: eager and SDPA differ by ~1e-6)
    reloaded = getattr(transformers, class_name).from_pretrained(
        model_dir, attn_implementation=model.config._attn_implementation
    )
    reloaded = reloaded.eval().to(torch_dtype)
    out2, _ = run(reloaded, method, inputs, kwargs, torch_dtype, only=())
    for key, value in flatten_output(out2).items():
        # Not bit-exact: the reloaded weights sit at other addresses, and BLAS may then take a
        # different kernel path (seen: 3e-8 on a BlipModel logit). Anything beyond a few ulps
        # would mean the files are not what the outputs belong to.
        if not np.allclose(value, flat[key], rtol=1e-6, atol=1e-7):
            raise AssertionError(f"{case_dir.name}: reloading model/ changes {key}")

    np.savez_compressed(case_dir / "inputs.npz", **inputs)
    np.savez_compressed(case_dir / "outputs.npz", **flat, **rec.outputs)
    meta = {
        "class": class_name,
        "method": method,
        "kwargs": kwargs,
        "dtype": dtype,
        "seed": seed,
        "order": rec.order,
        "outputs": list(flat),
        "tied": ties,
        "versions": versions(),
        "notes": notes,
    }
    (case_dir / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    if full_size:
        spec = {
            "seed": seed,
            "tensors": {
                k: {"shape": list(v.shape), "dtype": v.dtype.name} for k, v in sorted(saved.items())
            },
            "tied": ties,
            "numpy": np.__version__,
            "sha256": checksum(saved),
        }
        (case_dir / "weights.json").write_text(weights_json(spec))
        (model_dir / "model.safetensors").unlink()
    return meta


def use_generated_pixels(case_dir, seed, name="pixel_values"):
    """Drop a large random_pixels input from inputs.npz and record it in meta.json as
    "generated_inputs": {name: {"seed", "shape", "sha256"}} (rebuilt by the test's load_case).
    The stored array must be exactly random_pixels(seed, ...) of its shape."""
    case_dir = Path(case_dir)
    with np.load(case_dir / "inputs.npz") as f:
        inputs = {k: f[k] for k in f.files}
    px = inputs.pop(name)
    b, _, h, w = px.shape
    if not np.array_equal(px, random_pixels(seed, b, h, w)):
        raise AssertionError(f"{case_dir.name}: {name} is not random_pixels({seed}, ...)")
    np.savez_compressed(case_dir / "inputs.npz", **inputs)
    meta = json.loads((case_dir / "meta.json").read_text())
    spec = {"seed": seed, "shape": list(px.shape), "sha256": array_sha256(px)}
    meta.setdefault("generated_inputs", {})[name] = spec
    (case_dir / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


def weights_json(spec):
    """weights.json text: the scalar fields first, then one line per tensor (diff-friendly)."""
    head = {k: v for k, v in spec.items() if k != "tensors"}
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in spec["tensors"].items()]
    body = json.dumps(head, indent=1)[:-2]
    return body + ',\n "tensors": {\n' + ",\n".join(lines) + "\n }\n}\n"


def check_saved(model, saved, ties, seed):
    """The saved file = random_weights over exactly its own keys, and every key missing from it
    is a tied alias of a saved key: so materialize() (which knows only the saved keys and the
    seed) rebuilds the same file, and loading it restores every parameter."""
    state_keys = set(model.state_dict())
    missing = state_keys - set(saved)
    if missing - set(ties):
        raise AssertionError(f"save_pretrained dropped untied keys: {sorted(missing - set(ties))}")
    if set(saved) - state_keys:
        raise AssertionError(
            f"save_pretrained wrote unknown keys: {sorted(set(saved) - state_keys)}"
        )
    again = random_weights({k: v.shape for k, v in saved.items()}, seed)
    for key, value in saved.items():
        if not np.array_equal(again[key].astype(value.dtype), value):
            raise AssertionError(
                f"{key}: the saved value is not random_weights' value for that key"
            )


def check_minimal_config(class_name, model, saved_config, model_dir):
    """Replace config.json by saved_config and check transformers reads it back as the config the
    model was built with (every omitted field at its default)."""
    full = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps(saved_config, indent=2) + "\n")
    cfg_cls = getattr(transformers, class_name).config_class
    reread = cfg_cls.from_pretrained(model_dir).to_dict()
    built = model.config.to_dict()
    ignore = {"transformers_version", "architectures", "dtype", "torch_dtype"}
    diff = {
        k for k in set(reread) | set(built) if k not in ignore and reread.get(k) != built.get(k)
    }
    if diff:
        raise AssertionError(f"minimal config reads back differently in {sorted(diff)}")
    return full


@contextlib.contextmanager
def quiet():
    """Silence transformers' info/warning chatter while generating."""
    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(level)
        transformers.utils.logging.enable_progress_bar()


def dir_size(path):
    """Total bytes of the files under path."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def scratch_dir():
    return Path(tempfile.mkdtemp(prefix="golden-"))


def case(name, inputs, **spec):
    """One entry of a group's case list (build_group): a model folder + inputs + outputs. spec:
    "config" (the model's config dict), "cls" when the group has several classes, and
    write_case's other keywords (kwargs, method, dtype, record, notes, ...). A group binds its
    class and config once: functools.partial(case, cls=..., config=...)."""
    return name, dict(inputs=inputs, **spec)


def minimal_config(model_type, **keys):
    """A case's config and saved_config when config.json names only model_type and keys: every
    other field comes from the config class's defaults (write_case checks they read back)."""
    return {"config": keys, "saved_config": {"model_type": model_type, **keys}}


def build_group(
    out, cases, seed, *, class_name=None, full_pixel_seed=None, keep_full=(), after_case=None
):
    """Write a group of cases (name, write_case kwargs with "config" and optionally "cls") into
    out: a model folder + inputs + outputs per case. The case folders are wiped first; files
    beside them (a README.md) stay.

    seed: the weights' seed, an int or {class name: int}; a full-size case adds 1000. Cases of
    one class, config and seed share the first one's model folder (the same weights): the later
    ones drop theirs and point meta["model_dir"] at it. A generate case records no module unless
    it says so (record=None: every module): one trace per decode step would cost ~0.5 MB a case.
    A full-size case keeps only the outputs named in keep_full and regenerates its pixel_values
    from full_pixel_seed. after_case(case_dir, meta, class_name, spec) may add to meta before
    the model folder is shared.
    """
    out = Path(out)
    for old in out.glob("*/"):
        shutil.rmtree(old)
    first = {}  # (class, config, seed) -> the case whose model folder later ones share
    with quiet():
        for name, spec in cases:
            spec = dict(spec)
            cls, config = spec.pop("cls", class_name), spec.pop("config")
            full = spec.get("full_size", False)
            case_seed = (seed[cls] if isinstance(seed, dict) else seed) + (1000 if full else 0)
            if spec.get("method") == "generate" and not full and "record" not in spec:
                spec["record"] = ()
            elif "record" in spec and spec["record"] is None:
                del spec["record"]
            print(" ", name, flush=True)
            case = out / name
            write_case(case, cls, config, seed=case_seed, **spec)
            meta = json.loads((case / "meta.json").read_text())
            if after_case is not None:
                after_case(case, meta, cls, spec)
            key = (cls, json.dumps(config, sort_keys=True), case_seed)
            if key in first and not full:
                shutil.rmtree(case / "model")
                meta["model_dir"] = f"../{first[key]}/model"
            first.setdefault(key, name)
            if full:
                slim_full_size(case, meta, spec["inputs"], full_pixel_seed, keep_full)
            (case / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"  golden/{out.name}: {dir_size(out) / 2**20:.2f} MB")


def slim_full_size(case, meta, inputs, pixel_seed, keep):
    """Regenerated pixels instead of the stored array; only the small outputs (keep) kept."""
    px = inputs["pixel_values"]
    spec = {"seed": pixel_seed, "shape": list(px.shape), "sha256": array_sha256(px)}
    meta["generated_inputs"] = {"pixel_values": spec}
    kept = {k: v for k, v in np.load(case / "inputs.npz").items() if k != "pixel_values"}
    np.savez_compressed(case / "inputs.npz", **kept)
    outs = {k: v for k, v in np.load(case / "outputs.npz").items() if k in keep}
    np.savez_compressed(case / "outputs.npz", **outs)
    meta["outputs"] = [k for k in meta["outputs"] if k in keep]


def build_shared_group(out, cases, class_name, seed):
    """build_group for a group of one seed and no full-size cases."""
    build_group(out, cases, seed, class_name=class_name)
