"""The minblip side of the benchmark tools' child scripts runs (tools/bench.py): a benchmark that
names a helper minblip renamed would fail only when someone next measures. Run here on the tiny
captioner; the transformers side needs torch, which tests never import."""

import json
import sys

from golden_utils import GOLDEN, tiny_blip_captioner

import minblip

sys.path.insert(0, str(GOLDEN.parent / "tools"))
import bench  # noqa: E402


def test_throughput_child_captions_as_the_api(tmp_path):
    folder = tiny_blip_captioner(tmp_path / "tiny")
    images = bench.throughput_images(tmp_path / "images", n=3)
    gen = dict(max_new_tokens=5, min_new_tokens=5)
    out, _ = bench.child(bench.THROUGHPUT_CHILD, ["minblip", folder, images, 2, json.dumps(gen)])
    want = minblip.caption(sorted(map(str, images.glob("*.png"))), model=folder, **gen)
    assert out["captions"] == want and out["images_per_s"] > 0
