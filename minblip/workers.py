"""`--workers K`: K processes on one machine share a folder run (issue 11, item 4).

minblip caption FOLDER --output jsonl captions.jsonl --workers 2

The images still to do are cut into the --batch-size batches one process would make, and
worker i (1 <= i <= K) takes every K-th batch from the i-th (--shard's rule: a stable, disjoint
share, no coordinator). Each worker loads the model once and sends each result back; the parent
writes every output itself, in the order one process would, so the files equal a --workers 1
run's (sidecars, JSONL / CSV with their atomic writes and resume: caption_files.py, unchanged).
The same batches give the same captions, sampled ones included.

Why spawn and not fork: NumPy's OpenBLAS and Numba size their thread pools when they load, from
OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / NUMBA_NUM_THREADS. A forked child inherits the parent's
loaded libraries (pools sized for every core, and OpenBLAS's threads do not survive a fork
safely), so setting the variables there is too late. A spawned child is a fresh interpreter
that reads its environment before it imports NumPy: the parent sets the variables to
max(1, cores // K) while it starts the children.
"""

import argparse
import contextlib
import multiprocessing
import os
import queue
import signal
import sys
import traceback

from .errors import MinblipError

THREAD_VARIABLES = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)
POLL_SECONDS = 0.5  # how often the parent looks for a worker that died without a word


def cores():
    """The cores this process may run on (its affinity mask where the OS has one)."""
    with contextlib.suppress(AttributeError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def threads_per_worker(workers):
    """BLAS / Numba threads for each of K workers: the cores split evenly, at least one."""
    return max(1, cores() // workers)


def workers_count(text):
    """--workers K -> K >= 1; refused by argparse (exit 2, the option named) otherwise."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1 (processes), got {text!r}")
    return int(text)


def add_workers_option(p):
    p.add_argument(
        "--workers",
        type=workers_count,
        default=1,
        metavar="K",
        help="run K processes on this machine (default 1), worker i taking every K-th batch "
        "from the i-th, each with cores/K BLAS and Numba threads; the outputs equal one "
        "process's",
    )


@contextlib.contextmanager
def _environment(**values):
    """os.environ with values set (children started inside inherit them), restored after."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def results(items, args, gen, task):
    """(path, question, result) for each (path, question) of items, in items' order, computed by
    args.workers spawned processes; result is (text, ids, mean_logprob) or the MinblipError that
    stopped that image. task is "caption" (args.model, args.prompt, args.batch_size) or "ask".

    A worker that fails outside an image (the model does not load, a crash) stops the run with
    a MinblipError naming it; the other workers are stopped, what came back before is kept."""
    from .caption_files import batches_of

    k = args.workers
    # the batches one process would make (items come sorted, as --shard sorts), dealt as --shard
    # deals images: worker i takes every k-th from the i-th. The same batches make the same
    # captions, sampled ones included (a batch's rows draw from one seeded generator)
    size = getattr(args, "batch_size", 1) if task == "caption" else 1
    batches = list(batches_of([(n, str(p), q) for n, (p, q) in enumerate(items)], size))
    jobs = [batches[w::k] for w in range(k)]
    options = {
        "model": str(args.model),
        "prompt": getattr(args, "prompt", None),
        "backend": _backend(),
    }
    context = multiprocessing.get_context("spawn")
    inbox = context.Queue()
    threads = str(threads_per_worker(k))
    procs = []
    try:
        with _environment(**dict.fromkeys(THREAD_VARIABLES, threads)):
            for w, job in enumerate(jobs):
                if job:
                    proc = context.Process(
                        target=_work,
                        args=(w + 1, k, task, job, options, gen, inbox),
                        name=f"minblip-worker-{w + 1}",
                        daemon=True,
                    )
                    proc.start()
                    procs.append(proc)
        yield from _in_order(items, inbox, procs, k)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(timeout=5)


def _backend():
    from .ops import get_backend

    return get_backend()


def _in_order(items, inbox, procs, k):
    """Yield the workers' results in items' order (a result that comes early waits)."""
    early, next_n = {}, 0
    while next_n < len(items):
        while next_n in early:
            path, question = items[next_n]
            yield path, question, early.pop(next_n)
            next_n += 1
        if next_n == len(items):
            break
        try:
            message = inbox.get(timeout=POLL_SECONDS)
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise MinblipError(
                    f"{dead[0].name} (of {k}) died with exit code {dead[0].exitcode} before "
                    "finishing its share; the records before it are kept"
                ) from None
            continue
        kind, *body = message
        if kind == "result":
            n, result = body
            early[n] = result if isinstance(result, tuple) else MinblipError(result)
        elif kind == "failed":
            worker, text = body
            raise MinblipError(f"minblip-worker-{worker} (of {k}) failed: {text}")
        # "done": a worker finished its share (its results came before it)


def _work(worker, k, task, job, options, gen, outbox):
    """A worker's body (a spawned process: its thread variables are set before NumPy loads).
    Sends ("result", n, (text, ids, mean_logprob) or an error message) per item, then ("done",);
    ("failed", worker, message) if it cannot go on. Ctrl-C is the parent's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        from .ops import set_backend

        set_backend(options["backend"])
        for n, result in _compute(task, job, options, gen):
            if isinstance(result, MinblipError):
                result = str(result)
            outbox.put(("result", n, result))
        outbox.put(("done",))
    except MinblipError as e:
        outbox.put(("failed", worker, str(e)))
    except BaseException:
        outbox.put(("failed", worker, traceback.format_exc(limit=-3).strip()))
    finally:
        sys.stdout.flush()


def _compute(task, job, options, gen):
    """(n, result) for the worker's batches of (n, path, question), as one process computes
    them."""
    from .caption_files import answer_with_logprob, caption_chunk
    from .pipeline import load_captioner

    if task == "caption":
        model, processor = load_captioner(options["model"])
        for chunk in job:
            made = caption_chunk(
                [path for _, path, _ in chunk], model, processor, options["prompt"], gen
            )
            for (n, _, _), (_, result) in zip(chunk, made):
                yield n, result
        return
    for chunk in job:
        for n, path, question in chunk:
            try:
                yield n, answer_with_logprob(path, question, options["model"], **gen)
            except MinblipError as e:
                yield n, e


def worker_records(items, args, gen, task, options, writers):
    """caption_files' records (one per item, in items' order) from args.workers processes. A
    worker that fails stops the run, but the outputs keep every record that came back first."""
    from .caption_files import make_record

    try:
        for path, question, result in results(items, args, gen, task):
            yield make_record(path, question, result, args, options)
    except MinblipError:
        for w in writers:
            with contextlib.suppress(OSError):
                w.close()
        raise


def say_workers(k):
    """One stderr line for --verbose: how the run is split."""
    print(
        f"minblip: {k} worker processes, {threads_per_worker(k)} BLAS / Numba thread(s) each "
        f"({cores()} cores)",
        file=sys.stderr,
    )
