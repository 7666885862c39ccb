"""Ray Data (minblip/ray.py, issue 11): the Captioner actor pool on a local Ray cluster started
here (2 CPUs, no dashboard, no usage stats, no network) writes the captions `minblip caption`
writes for the same images, a bad file included.

Expected values come from the CLI on the same tiny golden folder (itself golden-tested against
transformers in test_pipeline.py); nothing here is typed by hand."""

import json
import os
import shutil

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # before ray is imported: no network call

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray
from golden_utils import GOLDEN, model_dir, tiny_blip_captioner
from PIL import Image

from minblip.__main__ import main
from minblip.errors import InputError
from minblip.pipeline import caption_one, load_captioner, match
from minblip.ray import Captioner, Matcher, actor_options

PHOTOS = sorted(p for p in (GOLDEN / "images").iterdir() if p.suffix == ".png")
GEN = {"max_new_tokens": 6}  # short captions keep the test fast


@pytest.fixture(scope="module")
def blip(tmp_path_factory):
    """The tiny BLIP captioning folder with the BLIP tokenizer beside it."""
    return tiny_blip_captioner(tmp_path_factory.mktemp("blip") / "tiny")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A dozen photos (the golden ones three times) and a zero-byte .png among them."""
    root = tmp_path_factory.mktemp("photos")
    for c in range(3):
        for p in PHOTOS:
            shutil.copy(p, root / f"{c}_{p.name}")
    (root / "empty.png").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def cli_records(blip, photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "captions.jsonl"
    argv = ["caption", str(photos), "--model", str(blip), "--max-new-tokens", "6"]
    argv += ["--output", "jsonl", str(out)]
    assert main(argv) == 1  # the empty file fails, the others are captioned
    return {r["path"]: r for r in map(json.loads, out.read_text().splitlines())}


@pytest.fixture(scope="module")
def cluster():
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=80 * 2**20,
        log_to_driver=False,
        configure_logging=False,
    )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    yield
    ray.shutdown()


def test_ray_pipeline_writes_the_cli_captions(blip, photos, cli_records, cluster, tmp_path):
    """read_binary_files -> map_batches(Captioner) on an actor pool -> write_parquet."""
    ds = ray.data.read_binary_files(str(photos), include_paths=True)
    ds = ds.map_batches(
        Captioner,
        fn_constructor_kwargs={"model": str(blip), **GEN},
        # one actor: the other CPU reads the files (actors holding every CPU starve the reads)
        compute=ray.data.ActorPoolStrategy(size=1),
        batch_size=4,
        **actor_options(threads=1),
    )
    ds.write_parquet(str(tmp_path / "out"))
    rows = pq.read_table(tmp_path / "out").to_pylist()
    assert sorted(r["path"] for r in rows) == sorted(cli_records)
    for r in rows:
        want = cli_records[r["path"]]
        if "error" in want:
            assert r["error"] == want["error"] and r["caption"] == "" and r["num_new_tokens"] == 0
            continue
        assert r["error"] == "" and r["caption"] == want["caption"]
        # batched (4 per generate call) vs one at a time: same tokens, log-probs to float32 noise
        assert r["mean_logprob"] == pytest.approx(want["mean_logprob"], abs=1e-6)


def test_captioner_reads_image_columns_as_read_images_gives_them(blip, photos, cli_records):
    """The `image` column (read_images(mode="RGB") rows: decoded (H, W, 3) arrays) gives the
    captions the files give; a batch with neither column is refused by name."""
    captioner = Captioner(str(blip), **GEN)
    paths = sorted(p for p in photos.iterdir() if p.stat().st_size)[:4]
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    column = np.empty(len(images), dtype=object)
    column[:] = images  # different sizes: Ray hands them over as an object column
    out = captioner({"image": column, "path": np.array([str(p) for p in paths], dtype=object)})
    assert list(out["caption"]) == [cli_records[str(p)]["caption"] for p in paths]
    assert list(out["error"]) == [""] * len(paths)
    model, processor = load_captioner(str(blip))
    for path, n in zip(paths, out["num_new_tokens"]):
        ids = caption_one(str(path), model, processor, **GEN)[1]
        assert n == len(ids) - 1  # generate's row is BLIP's [DEC] + the caption (no prompt)
    with pytest.raises(InputError, match="'bytes'.*'image'"):
        captioner({"text": np.array(["a"], dtype=object)})


def test_matcher_scores_every_text_as_match_does(photos, tmp_path):
    """One row per image and text, in the texts' order, with minblip.match's scores; the
    zero-byte file gets an error row per text."""
    folder = tmp_path / "itm"
    shutil.copytree(model_dir(GOLDEN / "blip_tasks" / "itm_head"), folder)
    texts = ["a dog on a beach", "a cup of coffee", "an astronaut"]
    # the tiny model has 99 token ids: a WordPiece vocab.txt of that size holding the texts'
    # words (BertTokenizer's defaults; match and the Matcher read the same one)
    words = sorted({w for t in texts for w in t.split()})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = specials + words + [f"[unused{i}]" for i in range(99 - len(specials) - len(words))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    matcher = Matcher(str(folder), texts)
    paths = [photos / f"0_{PHOTOS[0].name}", photos / "empty.png"]
    batch = {"bytes": [p.read_bytes() for p in paths], "path": [str(p) for p in paths]}
    out = matcher(batch)
    assert list(out["path"]) == [str(paths[0])] * 3 + [str(paths[1])] * 3
    assert list(out["text"]) == texts * 2
    want = {r["text"]: r for r in match(str(paths[0]), texts, str(folder))}
    for i, text in enumerate(texts):
        assert out["itm_probability"][i] == want[text]["itm_probability"]
        assert out["itc_cosine"][i] == want[text]["itc_cosine"]
    assert list(out["error"][:3]) == [""] * 3
    assert all("empty (0 bytes)" in e for e in out["error"][3:])
    assert np.isnan(out["itm_probability"][3:]).all()


def test_actor_options_size_cpus_and_thread_pools():
    options = actor_options(threads=3)
    assert options["num_cpus"] == 3
    env = options["runtime_env"]["env_vars"]
    assert env["OPENBLAS_NUM_THREADS"] == env["NUMBA_NUM_THREADS"] == "3"
    with pytest.raises(InputError, match="threads"):
        actor_options(threads=0)
