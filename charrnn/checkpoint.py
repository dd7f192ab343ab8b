"""The one owner of the .npz checkpoint format: writing it atomically, reading and checking it.

A checkpoint is self-contained: weights, optimizer state, vocabulary, resolved config, step,
data position, carried hidden state and random generator state, all plain arrays, so it loads
with `np.load(path, allow_pickle=False)`. The README documents every key.
"""
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from . import config as config_mod
from . import atomic, model
from .errors import CharrnnError
from .optim import init_state

FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    config: config_mod.TrainConfig
    vocab: str
    params: dict
    optim_state: dict = field(default_factory=dict)
    step: int = 0
    chars: int = 0
    elapsed: float = 0.0
    best_val: float = float("inf")
    corpus_hash: str = ""
    rng_state: dict = field(default_factory=dict)
    carried_state: list = field(default_factory=list)
    data_position: int = 0
    # training loss summed since the last evaluation, so that a resumed run's next metrics line
    # averages the same steps as an uninterrupted run's
    loss_sum: float = 0.0
    loss_count: int = 0
    evals_since_best: int = 0  # evaluations without a new best, for `patience`
    record: Optional[dict] = None  # the metrics line of the evaluation that saved it, if any
    format_version: int = FORMAT_VERSION  # as read; save() always writes FORMAT_VERSION

    @property
    def spec(self):
        return model.spec_of(self.config, len(self.vocab))


def _text(s):
    return np.array(s)  # 0-d unicode array: readable without pickle


def to_arrays(ck):
    """Checkpoint -> dict of key -> array, exactly what goes into the .npz."""
    arrays = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "config": _text(json.dumps(config_mod.to_dict(ck.config))),
        "vocab": np.frombuffer(ck.vocab.encode("utf-32-le"), dtype=np.uint32).copy(),
        "step": np.array(ck.step, dtype=np.int64),
        "chars": np.array(ck.chars, dtype=np.int64),
        "elapsed": np.array(ck.elapsed, dtype=np.float64),
        "best_val": np.array(ck.best_val, dtype=np.float64),
        "corpus_hash": _text(ck.corpus_hash),
        "rng_state": _text(json.dumps(ck.rng_state)),
        "data_position": np.array(ck.data_position, dtype=np.int64),
        "loss_sum": np.array(ck.loss_sum, dtype=np.float64),
        "loss_count": np.array(ck.loss_count, dtype=np.int64),
        "evals_since_best": np.array(ck.evals_since_best, dtype=np.int64),
    }
    if ck.record is not None:
        arrays["record"] = _text(json.dumps(ck.record))
    for k, v in ck.params.items():
        arrays[f"param/{k}"] = v
    for k, v in ck.optim_state.items():
        arrays[f"optim/{k}"] = v
    names = ck.spec.cell_module.STATE_NAMES
    for layer, st in enumerate(ck.carried_state):
        for name, v in zip(names, st):
            arrays[f"state/l{layer}.{name}"] = v
    return arrays


def to_bytes(ck):
    """The .npz file of ck, in memory."""
    buffer = io.BytesIO()
    np.savez(buffer, **to_arrays(ck))
    return buffer.getvalue()


def save(path, ck):
    """Write atomically (atomic.write_atomic): on any failure whatever was at path is left
    untouched and no temporary file remains."""
    path = os.fspath(path)
    existed = os.path.exists(path)
    try:
        # a file object, not a name: np.savez would append ".npz" to a name
        atomic.write_atomic(path, lambda f: np.savez(f, **to_arrays(ck)))
    except OSError as e:
        kept = ("the previous checkpoint is kept" if existed else
                "no checkpoint was there before, so none is kept")
        raise CharrnnError(f"could not save checkpoint {path}: {e.strerror or e}; {kept}") from None


def _read_npz(path):
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a bare .npy array
            raise ValueError("it holds a single array, not an .npz archive")
        with loaded as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise CharrnnError(f"checkpoint {path} does not exist") from None
    except IsADirectoryError:
        raise CharrnnError(f"checkpoint {path} is a directory") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise CharrnnError(f"checkpoint {path} is not a readable charrnn .npz file "
                           f"({type(e).__name__}: {e})") from None


def _scalar(arrays, key, kind, path):
    a = arrays[key]
    if a.shape != () or a.dtype.kind not in kind:
        raise CharrnnError(f"checkpoint {path}: key {key!r} has the wrong shape or type")
    return a.item()


def load(path):
    """Read and check a checkpoint; any problem is a CharrnnError naming what is wrong."""
    arrays = _read_npz(path)
    required = ("format_version", "config", "vocab", "step")
    for key in required:
        if key not in arrays:
            raise CharrnnError(f"checkpoint {path} lacks the key {key!r}")
    version = _scalar(arrays, "format_version", "iu", path)
    if version > FORMAT_VERSION:
        raise CharrnnError(f"checkpoint {path} has format version {version}, newer than this "
                           f"charrnn reads ({FORMAT_VERSION}); upgrade charrnn")
    try:
        cfg = config_mod.build(json.loads(_scalar(arrays, "config", "U", path)))
    except (json.JSONDecodeError, CharrnnError) as e:
        raise CharrnnError(f"checkpoint {path} has a bad config: {e}") from None
    vocab_cps = arrays["vocab"]
    if vocab_cps.dtype != np.uint32 or vocab_cps.ndim != 1 or len(vocab_cps) == 0:
        raise CharrnnError(f"checkpoint {path}: key 'vocab' has the wrong shape or type")
    try:
        vocab = vocab_cps.tobytes().decode("utf-32-le")
    except UnicodeDecodeError:
        raise CharrnnError(f"checkpoint {path}: key 'vocab' holds invalid characters") from None
    spec = model.spec_of(cfg, len(vocab))
    params = _checked_group(arrays, "param/", model.param_shapes(spec), cfg.dtype, path)
    ck = Checkpoint(config=cfg, vocab=vocab, params=params,
                    step=_scalar(arrays, "step", "iu", path), format_version=version)
    for key, kind in (("chars", "iu"), ("elapsed", "f"), ("best_val", "f"),
                      ("data_position", "iu"), ("corpus_hash", "U"), ("loss_sum", "f"),
                      ("loss_count", "iu"), ("evals_since_best", "iu")):
        if key in arrays:
            setattr(ck, key, _scalar(arrays, key, kind, path))
    for key in ("step", "chars", "data_position", "loss_count", "evals_since_best"):
        if getattr(ck, key) < 0:
            raise CharrnnError(f"checkpoint {path}: key {key!r} is negative")
    if "rng_state" in arrays:
        ck.rng_state = _rng_state(_scalar(arrays, "rng_state", "U", path), path)
    if "record" in arrays:
        ck.record = _record(_scalar(arrays, "record", "U", path), ck.step, path)
    optim_keys = [k for k in arrays if k.startswith("optim/")]
    if optim_keys:
        expected = init_state(cfg.optimizer, params)
        ck.optim_state = _checked_group(
            arrays, "optim/", {k: v.shape for k, v in expected.items()}, None, path)
    names = spec.cell_module.STATE_NAMES
    if any(k.startswith("state/") for k in arrays):
        shape = (cfg.batch_size, cfg.hidden_size)
        flat = _checked_group(arrays, "state/", {f"l{i}.{n}": shape for i in range(cfg.layers)
                                                 for n in names}, cfg.dtype, path)
        ck.carried_state = [tuple(flat[f"l{i}.{n}"] for n in names) for i in range(cfg.layers)]
    return ck


def _rng_state(text, path):
    """The generator state saved as JSON, checked by loading it into a fresh generator."""
    try:
        state = json.loads(text)
        np.random.default_rng().bit_generator.state = state
    except (ValueError, TypeError, KeyError) as e:
        raise CharrnnError(f"checkpoint {path}: key 'rng_state' is not a random generator "
                           f"state ({e})") from None
    return state


def _record(text, step, path):
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not (isinstance(record, dict) and record.get("step") == step):
        raise CharrnnError(f"checkpoint {path}: key 'record' is not the metrics line of its step")
    return record


def _checked_group(arrays, prefix, shapes, dtype, path):
    """The arrays under prefix, checked to be exactly `shapes` (name -> shape), finite, of dtype."""
    found = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
    missing = [k for k in shapes if k not in found]
    extra = [k for k in found if k not in shapes]
    if missing or extra:
        raise CharrnnError(
            f"checkpoint {path} does not match its model: "
            + (f"missing {', '.join(prefix + k for k in missing)}" if missing else "")
            + ("; " if missing and extra else "")
            + (f"unexpected {', '.join(prefix + k for k in extra)}" if extra else ""))
    for k, shape in shapes.items():
        a = found[k]
        if a.shape != tuple(shape):
            raise CharrnnError(f"checkpoint {path}: {prefix}{k} has shape {a.shape}, "
                               f"expected {tuple(shape)}")
        if dtype is not None and a.dtype != np.dtype(dtype):
            raise CharrnnError(f"checkpoint {path}: {prefix}{k} has dtype {a.dtype}, "
                               f"expected {dtype}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise CharrnnError(f"checkpoint {path}: {prefix}{k} holds non-finite values")
    return {k: found[k] for k in shapes}
