"""The public API: load() -> Model (sample, stream, score, trace), train() and plan(). charrnn's
__init__ re-exports it; the CLI and the sweeps call it."""
import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import numpy as np

from . import checkpoint, corpus as corpus_mod, data, distributed, evaluate, inference, report, \
    resume as resume_mod, rundir, runtime, sample as sample_mod, schedule, training
from .arguments import PathLike, checked
from .config import TrainConfig
from .errors import CharrnnError
from .loss import bits, log_softmax

Seed = Union[None, int, np.random.Generator]
Text = Union[str, np.ndarray]


@dataclass
class Trace:
    """One forward pass over a text of L characters from a zero state, the state carried.

    probs (L, V): the model's distribution over the character after position t;
    loss (L-1,): nats of each actual next character (-log probs[t, ids[t+1]]);
    layers[k]: layer k's activations by name, each (L, H) (H the cells' width): "h"; "c" and "i"
    "f" "o" "g" for the LSTM; "r" "z" "n" for the GRU; "z" "n" for minGRU; "i" "n" for
    minLSTM (i normalised: i / (f + i); the share kept is 1 - i). ids (L,) are the text's
    character ids. A trace made with top=K has no probs (None) but top_ids (L, K), the K most
    likely next characters' ids, most likely first, and top_probs (L, K) their probabilities.
    """
    text: str
    ids: np.ndarray
    probs: Optional[np.ndarray]
    loss: np.ndarray
    layers: list
    top_ids: Optional[np.ndarray] = None
    top_probs: Optional[np.ndarray] = None


class Model:
    """A trained model: vocab (str, id order), spec (cell and sizes), params (name -> array:
    the checkpoint's weights, or their moving average when that scored better, Checkpoint.weights),
    config (the TrainConfig it was trained with) and checkpoint (everything the file held).

    threads (a runtime.Threads) is the layout score, trace and a sample's prime run on: that of
    the thread count the model was trained with (config.threads), the layout its run's
    evaluations ran on, or one thread where the config names none. The same layout gives the
    same bits on any machine; set it to runtime.Threads(n) to run on n threads instead, which
    agrees to rounding.
    """

    def __init__(self, ck):
        self.checkpoint = ck
        self.vocab, self.spec, self.params, self.config = ck.vocab, ck.spec, ck.weights, ck.config
        self.threads = runtime.Threads(self.config.threads or 1)

    def __repr__(self):
        return (f"<charrnn.Model {self.spec}, vocabulary of {self.spec.vocab_size}, "
                f"step {self.checkpoint.step}>")

    @checked
    def stream(self, length: int = 500, prime: str = "", temperature: float = 1.0,
               top_k: int = 0, top_p: float = 1.0, stop: Optional[str] = None,
               seed: Seed = None):
        """The characters of sample(), one at a time, as they are generated (the prime first).

        Options are checked here, before the first character: bad ones raise CharrnnError.
        """
        sample_mod.check_options(length, temperature, top_k, top_p)
        prime_ids = data.encode(prime, self.vocab) if prime else np.zeros(0, dtype=np.int64)
        rng = sample_mod.make_rng(seed)  # a Generator passed as seed is used as it is
        chars = sample_mod.generate(self.params, self.spec, self.vocab, length, rng,
                                    temperature=temperature, top_k=top_k, top_p=top_p,
                                    prime=prime_ids, threads=self.threads)
        if stop:
            chars = sample_mod.until(chars, stop)
        return _chain(prime, chars)

    @checked
    def sample(self, length: int = 500, prime: str = "", temperature: float = 1.0,
               top_k: int = 0, top_p: float = 1.0, stop: Optional[str] = None,
               seed: Seed = None):
        """prime followed by `length` generated characters (fewer when `stop` ends it early):
        the text `charrnn sample` prints for the same options and seed.

        temperature 0 picks the most likely character each time; top_k (0: all) and top_p (1:
        all) restrict each draw to the most likely characters; stop ends the text right after
        it first appears in the generated part; seed an int, None (unpredictable) or an
        np.random.Generator.
        """
        return "".join(self.stream(length, prime, temperature, top_k, top_p, stop, seed))

    @checked
    def score(self, text: Text, windows: Optional[int] = None,
              num_windows: int = evaluate.NUM_WINDOWS, seed: int = 0):
        """The loss on text (a str, or an array of its ids) as `charrnn eval --json` gives it.
        Returns {"loss_nats", "bits_per_char", "perplexity", "chars"}.

        By default every character after the first, given all before it, from a zero state.
        windows=W: nanoGPT's protocol instead: the mean over num_windows random windows of W
        characters (drawn with `seed`), each character predicted from a zero state and the
        characters before it in its window; the result also holds "window", "num_windows" and
        "seed".
        """
        ids = self._ids(text)
        if windows is None:
            total, n = evaluate.score(self.params, self.spec, ids, n_streams=1,
                                      threads=self.threads)
            protocol = {}
        else:
            total, n = evaluate.score_windows(self.params, self.spec, ids, windows, num_windows,
                                              seed, self.threads)
            protocol = {"window": windows, "num_windows": num_windows, "seed": seed}
        if n == 0:
            raise CharrnnError("the text is too short to score (it needs at least 2 characters)")
        nats = total / n
        return {"loss_nats": nats, "bits_per_char": bits(nats), "perplexity": float(np.exp(nats)),
                "chars": n, **protocol}

    @checked
    def trace(self, text: Text, top: Optional[int] = None):
        """One forward pass over text (L characters) -> Trace: what each unit did, what the
        model expected next. Trace.loss.mean() equals score(text)["loss_nats"].

        Trace.probs takes L x V x 8 bytes (8 GB for 200,000 characters of a vocabulary of
        5,000); top=K keeps only each position's K most likely next characters (Trace.top_ids,
        Trace.top_probs) instead, so the memory grows with L alone. The text is run one window
        at a time (inference.trace_windows), and a trace that would need more memory than the
        machine has free is refused (CharrnnError) before it starts.
        """
        ids = self._ids(text)
        if len(ids) == 0:
            raise CharrnnError("the text to trace is empty")
        if top is not None and not 1 <= top <= len(self.vocab):
            raise CharrnnError(f"top must be from 1 to the vocabulary's {len(self.vocab)}, "
                               f"got {top}")
        L = len(ids)
        runtime.check_memory(self.trace_bytes(L, top), f"a trace of {L:,} characters",
                             "trace a shorter text" + ("" if top else ", or pass top=K"))
        probs = np.empty((L, len(self.vocab))) if top is None else None
        top_ids = np.empty((L, top), dtype=np.int64) if top else None
        top_probs = np.empty((L, top)) if top else None
        loss, layers, at = np.empty(L - 1), None, 0
        for logits, window in inference.trace_windows(self.params, self.spec, ids, self.threads):
            w = len(logits)
            logp = log_softmax(logits.astype(np.float64))
            nxt = ids[at + 1:at + w + 1]  # the characters that came next; the last has none
            loss[at:at + len(nxt)] = -logp[np.arange(len(nxt)), nxt]
            p = np.exp(logp, out=logp if probs is None else probs[at:at + w])
            if top:
                top_ids[at:at + w] = most_likely(p, top)
                top_probs[at:at + w] = np.take_along_axis(p, top_ids[at:at + w], axis=1)
            if layers is None:
                layers = [{name: np.empty((L,) + a.shape[1:], a.dtype) for name, a in
                           layer.items()} for layer in window]
            for whole, part in zip(layers, window):
                for name, a in part.items():
                    whole[name][at:at + w] = a
            at += w
        return Trace(text=text if isinstance(text, str) else data.decode(ids, self.vocab),
                     ids=ids, probs=probs, loss=loss, layers=layers, top_ids=top_ids,
                     top_probs=top_probs)

    def trace_bytes(self, L, top=None):
        """About the bytes trace() of L characters holds at its peak: its arrays (probs or the
        top K, loss, every layer's activations) and one window's work."""
        V = len(self.vocab)
        _, layers = inference.trace(self.params, self.spec, np.zeros(1, dtype=np.int64))
        per_char = sum(a.nbytes for layer in layers for a in layer.values())
        per_char += 8 + (V * 8 if top is None else top * 16)
        window = inference.text_window(self.spec) * (V * 8 * 3 + per_char * 4)
        return L * per_char + window

    def _ids(self, text):
        if isinstance(text, str):
            return data.encode(text, self.vocab)
        ids = np.asarray(text)
        if ids.ndim != 1 or ids.dtype.kind not in "iu" or (
                len(ids) and (ids.min() < 0 or ids.max() >= len(self.vocab))):
            raise CharrnnError("text must be a str or a 1-D array of ids of this vocabulary")
        return ids


def most_likely(p, k):
    """p (w, V) -> (w, k) the ids of each row's k largest values, largest first, a tie going to
    the lower id: the first k of a stable argsort of -p, in O(V) a row rather than a sort's
    O(V log V) (at V = 5,000 the sort was nearly all of a long trace's time)."""
    kth = -np.partition(-p, k - 1, axis=1)[:, k - 1:k]  # each row's k-th largest value
    rows, cols = np.nonzero(p >= kth)  # k or more a row (ties), row-major
    order = np.lexsort((cols, -p[rows, cols], rows))
    rows, cols = rows[order], cols[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows)  # place within its row
    out = np.empty((len(p), k), dtype=np.int64)
    keep = rank < k
    out[rows[keep], rank[keep]] = cols[keep]
    return out


def _chain(prime, chars):
    yield from prime
    yield from chars


@checked
def load(path: PathLike):
    """The trained model in checkpoint `path` (a last.npz, best.npz or step-NNNNNN.npz)."""
    return Model(checkpoint.load(path))


@checked
def export(ckpt: Union[PathLike, Model], output: PathLike, *, window: bool = False):
    """Write the model of checkpoint `ckpt` (a path, or a loaded Model) as the ONNX file
    `output`, as `charrnn export` does, whole or not at all: the step graph (ids [N] and each
    layer's state -> the next-character logits [N, V] and the new state), or with window the
    window graph (ids [T, N] -> logits [T, N, V] and the last state). The vocabulary and the
    model's sizes are in its metadata (docs/export.md). Needs the onnx package: pip install
    'charrnn[export]'. Returns an Exported (path, size, graph, inputs, outputs)."""
    from . import onnxgraph
    ck = ckpt.checkpoint if isinstance(ckpt, Model) else checkpoint.load(ckpt)
    return onnxgraph.export(ck, output, window=window)


@checked
def train(corpus: Union[PathLike, Sequence[PathLike]],
          config: Union[None, PathLike, dict, TrainConfig] = None, *, progress: bool = True,
          log: Optional[Callable] = None, on_eval: Optional[Callable] = None,
          resume: Optional[PathLike] = None, init_from: Optional[PathLike] = None,
          overwrite: bool = False, **overrides):
    """Train a model, as `charrnn train` does; returns a Result (run_dir, best_val, step, chars).

    corpus: a text file or folder, or a list of them. config: a YAML file's path, a dict or a
    TrainConfig; keyword overrides (any TrainConfig key, e.g. out="runs/x", steps=500) win over
    it, and it over the defaults. resume: a checkpoint to continue, in its folder; init_from: a
    checkpoint whose weights start a new run; overwrite: replace a run already in `out`.
    progress: show the progress bar and, unless log is given, the log on stderr; log(text)
    receives the log lines instead. on_eval(record) is called after each evaluation with its
    metrics line; an exception it raises ends the run there (the checkpoints are saved).

    The run directory is locked while training (a second training into it is refused). Ctrl-C or
    SIGTERM ends the run after the current step, saves last.npz and raises Stopped (a
    KeyboardInterrupt) carrying the Result.

    Under an MPI launcher (`mpiexec -n P python script.py`, with charrnn[mpi] installed) every
    process calls train with the same arguments and they train one model together: rank 0 reads
    the config and checkpoint, writes the run folder and calls log and on_eval; every rank
    returns the same Result (docs/parallel.md).
    """
    group = distributed.world()
    paths = corpus_mod.as_paths(corpus)
    leader = group.leader
    progress = progress and leader
    echo = (log or (training.echo_stderr if progress else None)) if leader else None
    with group.together():
        # rank 0 reads the config and checkpoint and checks the folder; the others take them
        ck, cfg, given = group.on_leader(lambda: _resolve(config, overrides, resume, init_from,
                                                          overwrite))
        text = group.everywhere(lambda: corpus_mod.open_corpus(
            paths, cfg.cache_dir, vocab=ck.vocab if ck else None, progress=progress,
            warn=log if leader else (lambda line: None)))
        _check_same_corpus(group, text, paths)
        with _claimed(group, cfg, ck, text, resume, overwrite) as run_dir:
            return training.train(cfg, text, run_dir,
                                  resume_ck=ck if resume is not None else None,
                                  init_ck=ck if init_from is not None else None,
                                  progress=progress, echo=echo, on_eval=on_eval if leader else None,
                                  group=group, given=given)


@dataclass
class Plan:
    """What train() would do with the same arguments, found without training
    (`charrnn train --dry-run`)."""
    config: TrainConfig  # the run's config; with `time`, the keys its rules chose filled in
    choices: list  # with `time`, the choice and the reason for each part of it; else []
    report: list  # lines: the model's size, the batches per epoch, a memory estimate
    warnings: list  # what would go wrong or run slowly, one line each


@checked
def plan(corpus: Union[PathLike, Sequence[PathLike]],
         config: Union[None, PathLike, dict, TrainConfig] = None, *, progress: bool = True,
         resume: Optional[PathLike] = None, init_from: Optional[PathLike] = None,
         **overrides) -> Plan:
    """What train(corpus, config, resume=..., init_from=..., **overrides) would do, without
    training or writing anything: one pass over the corpus (nothing is cached) and, with
    `time`, a few timed steps of each candidate model on random text, as train measures them.
    progress: the pass's progress bar on stderr.

    Under an MPI launcher every process calls plan, as with train: the candidates' paces are
    then the processes' together (the run's), rank 0 reads the config and the corpus, and every
    rank returns the same Plan.
    """
    group = distributed.world()
    paths = corpus_mod.as_paths(corpus)
    with group.together():
        ck, cfg, given = group.on_leader(
            lambda: resume_mod.resolve_given(config, overrides, resume, init_from))
        vocab = ck.vocab if ck else None
        scanned = group.on_leader(lambda: _scanned(paths, vocab, progress))
        choices = []
        if given is not None:
            cfg, choices = schedule.plan_time(
                dataclasses.replace(cfg, threads=runtime.step_threads(cfg.threads, group.size)),
                given, data.split_sizes(scanned.chars, cfg.val_frac)[0], len(scanned.vocab),
                group)
    est = report.estimate(cfg, scanned.chars, len(vocab or scanned.vocab))
    return Plan(config=cfg, choices=choices, report=report.dry_run_lines(cfg, est, scanned.source),
                warnings=report.warnings(cfg, est))


def _scanned(paths, vocab, progress):
    """The corpus's first pass; a checkpoint's vocab (when given) must hold every character."""
    scanned = corpus_mod.scan(paths, progress=progress)
    if vocab is not None:
        corpus_mod.check_vocab(scanned, vocab)
    return scanned


def _check_same_corpus(group, text, paths):
    """An error on every rank when the ranks read different texts at paths."""
    hashes = group.gather_rows(np.array([text.hash]))
    if len(set(hashes)) > 1:
        raise group.error(f"the ranks read different corpora (content hashes "
                          f"{', '.join(hashes)}): every machine needs the same text at "
                          f"{', '.join(map(str, paths))}")


def _resolve(config, overrides, resume, init_from, overwrite):
    """-> (Checkpoint or None, TrainConfig, the keys the user set when `time` is to choose the
    others, else None); a fresh run refused early when its folder holds one."""
    ck, cfg, given = resume_mod.resolve_given(config, overrides, resume, init_from)
    if resume is None and not overwrite:
        # before reading the corpus, which may take a while; claim() checks again, under the
        # lock, where it cannot race another process
        rundir.RunDir(cfg.out).refuse_a_run()
    return ck, cfg, given


@contextlib.contextmanager
def _claimed(group, cfg, ck, text, resume, overwrite):
    """The run folder, locked by rank 0 for the run (the other ranks never touch it)."""
    run_dir = rundir.RunDir(cfg.out)

    def claim():
        if resume is not None:
            resume_mod.check_corpus(ck, text, resume)
        run_dir.claim(fresh=resume is None, overwrite=overwrite)
    group.on_leader(claim)
    try:
        yield run_dir
    finally:
        run_dir.release()
