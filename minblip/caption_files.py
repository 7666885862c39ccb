"""Captioning a dataset to files (issue 11): sidecars, JSONL / CSV records, resume, atomic writes.

minblip caption FOLDER --output txt                      # a.jpg -> a.txt beside it
minblip caption FOLDER --output jsonl captions.jsonl     # one record per image
minblip caption FOLDER --output csv captions.csv --batch-size 8

What people preparing training data (kohya-ss/sd-scripts, taggui, OneTrainer, ...) rely on:

- Existing captions are never destroyed by default: `--existing skip` leaves an image whose
  sidecar exists alone; `overwrite`, `append` and `prepend` are asked for by name. append and
  prepend add a caption only if the sidecar does not hold it already, so rerunning an interrupted
  append run does not add the same caption twice.
- A JSONL / CSV run resumes: paths already recorded with a caption are skipped (error records
  are retried and replaced).
- Every file is replaced atomically (a temporary file in the same folder, fsync, os.replace), so a
  reader or a killed run sees the old file or the new one, never half of one. Sidecars are written
  as each caption is made; a JSONL / CSV file is rewritten at most every FLUSH_SECONDS and at the
  end, so a killed run (SIGKILL) loses at most that much work and no record is ever cut in half.
  Ctrl-C and SIGTERM save what was done and say how many images that was (exit status 130).
"""

import argparse
import contextlib
import csv
import io
import json
import math
import os
import pathlib
import signal
import sys
import tempfile
import threading
import time

import numpy as np

from .errors import InputError, MinblipError
from .ops import log_softmax

# the columns of a record (CSV's header); `options` holds the generation settings as JSON
RECORD_FIELDS = ("path", "caption", "model", "options", "mean_logprob", "question", "error")
# with --num-return-sequences N > 1: the sequence's index (0 .. N-1) and, for beam search,
# transformers' sequences_scores (the beam's score: summed log-probabilities / length**penalty)
SEQUENCE_FIELDS = ("sequence", "score")
EXISTING = ("skip", "overwrite", "append", "prepend")
FLUSH_SECONDS = 1.0  # longest a JSONL / CSV record waits in memory before the file is rewritten


def write_atomic(path, text):
    """Replace path's contents with text (a str, written as UTF-8, or bytes) all at once: a
    temporary file in the same folder (same file system, so the rename is atomic), flushed to
    disk, then os.replace. The file keeps its permission bits; a new one gets the umask's.
    SIGINT / SIGTERM wait until the rename is done (a half-written temporary file is removed in
    any case)."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".minblip-tmp", dir=path.parent)
    with _signals_held():
        try:
            binary = isinstance(text, bytes)
            kw = {} if binary else dict(encoding="utf-8", newline="")
            with os.fdopen(fd, "wb" if binary else "w", **kw) as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, _mode_for(path))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _mode_for(path):
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def _signals_held():
    """Hold SIGINT / SIGTERM back while a file is being replaced (main thread, POSIX only)."""
    can = (
        hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    )
    held = {signal.SIGINT, signal.SIGTERM}
    if can:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        if can:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _key(path, question=None, sequence=None):
    """What a record is found by on resume: the absolute path (so "a.jpg" and "./a.jpg" meet),
    for questions the question, and with --num-return-sequences the sequence's index."""
    return os.path.abspath(str(path)), question or None, sequence


class Sidecars:
    """`--output txt`: the caption in a text file beside each image (a.jpg -> a.txt), the format
    kohya-ss's training scripts read (caption_extension)."""

    def __init__(self, extension=".txt", existing="skip", separator=", "):
        if existing not in EXISTING:
            raise InputError(f"--existing {existing!r}: expected one of {', '.join(EXISTING)}")
        extension = extension if extension.startswith(".") else "." + extension
        if extension in (".", "") or "/" in extension or os.sep in extension:
            raise InputError(f"--caption-extension {extension!r}: expected a suffix like .txt")
        self.extension, self.existing, self.separator = extension, existing, separator
        self.claimed = {}  # sidecar -> the image it belongs to (a.jpg and a.png share a.txt)

    def path_for(self, image):
        image = pathlib.Path(image)
        return image.with_name(image.stem + self.extension)

    def pending(self, image, question=None):
        return self.existing != "skip" or not self.path_for(image).exists()

    def check(self, image):
        """A sidecar already claimed by another image of this run is an error for the second."""
        side = self.path_for(image)
        owner = self.claimed.setdefault(os.path.abspath(side), str(image))
        if owner != str(image):
            raise InputError(f"{image}: its sidecar {side} is {owner}'s too; rename one of them")

    def write(self, record):
        if "error" in record:
            return
        side = self.path_for(record["path"])
        text = record["caption"]
        if self.existing in ("append", "prepend") and side.exists():
            old = side.read_text(encoding="utf-8").strip()
            sep = self.separator
            there = (
                old.endswith(sep + text)
                if self.existing == "append"
                else old.startswith(text + sep)
            )
            if old == text or there:
                return  # already there (a rerun): adding it again would repeat it
            if old:
                text = (
                    old + self.separator + text
                    if self.existing == "append"
                    else (text + self.separator + old)
                )
        write_atomic(side, text + "\n")

    def close(self):
        pass

    def describe(self):
        return f"sidecars (*{self.extension})"


class RecordFile:
    """`--output jsonl FILE` / `--output csv FILE`: one record per image (per image and question
    for `ask`), kept in memory and written whole (atomically) at most every FLUSH_SECONDS."""

    def __init__(self, path, kind, existing="skip", flush_seconds=FLUSH_SECONDS):
        if kind not in ("jsonl", "csv"):
            raise InputError(f"--output {kind!r}: expected txt, jsonl FILE or csv FILE")
        if existing not in ("skip", "overwrite"):
            raise InputError(
                f"--existing {existing}: a {kind} file is resumed (skip) or replaced (overwrite); "
                "append and prepend apply to --output txt sidecars"
            )
        self.path, self.kind, self.flush_seconds = pathlib.Path(path), kind, flush_seconds
        self.sequences = 1  # --num-return-sequences: records per image (and question)
        if self.path.is_dir():
            raise InputError(f"--output {kind} {path}: a folder; give a file name")
        if not self.path.parent.is_dir():
            raise InputError(f"--output {kind} {path}: no folder {self.path.parent}")
        self.records = {}  # key -> record, in the order first seen
        if existing == "skip" and self.path.exists():
            for record in self._load():
                self.records[_record_key(record)] = record
        self.loaded = sum("error" not in r for r in self.records.values())
        self.dirty, self.last = False, time.monotonic()

    def _load(self):
        text = self.path.read_text(encoding="utf-8")
        how = "move it away or pass --existing overwrite to replace it"
        if self.kind == "jsonl":
            records = []
            for n, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(f"{self.path}: line {n} is not JSON ({e}); {how}") from None
                if not isinstance(record, dict) or "path" not in record:
                    raise InputError(f"{self.path}: line {n} is not a record with a path; {how}")
                records.append(record)
            return records
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        if rows and "path" not in rows[0]:
            raise InputError(f"{self.path}: no 'path' column in the header; {how}")
        # a CSV cell is text: an empty cell is a field that was not set
        records = [
            {k: v for k, v in row.items() if k in RECORD_FIELDS + SEQUENCE_FIELDS and v != ""}
            for row in rows
        ]
        for r in records:
            if "sequence" in r:
                r["sequence"] = int(r["sequence"])
        return records

    def pending(self, image, question=None):
        """True if some record of the image (and question) is missing or an error: with
        --num-return-sequences N, any of the N sequences'."""
        if self.sequences == 1:
            keys = [_key(image, question)]
        else:
            keys = [_key(image, question, j) for j in range(self.sequences)]
        return any(self.records.get(k) is None or "error" in self.records[k] for k in keys)

    def check(self, image):
        pass

    def write(self, record):
        fields = RECORD_FIELDS + SEQUENCE_FIELDS
        record = {k: record[k] for k in fields if k in record}  # the columns' order
        if "sequence" in record:  # an image's earlier error record is replaced by its sequences
            self.records.pop(_key(record["path"], record.get("question")), None)
        self.records[_record_key(record)] = record
        self.dirty = True
        if time.monotonic() - self.last >= self.flush_seconds:
            self.flush()

    def flush(self):
        if self.dirty:
            write_atomic(self.path, self.render())
            self.dirty, self.last = False, time.monotonic()

    def close(self):
        self.flush()

    def render(self):
        rows = list(self.records.values())
        if self.kind == "jsonl":
            return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        fields = RECORD_FIELDS
        if any("sequence" in r for r in rows):  # the columns of --num-return-sequences
            fields += SEQUENCE_FIELDS
        out = io.StringIO(newline="")
        w = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k)) for k in fields})
        return out.getvalue()

    def describe(self):
        return str(self.path)


def _record_key(record):
    return _key(record["path"], record.get("question"), record.get("sequence"))


def _cell(value):
    """A CSV cell: options as JSON, floats in full (repr), None empty."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return repr(value) if isinstance(value, float) else str(value)


def open_outputs(specs, existing="skip", extension=".txt", separator=", "):
    """Writers for the --output options: [["txt"], ["jsonl", FILE], ...]. Returns (writers,
    leftovers): values argparse gave --output that are not its file (images typed after it)."""
    writers, leftovers, kinds = [], [], set()
    for spec in specs:
        kind = spec[0].lower()
        if kind in kinds:
            raise InputError(f"--output {kind} given twice")
        kinds.add(kind)
        if kind == "txt":
            writers.append(Sidecars(extension, existing, separator))
            leftovers += spec[1:]
        elif kind in ("jsonl", "csv"):
            if len(spec) < 2:
                raise InputError(f"--output {kind} needs a file name: --output {kind} FILE")
            writers.append(RecordFile(spec[1], kind, existing))
            leftovers += spec[2:]
        else:
            raise InputError(f"--output {spec[0]!r}: expected txt, jsonl FILE or csv FILE")
    return writers, leftovers


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (kill PID) ends the run as Ctrl-C does: through KeyboardInterrupt, so what was
    done is saved and counted."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def caption_batch(images, model, processor, prompt=None, **generate_kwargs):
    """Caption several images in one generate call (the vision tower and the decoder run on the
    whole batch). Returns one (caption, token_ids, mean_logprob) per image, each as
    pipeline.caption_one computes it alone. The prompt is the same for every image, so no row
    is padded (the case where transformers 5.23's batches equal its single items; see
    docs/deviations.md and transformers#25221).

    images are preprocessed one by one so a caller can name a bad one; here they must all be
    good (a bad one raises, naming it)."""
    return _generate_batch(
        [processor(images=im, text=prompt) for im in images],
        model,
        processor,
        prompt,
        **generate_kwargs,
    )


def _generate_batch(parts, model, processor, prompt, **generate_kwargs):
    """caption_batch on the processor's outputs, one per image (same prompt, so same lengths)."""
    if generate_kwargs.get("num_return_sequences", 1) != 1:
        raise InputError("caption_batch: num_return_sequences must be 1")
    made = generate_sequences(parts, model, processor, prompt, **generate_kwargs)
    return [seqs[0][:3] for seqs in made]


def generate_sequences(parts, model, processor, prompt, **generate_kwargs):
    """One generate call on the processor's outputs (one per image, same prompt) -> per image
    a list of num_return_sequences (caption, token_ids, mean_logprob, score), in generate's
    order: row b * N + j of its sequences is image b's sequence j. score is transformers'
    sequences_scores under beam search (the beam's summed log-probabilities / length **
    length_penalty), None otherwise. mean_logprob is computed as pipeline.caption_one does:
    each token's log-probability under the raw logits of the row it came from (beam_indices
    under beam search; row b * N + j when sampling, where generate expands each input N
    times)."""
    from .pipeline import prompt_length, trim_caption

    n = generate_kwargs.get("num_return_sequences", 1)
    inputs = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out = model.generate(
        **inputs,
        **generate_kwargs,
        return_dict_in_generate=True,
        output_logits=True,
        output_scores=n > 1,  # sequences_scores, for the records' score
    )
    n_prompt = prompt_length(model, parts[0], prompt)
    beams = out.get("beam_indices")  # (B*N, steps): the row of logits[step] each token came from
    scores = out.get("sequences_scores")  # (B*N,) under beam search
    results = []
    for b in range(len(parts)):
        seqs = []
        for r in range(b * n, (b + 1) * n):
            ids = trim_caption(out.sequences[r], n_prompt, model)
            text = processor.decode(ids[n_prompt:], skip_special_tokens=True).strip()
            chosen = [
                log_softmax(out.logits[step][r if beams is None else beams[r, step]])[token]
                for step, token in enumerate(ids[n_prompt:])
            ]
            mean = float(np.mean(chosen)) if chosen else float("nan")
            score = None if scores is None else float(scores[r])
            seqs.append((text, [int(t) for t in ids], mean, score))
        results.append(seqs)
    return results


def batches_of(items, size):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def run_caption(args, gen):
    """`minblip caption ... --output ...`: caption what is not done yet, write every output,
    report failures and go on. Exit status 0, 1 if any image or file failed, 130 if interrupted."""
    from .pipeline import load_captioner

    writers, leftovers = open_outputs(
        args.output, args.existing, args.caption_extension, args.separator
    )
    _expect_sequences(writers, gen)
    todo, total = _todo(writers, image_paths([*args.images, *leftovers], args.shard), [None])
    _say_skipped(total - len(todo), total, "image(s) already captioned", args.existing)
    options = {"prompt": args.prompt, "prefix": args.prefix, "suffix": args.suffix, **gen}

    def records():
        if getattr(args, "workers", 1) > 1:  # K processes (minblip/workers.py)
            from .workers import worker_records

            yield from worker_records(todo, args, gen, "caption", options, writers)
            return
        model, processor = load_captioner(args.model)
        for chunk in batches_of([path for path, _ in todo], args.batch_size):
            for path, result in caption_chunk(chunk, model, processor, args.prompt, gen):
                yield make_record(path, None, result, args, options)

    return _run(writers, records() if todo else iter(()), len(todo), "image(s)")


def run_ask(args, gen, questions):
    """`minblip ask FOLDER --questions FILE --output jsonl|csv FILE`: one record per image and
    question (the answer in the caption column), resumable as captions are."""
    writers, leftovers = [Printer(args.json)], []  # no --output: stdout
    if args.output:
        writers, leftovers = open_outputs(args.output, args.existing)
    if any(isinstance(w, Sidecars) for w in writers):
        raise InputError("--output txt writes one caption per image; answers go to jsonl or csv")
    _expect_sequences(writers, gen)
    todo, total = _todo(writers, image_paths([args.image, *leftovers], args.shard), questions)
    _say_skipped(total - len(todo), total, "answer(s) already recorded", args.existing)
    options = {"prefix": args.prefix, "suffix": args.suffix, **gen}

    def records():
        if getattr(args, "workers", 1) > 1:  # K processes (minblip/workers.py)
            from .workers import worker_records

            yield from worker_records(todo, args, gen, "ask", options, writers)
            return
        for path, question in todo:
            try:
                result = answer_with_logprob(str(path), question, args.model, **gen)
            except MinblipError as e:
                result = e
            yield make_record(path, question, result, args, options)

    return _run(writers, records(), len(todo), "answer(s)")


def answer_with_logprob(image, question, model, **gen):
    """pipeline.answer plus the answer's mean log-probability where caption_one gives it
    (BLIP-2, which answers by continuing a prompt); BLIP VQA's is NaN (not recorded). With
    num_return_sequences N > 1: a list of N (answer, ids, mean_logprob, score), generate's
    rows in order (BLIP VQA: no mean_logprob and no score)."""
    from .pipeline import (
        answer,
        answer_prompt,
        caption_one,
        is_blip2,
        load_captioner,
        load_task_model,
    )

    many = gen.get("num_return_sequences", 1) > 1
    if is_blip2(str(model)):
        blip2, processor = load_captioner(str(model))
        prompt = answer_prompt(question)
        if many:
            parts = [processor(images=image, text=prompt)]
            return generate_sequences(parts, blip2, processor, prompt, **gen)[0]
        return caption_one(image, blip2, processor, prompt, **gen)
    if many:
        vqa, processor = load_task_model("BlipForQuestionAnswering", str(model))
        rows = vqa.generate(**processor(images=image, text=question), **gen)
        decode = lambda row: processor.decode(row, skip_special_tokens=True).strip()  # noqa: E731
        return [(decode(row), [int(t) for t in row], float("nan"), None) for row in rows]
    return (*answer(image, question, model, **gen), float("nan"))


def _expect_sequences(writers, gen):
    """Tell the record files how many records an image (and question) has when done."""
    for w in writers:
        w.sequences = gen.get("num_return_sequences", 1)


def image_paths(args, shard=None):
    """find_images, an image named twice (a folder and a file in it) kept once, then the
    --shard's share of them."""
    from .pipeline import find_images

    unique = {}
    for p in find_images(args):
        unique.setdefault(os.path.abspath(p), p)
    if not unique:
        raise InputError("no images found in " + ", ".join(map(str, args)))
    return shard_of(unique.values(), shard)


def _todo(writers, paths, questions):
    """The (path, question) pairs some output does not hold yet, and how many pairs there are."""
    pairs = [(p, q) for p in paths for q in questions]
    return [(p, q) for p, q in pairs if any(w.pending(p, q) for w in writers)], len(pairs)


def _say_skipped(n, total, what, existing):
    if n:
        print(f"minblip: {n} of {total} {what} (--existing {existing}): skipped", file=sys.stderr)


def make_record(path, question, result, args, options):
    """The record of one image (and question); with --num-return-sequences N > 1 (result a
    list of N sequences) a list of N records, each with its sequence index and score."""
    if isinstance(result, list):
        group = []
        for j, (text, ids, mean_logprob, score) in enumerate(result):
            record = make_record(path, question, (text, ids, mean_logprob), args, options)
            record["sequence"] = j
            if score is not None:
                record["score"] = score
            group.append(record)
        return group
    record = {"path": str(path), "model": str(args.model), "options": options}
    if question is not None:
        record["question"] = question
    if isinstance(result, MinblipError):
        record["error"] = str(result)
        print(f"minblip: skipped {path}: {result}", file=sys.stderr)
    else:
        text, _, mean_logprob = result
        record["caption"] = f"{args.prefix}{text}{args.suffix}"
        record["mean_logprob"] = None if math.isnan(mean_logprob) else mean_logprob
    return record


def _run(writers, records, total, unit):
    """Write each record to every output as it comes; on Ctrl-C / SIGTERM save what was done and
    say how much that was. Exit status 0, 1 if anything failed, 130 if interrupted."""
    done = failed = 0
    try:
        with sigterm_as_interrupt():
            for record in records:  # a record, or a list: an image's N sequences
                group = record if isinstance(record, list) else [record]
                failed += not _write_all(writers, group) or any("error" in r for r in group)
                done += 1
            for w in writers:
                w.close()
    except KeyboardInterrupt:
        for w in writers:
            with contextlib.suppress(OSError):
                w.close()
        where = ", ".join(w.describe() for w in writers)
        print(
            f"\nminblip: interrupted: {done} of {total} {unit} done and saved to {where}; "
            "run the same command again to do the rest",
            file=sys.stderr,
        )
        return 130
    if failed:
        print(f"minblip: {failed} of {total} {unit} failed", file=sys.stderr)
    return 1 if failed else 0


def caption_chunk(chunk, model, processor, prompt, gen):
    """(path, (caption, ids, mean_logprob) or the MinblipError that stopped it) per image: the
    good images of the chunk go through generate together, a bad one is named alone. With
    num_return_sequences N > 1, a list of N (caption, ids, mean_logprob, score) per image."""
    from .pipeline import caption_one

    many = gen.get("num_return_sequences", 1) > 1
    if len(chunk) == 1 and not many:
        try:
            return [(chunk[0], caption_one(str(chunk[0]), model, processor, prompt, **gen))]
        except MinblipError as e:
            return [(chunk[0], e)]
    parts, results = {}, {}
    for path in chunk:  # preprocess each image first: a truncated file is that file's error
        try:
            parts[path] = processor(images=str(path), text=prompt)
        except MinblipError as e:
            results[path] = e
    if parts:
        make = generate_sequences if many else _generate_batch
        made = make(list(parts.values()), model, processor, prompt, **gen)
        results.update(zip(parts, made))
    return [(p, results[p]) for p in chunk]


def _write_all(writers, group):
    """Give an image's records (one, or its N sequences) to every output; a sidecar gets the N
    captions one per line. A file that cannot be written is named, and the run goes on. True if
    every write succeeded."""
    ok, record = True, group[0]
    for w in writers:
        if not w.pending(record["path"], record.get("question")):
            continue  # done in this output already (a sidecar that exists under skip)
        try:
            w.check(record["path"])
            if isinstance(w, Sidecars) and len(group) > 1:
                captions = [r["caption"] for r in group]
                w.write({**record, "caption": "\n".join(captions)})
            else:
                for r in group:
                    w.write(r)
        except MinblipError as e:
            print(f"minblip: {e}", file=sys.stderr)
            ok = False
        except OSError as e:
            target = w.path_for(record["path"]) if isinstance(w, Sidecars) else w.describe()
            print(f"minblip: could not write {target}: {e.strerror or e}", file=sys.stderr)
            ok = False
    return ok


# ---- command-line options (minblip caption / ask) ----

# option -> (type, transformers' generate argument, help)
GENERATION_OPTIONS = {
    "--min-new-tokens": (int, "min_new_tokens", "shortest caption in new tokens"),
    "--repetition-penalty": (
        float,
        "repetition_penalty",
        "divide the scores of tokens already in the text by this (> 1 discourages repeats; "
        "transformers' RepetitionPenaltyLogitsProcessor)",
    ),
    "--no-repeat-ngram-size": (
        int,
        "no_repeat_ngram_size",
        "never repeat an n-gram of this many tokens (3 stops 'a hat on top of a hat on top')",
    ),
    "--length-penalty": (
        float,
        "length_penalty",
        "beam search: score / length**this (> 1 favours longer captions)",
    ),
    "--top-k": (int, "top_k", "sampling: keep the k likeliest tokens (transformers' default 50)"),
    "--top-p": (float, "top_p", "sampling: keep the likeliest tokens up to this mass"),
    "--temperature": (float, "temperature", "sampling: divide the logits by this"),
    "--seed": (int, "seed", "sampling: the NumPy seed (same seed, same captions)"),
    "--num-return-sequences": (
        int,
        "num_return_sequences",
        "N captions per image (beam search: N <= --num-beams, the N best beams; with "
        "--do-sample: N draws). All N are written: jsonl / csv one record per sequence with its "
        "index in 'sequence' (and beam search's 'score'), a txt sidecar the N captions one per "
        "line, stdout one line each",
    ),
}


# Named settings, each from where it comes; explicit options win over a preset's.
PRESETS = {
    "hf": {
        "source": "transformers' generate defaults: greedy, 20 new tokens",
        "generate": {"num_beams": 1, "max_new_tokens": 20},
    },
    "blip-paper": {
        "source": "the BLIP paper's COCO captioning setting (salesforce/BLIP "
        "configs/caption_coco.yaml: num_beams 3, max_length 20, min_length 5, prompt "
        "'a picture of '; the lengths count [DEC] and the prompt, as transformers' do)",
        "generate": {"num_beams": 3, "max_length": 20, "min_length": 5},
        "prompt": "a picture of ",
    },
    "lavis-blip2": {
        "source": "LAVIS's Blip2OPT.generate defaults (lavis/models/blip2_models/blip2_opt.py: "
        "num_beams 5, max_length 30 passed as max_new_tokens, min_length 1, which the query "
        "placeholders already meet; no prompt)",
        "generate": {"num_beams": 5, "max_new_tokens": 30},
    },
    "dataset": {
        "source": "minblip's choice for training captions, against repeated phrases: beam 3, "
        "5 to 30 new tokens, no 3-gram twice, repetition penalty 1.2 (docs/datasets.md)",
        "generate": {
            "num_beams": 3,
            "min_new_tokens": 5,
            "max_new_tokens": 30,
            "no_repeat_ngram_size": 3,
            "repetition_penalty": 1.2,
        },
    },
}


def add_generation_options(p):
    """transformers' generate settings people set on captioning tools, by their own names."""
    for flag, (kind, _, what) in GENERATION_OPTIONS.items():
        p.add_argument(
            flag, type=kind, default=None, metavar="N" if kind is int else "X", help=what
        )
    p.add_argument(
        "--do-sample", action="store_true", help="sample instead of greedy / beam search"
    )
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="named settings (options given as well win): "
        + "; ".join(f"{name}: {v['source']}" for name, v in PRESETS.items()),
    )


def generation_kwargs(args):
    """The generate keywords the command line asked for: the --preset's, then the options given
    (unset options are left out, so transformers' defaults apply and a record's options say
    only what was chosen). A preset's prompt applies when --prompt is not given."""
    preset = PRESETS[args.preset] if args.preset else {}
    gen = dict(preset.get("generate", {}))
    if getattr(args, "prompt", "absent") is None and "prompt" in preset:
        args.prompt = preset["prompt"]
    if args.num_beams is not None:
        gen["num_beams"] = args.num_beams
    gen.setdefault("num_beams", 1)
    if args.max_new_tokens is not None:
        gen.pop("max_length", None)  # max_new_tokens given: a preset's max_length would clash
        gen["max_new_tokens"] = args.max_new_tokens
    for flag, (_, name, _) in GENERATION_OPTIONS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            if name == "min_new_tokens":
                gen.pop("min_length", None)
            gen[name] = value
    if args.do_sample:
        gen["do_sample"] = True
    elif any(k in gen for k in ("top_k", "top_p", "temperature", "seed")):
        raise InputError("--top-k, --top-p, --temperature and --seed apply with --do-sample")
    return gen


def output_option(p, what):
    """--output KIND [FILE], appended: one value list per given kind."""
    p.add_argument("--output", action="append", nargs="+", metavar=("KIND", "FILE"), help=what)


def add_output_options(p):
    """--output, --existing, --caption-extension, --separator, --prefix, --suffix, --batch-size."""
    output_option(
        p,
        "write captions to files instead of stdout: 'txt' (a sidecar beside each image), "
        "'jsonl FILE' or 'csv FILE' (one record per image: path, caption, model, options, "
        "mean_logprob; error for an image that failed). May be given once per kind. Files are "
        "replaced atomically; a rerun skips what is done",
    )
    p.add_argument(
        "--existing",
        choices=EXISTING,
        default="skip",
        help="an image already captioned: skip it (default: existing sidecars and records are "
        "kept and the run resumes), overwrite, or append / prepend the new caption to the "
        "sidecar (not added again if the sidecar holds it)",
    )
    p.add_argument(
        "--caption-extension",
        default=".txt",
        metavar="EXT",
        help="the sidecar's extension (default .txt: a.jpg -> a.txt)",
    )
    p.add_argument(
        "--separator",
        default=", ",
        metavar="TEXT",
        help="between the old and the new caption for --existing append / prepend (default ', ')",
    )
    p.add_argument("--prefix", default="", metavar="TEXT", help="text put before each caption")
    p.add_argument("--suffix", default="", metavar="TEXT", help="text put after each caption")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=1,
        metavar="N",
        help="images per generate call (default 1); captions equal one-at-a-time's "
        "(see docs/datasets.md)",
    )
    add_shard_option(p)


def positive_int(text):
    """An option value that must be an int >= 1, refused by argparse (exit 2) otherwise."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text!r}")
    return int(text)


class Printer:
    """stdout as an output (ask over a folder or several questions without --output): a JSON
    record per line with --json, else "path: question: answer"."""

    def __init__(self, as_json):
        self.as_json = as_json

    def pending(self, image, question=None):
        return True

    def check(self, image):
        pass

    def write(self, record):
        if "error" in record:
            return  # named on stderr already
        if self.as_json:
            print(json.dumps(record, ensure_ascii=False), flush=True)
        else:
            print(f"{record['path']}: {record['question']}: {record['caption']}", flush=True)

    def close(self):
        pass

    def describe(self):
        return "stdout"


def text_lines(path, option):
    """The stripped lines of a text file given with option (--questions, --texts), blank lines
    and lines starting with # skipped; an unreadable file is an InputError naming option."""
    try:
        lines = pathlib.Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise InputError(f"{option} {path}: {e.strerror or e}") from None
    return [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]


def read_questions(args):
    """The questions of `ask`: the positional one, each --question, each line of --questions
    FILE (blank lines and lines starting with # skipped)."""
    questions = [args.question] if args.question else []
    questions += args.questions_given or []
    if args.questions:
        questions += text_lines(args.questions, "--questions")
    if not questions:
        raise InputError("no question: give QUESTION, --question TEXT or --questions FILE")
    return list(dict.fromkeys(questions))  # a question asked twice is answered once


def add_ask_options(p):
    """ask's folder-scale options: several questions, outputs, prefix / suffix."""
    p.add_argument(
        "--question",
        dest="questions_given",
        action="append",
        metavar="TEXT",
        help="a question (may be given several times; one answer per image and question)",
    )
    p.add_argument(
        "--questions", metavar="FILE", help="a file of questions, one a line (# comments)"
    )
    output_option(
        p,
        "'jsonl FILE' or 'csv FILE': one record per image and question (path, question, "
        "the answer in caption, model, options, mean_logprob for BLIP-2); a rerun resumes",
    )
    p.add_argument(
        "--existing",
        choices=("skip", "overwrite"),
        default="skip",
        help="answers already recorded: skip them (default: resume) or overwrite the file",
    )
    p.add_argument("--prefix", default="", metavar="TEXT", help="text put before each answer")
    p.add_argument("--suffix", default="", metavar="TEXT", help="text put after each answer")
    add_shard_option(p)
    add_generation_options(p)


def run_ask_command(args, gen):
    """ask over folders, several questions or to files (the single image + question case without
    these prints as before: __main__.cmd_ask)."""
    return run_ask(args, gen, read_questions(args))


def shard_spec(text):
    """--shard i/n -> (i, n), 1 <= i <= n; refused by argparse (exit 2) otherwise."""
    i, slash, n = text.partition("/")
    if not (slash and i.strip().isdigit() and n.strip().isdigit() and 1 <= int(i) <= int(n)):
        raise argparse.ArgumentTypeError(
            f"expected i/n with 1 <= i <= n (1/4 ... 4/4), got {text!r}"
        )
    return int(i), int(n)


def shard_of(paths, shard):
    """The i-th of n stable shares of the images: every n-th of the sorted absolute paths,
    starting at the i-th. n processes or machines given 1/n ... n/n share a dataset with no
    coordinator: the shares are disjoint and together hold every image."""
    if shard is None:
        return list(paths)
    i, n = shard
    return sorted(paths, key=lambda p: os.path.abspath(p))[i - 1 :: n]


def add_shard_option(p):
    from .workers import add_workers_option

    add_workers_option(p)  # --workers K: K processes, worker i taking shard i/K
    p.add_argument(
        "--shard",
        type=shard_spec,
        default=None,
        metavar="I/N",
        help="take the I-th of N shares of the images (every N-th of the sorted paths): run "
        "1/N ... N/N in N processes or machines, each with its own --output file",
    )
