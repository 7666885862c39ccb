"""`minblip match FOLDER --texts`, `minblip index`, `minblip search` (minblip/search.py, issue 11)
on the tiny golden retrieval folders (BLIP: blip_tasks/itm_head, BLIP-2: blip2_tasks/itm).

Expected scores come from the retrieval classes' own forward (BlipForImageTextRetrieval with
use_itm_head True / False, Blip2ForImageTextRetrieval with use_image_text_matching_head True /
False), which tests/test_blip_tasks.py and tests/test_blip2_tasks.py hold to transformers: the
index, search and match must give what those give, nothing is typed by hand.

The tiny models' text vocabulary has 99 ids, so each folder gets a small word-level BERT vocab
(an input, like the photos) instead of the 30524-token BLIP tokenizer; BLIP-2 is tested both
without and with the `<image>` placeholders (image_token_index) the hub's processor adds."""

import json
import os
import shutil

import numpy as np
import pytest
from golden_utils import GOLDEN

from minblip import search
from minblip.__main__ import main

PHOTOS = sorted(p for p in (GOLDEN / "images").iterdir() if p.suffix == ".png")
WORDS = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] a an the of on in with and is dog cat man woman cup coffee "
    "beach table red blue green photo picture sitting standing two one camera astronaut"
).split()
TEXTS = ["a dog on the beach", "a red cup of coffee", "an astronaut", "a camera on a table"]
WORDS += [f"w{i}" for i in range(98 - len(WORDS))]  # Blip2Processor adds <image> as id 98
MODELS = {
    "blip": ("blip_tasks", "itm_head"),
    "blip2": ("blip2_tasks", "itm"),
    # image_token_index 98: the processor puts <image> placeholders first, the model strips them
    "blip2_placeholders": ("blip2_tasks", "itm_placeholders"),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """{kind: the tiny retrieval folder with the small vocab beside it}."""
    root = tmp_path_factory.mktemp("retrieval")
    out = {}
    for kind, (group, case) in MODELS.items():
        folder = root / kind
        shutil.copytree(GOLDEN / group / case / "model", folder)
        (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
        config = {"tokenizer_class": "BertTokenizer", "do_lower_case": True}
        (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
        out[kind] = folder
    return out


def photo_folder(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    for p in PHOTOS:
        shutil.copy(p, root / p.name)
    return root


def forward_scores(folder, paths, texts):
    """(itm probability (I, T), itc (I, T)) from the retrieval class's own forward."""
    r = search.load_retriever(str(folder))
    m, proc = r.model, r.processor
    itm, itc = [], []
    for path in paths:
        enc = proc(images=str(path), text=texts, padding=True)
        ids, mask, pixels = enc["input_ids"], enc["attention_mask"], enc["pixel_values"]
        if r.kind == "blip":
            logits = m(input_ids=ids, attention_mask=mask, pixel_values=pixels).itm_score
            cos = m(
                input_ids=ids, attention_mask=mask, pixel_values=pixels, use_itm_head=False
            ).itm_score[0]
        else:
            many = np.repeat(pixels, len(texts), axis=0)
            logits = m(
                pixel_values=many,
                input_ids=ids,
                attention_mask=mask,
                use_image_text_matching_head=True,
            ).logits_per_image
            cos = m(pixel_values=pixels, input_ids=ids, attention_mask=mask).logits_per_image[0]
        e = np.exp(logits - logits.max(-1, keepdims=True))
        itm.append(e[:, 1] / e.sum(-1))
        itc.append(cos)
    return np.array(itm), np.array(itc)


def json_lines(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize("kind", MODELS)
def test_match_a_folder_against_a_texts_file(kind, folders, tmp_path, capsys):
    root = photo_folder(tmp_path)
    texts_file = tmp_path / "texts.txt"
    texts_file.write_text("# candidates\n" + "\n".join(TEXTS) + "\n\n", encoding="utf-8")
    argv = ["match", str(root), "--texts", str(texts_file), "--model", str(folders[kind])]
    assert main([*argv, "--json"]) == 0
    rows = json_lines(capsys)
    paths = sorted(root.iterdir())
    assert [(r["path"], r["text"]) for r in rows] == [(str(p), t) for p in paths for t in TEXTS]
    itm, itc = forward_scores(folders[kind], paths, TEXTS)
    got_itm = np.array([r["itm_probability"] for r in rows]).reshape(itm.shape)
    got_itc = np.array([r["itc_cosine"] for r in rows]).reshape(itc.shape)
    np.testing.assert_allclose(got_itm, itm, atol=1e-5)
    np.testing.assert_allclose(got_itc, itc, atol=1e-5)


@pytest.mark.parametrize("kind", MODELS)
def test_search_ranks_by_the_models_itc(kind, folders, tmp_path, capsys):
    root = photo_folder(tmp_path)
    index = tmp_path / "index.npz"
    model = ["--model", str(folders[kind])]
    assert main(["index", str(root), "-o", str(index), *model]) == 0
    stored = search.load_index(index)
    r = search.load_retriever(str(folders[kind]))
    cfg = r.model.config
    E = cfg.image_text_hidden_size
    want_shape = (len(PHOTOS), E) if kind == "blip" else (len(PHOTOS), cfg.num_query_tokens, E)
    assert stored.embeddings.shape == want_shape  # BLIP-2: every query kept for the max
    paths = sorted(root.iterdir())
    assert stored.paths == [os.path.abspath(p) for p in paths]
    _, itc = forward_scores(folders[kind], paths, TEXTS)
    for t, query in enumerate(TEXTS):
        assert main(["search", str(index), query, "--top", "3", "--json"]) == 0
        hits = json_lines(capsys)
        order = np.argsort(-itc[:, t], kind="stable")[:3]
        assert [h["path"] for h in hits] == [stored.paths[i] for i in order]
        np.testing.assert_allclose([h["itc_cosine"] for h in hits], itc[order, t], atol=1e-5)
        assert [h["rank"] for h in hits] == [1, 2, 3] and {h["query"] for h in hits} == {query}


@pytest.mark.parametrize("kind", MODELS)
def test_rerank_rescores_the_top_k_by_itm(kind, folders, tmp_path, capsys):
    root = photo_folder(tmp_path)
    index = tmp_path / "index.npz"
    assert main(["index", str(root), "-o", str(index), "--model", str(folders[kind])]) == 0
    query = TEXTS[0]
    assert main(["search", str(index), query, "--top", "3", "--json"]) == 0
    itc_hits = json_lines(capsys)
    assert main(["search", str(index), query, "--top", "3", "--rerank", "--json"]) == 0
    hits = json_lines(capsys)
    assert {h["path"] for h in hits} == {h["path"] for h in itc_hits}  # the same top K
    itm, _ = forward_scores(folders[kind], [h["path"] for h in hits], [query])
    np.testing.assert_allclose([h["itm_probability"] for h in hits], itm[:, 0], atol=1e-5)
    probs = [h["itm_probability"] for h in hits]
    assert probs == sorted(probs, reverse=True)


def test_reindex_embeds_only_new_and_changed_files(folders, tmp_path, monkeypatch, capsys):
    root = photo_folder(tmp_path)
    index = tmp_path / "index.npz"
    argv = ["index", str(root), "-o", str(index), "--model", str(folders["blip"])]
    embedded = []
    real = search.Retriever.image_embeddings

    def counting(self, pixel_values):
        embedded.append(len(pixel_values))
        return real(self, pixel_values)

    monkeypatch.setattr(search.Retriever, "image_embeddings", counting)
    assert main(argv) == 0
    assert sum(embedded) == len(PHOTOS)
    first = search.load_index(index)

    embedded.clear()
    assert main(argv) == 0  # nothing changed: no model call
    assert embedded == []

    touched = root / PHOTOS[1].name
    st = os.stat(touched)
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert main(argv) == 0
    assert sum(embedded) == 1  # the touched file alone
    again = search.load_index(index)
    assert again.paths == first.paths
    np.testing.assert_allclose(again.embeddings, first.embeddings, atol=1e-6)
    assert again.mtimes_ns[1] == st.st_mtime_ns + 5_000_000_000

    embedded.clear()
    shutil.copy(PHOTOS[0], root / "new.png")
    (root / PHOTOS[2].name).unlink()
    assert main(argv) == 0
    assert sum(embedded) == 1
    after = search.load_index(index)
    assert os.path.abspath(root / "new.png") in after.paths
    assert os.path.abspath(root / PHOTOS[2].name) not in after.paths
    assert len(after.paths) == len(PHOTOS)
    err = capsys.readouterr().err
    assert "1 embedded" in err and "1 removed" in err


def test_a_bad_image_is_named_and_the_rest_indexed(folders, tmp_path, capsys):
    root = photo_folder(tmp_path)
    (root / "broken.png").write_bytes(b"not a png")
    index = tmp_path / "index.npz"
    assert main(["index", str(root), "-o", str(index), "--model", str(folders["blip"])]) == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "Traceback" not in err
    assert len(search.load_index(index).paths) == len(PHOTOS)


def _refused(argv, capsys, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "minblip: error:" in err
    for needle in needles:
        assert needle in err


def test_named_errors(folders, tmp_path, capsys):
    root = photo_folder(tmp_path)
    index = tmp_path / "index.npz"
    assert main(["index", str(root), "-o", str(index), "--model", str(folders["blip"])]) == 0
    capsys.readouterr()
    other = str(folders["blip2"])
    # another model searching, or re-indexing into, the index
    _refused(["search", str(index), "a dog", "--model", other], capsys, "was built with")
    _refused(["index", str(root), "-o", str(index), "--model", other], capsys, "was built with")
    _refused(["search", str(index), "a dog", "--top", "0"], capsys, "--top 0")
    text = tmp_path / "notes.npz"
    text.write_text("hello", encoding="utf-8")
    _refused(["search", str(text), "a dog"], capsys, "notes.npz", "not a minblip index")
    other_npz = tmp_path / "arrays.npz"
    np.savez(other_npz, x=np.zeros(3))
    _refused(["search", str(other_npz), "a dog"], capsys, "arrays.npz", "not a minblip index")
    _refused(["search", str(tmp_path / "none.npz"), "a dog"], capsys, "none.npz")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n", encoding="utf-8")
    _refused(
        ["match", str(root), "--texts", str(empty), "--model", str(folders["blip"])],
        capsys,
        "no text to match",
    )
