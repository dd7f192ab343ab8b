"""The one owner of the .npz checkpoint format: writing it atomically, reading and checking it.

A checkpoint is self-contained: weights, optimizer state, vocabulary, resolved config, step,
data position, carried hidden state and random generator state, all plain arrays, so it loads
with `np.load(path, allow_pickle=False)`. The README documents every key.
"""
import io
import json
import math
import os
import re
import zipfile
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from . import config as config_mod
from . import atomic, model
from .errors import CharrnnError
from .optim import SQUARES, init_state

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


# every scalar key: (type kinds numpy may store it as, what its value must be). A checkpoint
# is read key by key against this table; any other top-level key is refused, since this version
# writes none and a newer format says so in format_version.
SCALARS = {
    "format_version": ("iu", "a format this charrnn reads"),
    "step": ("iu", "0 or more"), "chars": ("iu", "0 or more"),
    "data_position": ("iu", "0 or more"), "loss_count": ("iu", "0 or more"),
    "evals_since_best": ("iu", "0 or more"),
    "elapsed": ("f", "finite, 0 or more"), "loss_sum": ("f", "finite"),
    "best_val": ("f", "0 or more, or inf"),
    "config": ("U", "a config"), "corpus_hash": ("U", "16 hex digits or empty"),
    "rng_state": ("U", "a random generator state"), "record": ("U", "the metrics line of its step"),
}
GROUPS = ("param/", "optim/", "state/")
READS = (FORMAT_VERSION,)  # the format versions this charrnn reads


def _valid(key, value):
    rule = SCALARS[key][1]
    if key == "format_version":
        return value in READS
    if rule == "0 or more":
        return value >= 0
    if key == "elapsed":
        return math.isfinite(value) and value >= 0
    if key == "loss_sum":
        return math.isfinite(value)
    if key == "best_val":
        return value >= 0 and not math.isnan(value) and value != -math.inf
    if key == "corpus_hash":
        return value == "" or re.fullmatch(r"[0-9a-f]{16}", value) is not None
    return True


def _scalars(arrays, path):
    """Every scalar key present, type- and range-checked -> {key: Python value}."""
    unknown = sorted(k for k in arrays if k not in SCALARS and k != "vocab"
                     and not k.startswith(GROUPS))
    if unknown:
        raise CharrnnError(f"checkpoint {path}: unexpected key {unknown[0]!r}")
    for key in ("format_version", "config", "vocab", "step"):
        if key not in arrays:
            raise CharrnnError(f"checkpoint {path} lacks the key {key!r}")
    found = {}
    for key, (kind, rule) in SCALARS.items():
        if key not in arrays:
            continue
        value = _scalar(arrays, key, kind, path)
        if not _valid(key, value):
            if key == "format_version":
                raise CharrnnError(
                    f"checkpoint {path}: key 'format_version' is {value}; this charrnn reads "
                    f"format {', '.join(map(str, READS))}"
                    + ("; upgrade charrnn" if value > FORMAT_VERSION else ""))
            raise CharrnnError(f"checkpoint {path}: key {key!r} must be {rule}, got {value!r}")
        found[key] = value
    return found


def _vocab(arrays, path):
    """The vocabulary: distinct characters in increasing order, as every encoder assumes."""
    cps = arrays["vocab"]
    if cps.dtype != np.uint32 or cps.ndim != 1 or len(cps) == 0:
        raise CharrnnError(f"checkpoint {path}: key 'vocab' has the wrong shape or type")
    try:
        vocab = cps.tobytes().decode("utf-32-le")
    except UnicodeDecodeError:
        raise CharrnnError(f"checkpoint {path}: key 'vocab' holds invalid characters") from None
    repeats = np.flatnonzero(np.diff(cps.astype(np.int64)) <= 0)
    if len(repeats):
        i = int(repeats[0])
        what = "twice" if cps[i] == cps[i + 1] else f"before {vocab[i + 1]!r}"
        raise CharrnnError(f"checkpoint {path}: key 'vocab' holds {vocab[i]!r} {what}: a "
                           f"vocabulary is distinct characters in increasing order")
    return vocab


def load(path):
    """Read and check a checkpoint whole; any problem is a CharrnnError naming the key."""
    arrays = _read_npz(path)
    found = _scalars(arrays, path)
    try:
        cfg = config_mod.build(json.loads(found["config"]))
    except (json.JSONDecodeError, CharrnnError) as e:
        raise CharrnnError(f"checkpoint {path} has a bad config: {e}") from None
    vocab = _vocab(arrays, path)
    spec = model.spec_of(cfg, len(vocab))
    params = _checked_group(arrays, "param/", model.param_shapes(spec), cfg.dtype, path)
    ck = Checkpoint(config=cfg, vocab=vocab, params=params, step=found["step"],
                    format_version=found["format_version"])
    for key in ("chars", "elapsed", "best_val", "data_position", "corpus_hash", "loss_sum",
                "loss_count", "evals_since_best"):
        if key in found:
            setattr(ck, key, found[key])
    if "rng_state" in found:
        ck.rng_state = _rng_state(found["rng_state"], path)
    if "record" in found:
        ck.record = _record(found["record"], ck.step, path)
    optim_keys = [k for k in arrays if k.startswith("optim/")]
    if optim_keys:
        expected = init_state(cfg.optimizer, params)
        ck.optim_state = _checked_group(
            arrays, "optim/", {k: v.shape for k, v in expected.items()}, None, path)
        t = ck.optim_state["t"]
        if t.dtype.kind not in "iu" or t < 0:
            raise CharrnnError(f"checkpoint {path}: key 'optim/t' must be a count of updates")
        for k, v in ck.optim_state.items():
            if k != "t" and v.dtype != np.dtype(cfg.dtype):
                raise CharrnnError(f"checkpoint {path}: optim/{k} has dtype {v.dtype}, expected "
                                   f"{cfg.dtype}")
            if k.split(".")[0] in SQUARES and (v < 0).any():
                raise CharrnnError(f"checkpoint {path}: optim/{k} holds negative values (a sum "
                                   f"of squared gradients)")
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
