"""The one owner of the .npz checkpoint format: writing it atomically, reading and checking it.

A checkpoint is self-contained: a run's state (runstate.RunState: weights, optimizer state,
carried hidden state, data position, random generator state, counters), its vocabulary and
resolved config, all plain arrays, so it loads with `np.load(path, allow_pickle=False)`.
docs/checkpoint.md documents every key.
"""
import io
import json
import math
import os
import re
import zipfile
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

import numpy as np

from . import config as config_mod
from . import atomic, model
from .errors import CharrnnError
from .optim import SQUARES, init_state
from .runstate import RunState

FORMAT_VERSION = 1
READS = (FORMAT_VERSION,)  # the format versions this charrnn reads


@dataclass(kw_only=True)
class Checkpoint(RunState):
    """A run's state, and what makes it usable alone: the model's config and vocabulary."""
    config: config_mod.TrainConfig
    vocab: str
    corpus_hash: str = ""  # of the text it was trained on (corpus.Corpus.hash)
    record: Optional[dict] = None  # the metrics line of the evaluation that saved it, if any
    format_version: int = FORMAT_VERSION  # as read; save() always writes FORMAT_VERSION

    @property
    def spec(self):
        return model.spec_of(self.config, len(self.vocab))

    @property
    def weights(self):
        """The weights to use the model with: the moving average (ema_params) when the
        evaluation that saved the checkpoint scored it better, else params, which training
        continues from."""
        if self.ema_params is not None and (self.record or {}).get("weights") == "ema":
            return self.ema_params
        return self.params


class Field(NamedTuple):
    """How one field of a Checkpoint is stored. key: its .npz key, or the prefix of its arrays
    (ending in "/"); write(value, ck) -> {key: array}; read(arrays, found, path) -> the value,
    checked (found: the fields read before it, in FIELDS' order); required: a checkpoint without
    the key is refused (else the field keeps its default; a prefix's arrays are always read)."""
    key: str
    write: Callable
    read: Callable
    required: bool = False


def _error(path, key, rule, value):
    return CharrnnError(f"checkpoint {path}: key {key!r} must be {rule}, got {value!r}")


def _scalar(arrays, key, kind, path):
    a = arrays[key]
    if a.shape != () or a.dtype.kind not in kind:
        raise CharrnnError(f"checkpoint {path}: key {key!r} has the wrong shape or type")
    return a.item()


def _number(key, dtype, rule, valid, required=False):
    """A scalar stored as dtype (int64 or float64), that valid(value) accepts."""
    kind = "iu" if dtype == np.int64 else "f"

    def read(arrays, found, path):
        value = _scalar(arrays, key, kind, path)
        if not valid(value):
            raise _error(path, key, rule, value)
        return value
    return Field(key, lambda value, ck: {key: np.array(value, dtype=dtype)}, read, required)


def _count(key, required=False):
    return _number(key, np.int64, "0 or more", lambda v: v >= 0, required)


def _text(key, parse, write=lambda value: value, required=False):
    """A 0-d unicode array (readable without pickle): write(value) -> str, and
    parse(text, found, path) -> the value, checked."""
    return Field(key, lambda value, ck: {key: np.array(write(value))},
                 lambda arrays, found, path: parse(_scalar(arrays, key, "U", path), found, path),
                 required)


def _format_version(arrays, found, path):
    version = _scalar(arrays, "format_version", "iu", path)
    if version not in READS:
        raise CharrnnError(f"checkpoint {path}: key 'format_version' is {version}; this charrnn "
                           f"reads format {', '.join(map(str, READS))}"
                           + ("; upgrade charrnn" if version > FORMAT_VERSION else ""))
    return version


def _config(text, found, path):
    try:
        return config_mod.build(json.loads(text))
    except (json.JSONDecodeError, CharrnnError) as e:
        raise CharrnnError(f"checkpoint {path} has a bad config: {e}") from None


def _corpus_hash(text, found, path):
    if text and re.fullmatch(r"[0-9a-f]{16}", text) is None:
        raise _error(path, "corpus_hash", "16 hex digits or empty", text)
    return text


def _rng(text, found, path):
    """The generator state saved as JSON -> a generator in that state."""
    rng = np.random.default_rng()
    try:
        rng.bit_generator.state = json.loads(text)
    except (ValueError, TypeError, KeyError) as e:
        raise CharrnnError(f"checkpoint {path}: key 'rng_state' is not a random generator "
                           f"state ({e})") from None
    return rng


def _record(text, found, path):
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not (isinstance(record, dict) and record.get("step") == found["step"]):
        raise CharrnnError(f"checkpoint {path}: key 'record' is not the metrics line of its step")
    return record


def _best_val(value):
    return value >= 0 and not math.isnan(value) and value != -math.inf


def _write_group(prefix):
    return lambda value, ck: {f"{prefix}{k}": v for k, v in value.items()}


def _write_vocab(vocab, ck):
    return {"vocab": np.frombuffer(vocab.encode("utf-32-le"), dtype=np.uint32).copy()}


def _write_carried(carried, ck):
    names = ck.spec.cell_module.STATE_NAMES
    return {f"state/l{layer}.{name}": v for layer, st in enumerate(carried)
            for name, v in zip(names, st)}


def _params(arrays, found, path):
    spec = model.spec_of(found["config"], len(found["vocab"]))
    return _checked_group(arrays, "param/", model.param_shapes(spec), found["config"].dtype, path)


def _optim_state(arrays, found, path):
    """The optimizer's slots, checked against what init_state makes for these weights ({} when
    the checkpoint has none)."""
    if not any(k.startswith("optim/") for k in arrays):
        return {}
    cfg = found["config"]
    expected = init_state(cfg.optimizer, found["params"])
    state = _checked_group(arrays, "optim/", {k: v.shape for k, v in expected.items()}, None, path)
    t = state["t"]
    if t.dtype.kind not in "iu" or t < 0:
        raise CharrnnError(f"checkpoint {path}: key 'optim/t' must be a count of updates")
    for k, v in state.items():
        if k != "t" and v.dtype != np.dtype(cfg.dtype):
            raise CharrnnError(f"checkpoint {path}: optim/{k} has dtype {v.dtype}, expected "
                               f"{cfg.dtype}")
        if k.split(".")[0] in SQUARES and (v < 0).any():
            raise CharrnnError(f"checkpoint {path}: optim/{k} holds negative values (a sum "
                               f"of squared gradients)")
    return state


def _ema_params(arrays, found, path):
    """The moving average of the weights, checked like them (None when the checkpoint has
    none: ema off, or saved before the key existed)."""
    if not any(k.startswith("ema/") for k in arrays):
        return None
    cfg = found["config"]
    if not cfg.ema:
        raise CharrnnError(f"checkpoint {path} holds ema/ arrays but its config's ema is 0")
    spec = model.spec_of(cfg, len(found["vocab"]))
    return _checked_group(arrays, "ema/", model.param_shapes(spec), cfg.dtype, path)


def _carried_state(arrays, found, path):
    """Per layer a tuple of (N, H) arrays ([] when the checkpoint has none)."""
    if not any(k.startswith("state/") for k in arrays):
        return []
    cfg = found["config"]
    spec = model.spec_of(cfg, len(found["vocab"]))
    names = spec.cell_module.STATE_NAMES
    shape = (cfg.batch_size, spec.cell_size)
    flat = _checked_group(arrays, "state/", {f"l{i}.{n}": shape for i in range(cfg.layers)
                                             for n in names}, cfg.dtype, path)
    return [tuple(flat[f"l{i}.{n}"] for n in names) for i in range(cfg.layers)]


# every field of a Checkpoint -> how it is stored and checked, in the order the .npz holds them
# and load() reads them (a field may check itself against those read before it); None: not
# saved. A checkpoint is read key by key against this table; any other key is refused, since
# this version writes none and a newer format says so in format_version.
FIELDS = {
    "format_version": Field("format_version", lambda value, ck: {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64)}, _format_version, True),
    "config": _text("config", _config, lambda cfg: json.dumps(config_mod.to_dict(cfg)), True),
    "vocab": Field("vocab", _write_vocab, lambda arrays, found, path: _vocab(arrays, path), True),
    "step": _count("step", required=True),
    "chars": _count("chars"),
    "elapsed": _number("elapsed", np.float64, "finite, 0 or more",
                       lambda v: math.isfinite(v) and v >= 0),
    "best_val": _number("best_val", np.float64, "0 or more, or inf", _best_val),
    "corpus_hash": _text("corpus_hash", _corpus_hash),
    "rng": _text("rng_state", _rng, lambda rng: json.dumps(rng.bit_generator.state)),
    "data_position": _count("data_position"),
    "loss_sum": _number("loss_sum", np.float64, "finite", math.isfinite),
    "loss_count": _count("loss_count"),
    "evals_since_best": _count("evals_since_best"),
    "record": _text("record", _record, json.dumps),
    "params": Field("param/", _write_group("param/"), _params),
    "optim_state": Field("optim/", _write_group("optim/"), _optim_state),
    "carried_state": Field("state/", _write_carried, _carried_state),
    "ema_params": Field("ema/", _write_group("ema/"), _ema_params),
    "last_val": None,  # not saved: runstate.py says why
    "best_floor": None,
}


def to_arrays(ck):
    """Checkpoint -> dict of key -> array, exactly what goes into the .npz."""
    arrays = {}
    for name, stored in FIELDS.items():
        value = getattr(ck, name)
        if stored is not None and value is not None:
            arrays.update(stored.write(value, ck))
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


def _unknown_key(arrays):
    """The first key of arrays that no field of FIELDS stores, else None."""
    keys = [f.key for f in FIELDS.values() if f is not None]
    prefixes = tuple(k for k in keys if k.endswith("/"))
    return next((k for k in sorted(arrays) if k not in keys and not k.startswith(prefixes)), None)


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
    """Read and check a checkpoint whole, field by field (FIELDS); any problem is a CharrnnError
    naming the key."""
    arrays = _read_npz(path)
    unknown = _unknown_key(arrays)
    if unknown is not None:
        raise CharrnnError(f"checkpoint {path}: unexpected key {unknown!r}")
    for stored in FIELDS.values():
        if stored is not None and stored.required and stored.key not in arrays:
            raise CharrnnError(f"checkpoint {path} lacks the key {stored.key!r}")
    found = {}
    for name, stored in FIELDS.items():
        if stored is not None and (stored.key in arrays or stored.key.endswith("/")):
            found[name] = stored.read(arrays, found, path)
    return Checkpoint(**found)


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
