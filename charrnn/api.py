"""The public API: load() -> Model (sample, stream, score, trace) and train(). charrnn's
__init__ re-exports it; the CLI and the sweeps call it."""
import contextlib
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import numpy as np

from . import checkpoint, corpus as corpus_mod, data, distributed, evaluate, \
    model as model_mod, resume as resume_mod, rundir, sample as sample_mod, training
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
    character ids.
    """
    text: str
    ids: np.ndarray
    probs: np.ndarray
    loss: np.ndarray
    layers: list


class Model:
    """A trained model: vocab (str, id order), spec (cell and sizes), params (name -> array),
    config (the TrainConfig it was trained with) and checkpoint (everything the file held)."""

    def __init__(self, ck):
        self.checkpoint = ck
        self.vocab, self.spec, self.params, self.config = ck.vocab, ck.spec, ck.params, ck.config

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
                                    prime=prime_ids)
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
    def score(self, text: Text):
        """The loss on text (a str, or an array of its ids) as `charrnn eval --json` gives it:
        every character after the first given all before it, from a zero state. Returns
        {"loss_nats", "bits_per_char", "perplexity", "chars"}."""
        ids = self._ids(text)
        total, n = evaluate.score(self.params, self.spec, ids, n_streams=1)
        if n == 0:
            raise CharrnnError("the text is too short to score (it needs at least 2 characters)")
        nats = total / n
        return {"loss_nats": nats, "bits_per_char": bits(nats), "perplexity": float(np.exp(nats)),
                "chars": n}

    @checked
    def trace(self, text: Text):
        """One forward pass over text (L characters) -> Trace: what each unit did, what the model
        expected next. Trace.loss.mean() equals score(text)["loss_nats"]."""
        ids = self._ids(text)
        if len(ids) == 0:
            raise CharrnnError("the text to trace is empty")
        logits, layers = model_mod.trace(self.params, self.spec, ids)
        logp = log_softmax(logits.astype(np.float64))
        loss = -logp[np.arange(len(ids) - 1), ids[1:]]
        return Trace(text=text if isinstance(text, str) else data.decode(ids, self.vocab),
                     ids=ids, probs=np.exp(logp), loss=loss, layers=layers)

    def _ids(self, text):
        if isinstance(text, str):
            return data.encode(text, self.vocab)
        ids = np.asarray(text)
        if ids.ndim != 1 or ids.dtype.kind not in "iu" or (
                len(ids) and (ids.min() < 0 or ids.max() >= len(self.vocab))):
            raise CharrnnError("text must be a str or a 1-D array of ids of this vocabulary")
        return ids


def _chain(prime, chars):
    yield from prime
    yield from chars


@checked
def load(path: PathLike):
    """The trained model in checkpoint `path` (a last.npz, best.npz or step-NNNNNN.npz)."""
    return Model(checkpoint.load(path))


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
        ck, cfg = group.on_leader(lambda: _resolve(config, overrides, resume, init_from,
                                                   overwrite))
        text = group.everywhere(lambda: corpus_mod.open_corpus(
            paths, cfg.cache_dir, vocab=ck.vocab if ck else None, progress=progress,
            warn=log if leader else (lambda line: None)))
        hashes = group.gather_rows(np.array([text.hash]))
        if len(set(hashes)) > 1:
            raise group.error(f"the ranks read different corpora (content hashes "
                              f"{', '.join(hashes)}): every machine needs the same text at "
                              f"{', '.join(map(str, paths))}")
        with _claimed(group, cfg, ck, text, resume, overwrite) as run_dir:
            if resume is not None and echo is not None:
                echo(resume_mod.describe(ck, cfg))
            return training.train(cfg, text, run_dir, resume=ck if resume is not None else None,
                                  init_from=ck if init_from is not None else None,
                                  progress=progress, echo=echo, on_eval=on_eval if leader else None,
                                  group=group)


def _resolve(config, overrides, resume, init_from, overwrite):
    """-> (Checkpoint or None, TrainConfig), a fresh run refused early when its folder holds one."""
    ck, cfg = resume_mod.resolve(config, overrides, resume, init_from)
    if resume is None and not overwrite:
        # before reading the corpus, which may take a while; claim() checks again, under the
        # lock, where it cannot race another process
        rundir.RunDir(cfg.out).refuse_a_run()
    return ck, cfg


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
