"""The training config: the schema (every key's type, default, help and range, written once in
TrainConfig), loading a YAML file over the defaults, flags over the file, and validation.

Unknown keys, duplicate keys and values of the wrong type or out of range are errors naming the
key. YAML 1.1 reads `1e-3` as a string, so numbers are coerced to the field's type; floats must
be finite. The CLI generates the `train` flags from the schema and checks their values with the
same coerce(), so a value is checked one way whether it comes from a file, a flag or Python.
"""
import dataclasses
import math
import os
import re
import typing
from dataclasses import dataclass, field, fields
from typing import Optional

import yaml

from .cells import CELLS
from .dropconnect import has_recurrent_weights
from .errors import CharrnnError
from .optim import LR_SCHEDULES, OPTIMIZERS


AUTO = "auto"  # steps: auto, fixed by the trainer to fit the time limit


def _key(default, help, *, choices=None, low=None, high=None, low_open=False, high_open=False,
         auto=False, duration=False):
    """A TrainConfig field with what the CLI and validation need: its help text, and its choices
    or its range (low, high; each bound closed unless *_open); auto: "auto" is a value too;
    duration: a length of time such as 90s, 10m or 1h30m (or a number of seconds)."""
    return field(default=default, metadata={
        "help": help, "choices": choices, "low": low, "high": high, "low_open": low_open,
        "high_open": high_open, "auto": auto, "duration": duration})


_DURATION = re.compile(r"(?:(\d+(?:\.\d*)?)h)?(?:(\d+(?:\.\d*)?)m)?(?:(\d+(?:\.\d*)?)s?)?")
MAX_DURATION = 366 * 86400  # a year: a cap that catches a unit typed wrong
MIN_TIME = 30  # seconds: `time` measures its candidates for a few seconds of it


def seconds_of(duration):
    """'90s', '10m', '1h30m', '1.5h', '600' or a number -> seconds (a positive float); else a
    ValueError."""
    if isinstance(duration, bool):
        raise ValueError(duration)
    if isinstance(duration, (int, float)):
        seconds = float(duration)
    else:
        match = _DURATION.fullmatch(str(duration).strip().lower())
        if match is None or not any(match.groups()):
            raise ValueError(duration)
        h, m, s = (float(x) if x else 0.0 for x in match.groups())
        seconds = 3600 * h + 60 * m + s
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_DURATION):
        raise ValueError(duration)
    return seconds


MAX_SIZE = 1 << 20  # a cap on the size keys, far above any model or batch a CPU can train


@dataclass
class TrainConfig:
    # model
    cell: str = _key("rnn", "recurrent cell", choices=tuple(CELLS))
    hidden_size: int = _key(256, "units per layer (H); with stack: residual the width of the "
                            "stream between layers", low=1, high=MAX_SIZE)
    layers: int = _key(1, "stacked recurrent layers", low=1, high=1024)
    dropout: float = _key(0.0, "dropout between layers and before the output", low=0.0, high=1.0,
                          high_open=True)
    dropout_mode: str = _key("step", "dropout's masks: step (a new one at every step) or locked "
                             "(variational: one per stream for the whole window)",
                             choices=("step", "locked"))
    weight_drop: float = _key(0.0, "recurrent DropConnect: drop this share of each cell's "
                              "hidden-to-hidden weights Wh, one mask per window (rnn, lstm, gru; "
                              "mingru and minlstm have no Wh)", low=0.0, high=1.0, high_open=True)
    dtype: str = _key("float32", "floating-point type", choices=("float32", "float64"))
    stack: str = _key("plain", "how the layers stack: plain (one-hot input, each cell feeding the "
                      "next) or residual (an embedding, pre-norm residual blocks with RMSNorm "
                      "around each cell, a final norm)", choices=("plain", "residual"))
    expand: int = _key(1, "residual: each cell is expand x hidden_size units wide", low=1,
                       high=64)
    mlp: int = _key(0, "residual: a GELU MLP mlp x hidden_size wide after each cell (0 = none)",
                    low=0, high=64)
    # data
    batch_size: int = _key(64, "parallel streams (N)", low=1, high=MAX_SIZE)
    seq_len: int = _key(100, "window length for truncated BPTT (T)", low=1, high=MAX_SIZE)
    val_frac: float = _key(0.1, "fraction of the corpus (its end) used for validation", low=0.0,
                           high=1.0, low_open=True, high_open=True)
    eval_chars: int = _key(1_000_000, "score at most the first N validation characters at each "
                           "evaluation (0 = all)", low=0)
    cache_dir: Optional[str] = _key(None, "folder for the corpus id cache (none: "
                                    "$XDG_CACHE_HOME/charrnn or ~/.cache/charrnn)")
    # optimisation
    optimizer: str = _key("adam", "optimizer", choices=OPTIMIZERS)
    lr: float = _key(2e-3, "learning rate", low=0.0, low_open=True)
    lr_schedule: str = _key("constant", "learning-rate schedule after warmup",
                            choices=LR_SCHEDULES)
    warmup_steps: int = _key(0, "ramp the learning rate up linearly over N steps", low=0)
    lr_min: float = _key(0.0, "cosine, wsd: the learning rate reached at --steps", low=0.0)
    lr_decay: float = _key(0.5, "step: multiply the learning rate by this ...", low=0.0, high=1.0,
                           low_open=True)
    lr_decay_every: int = _key(1000, "step: ... every N steps", low=1)
    lr_decay_frac: float = _key(0.2, "wsd: the last share of --steps over which the rate falls "
                                "linearly to lr_min", low=0.0, high=1.0, low_open=True)
    weight_decay: float = _key(0.0, "decoupled weight decay (AdamW): each update also takes "
                               "lr x weight_decay x w off every weight matrix (not the biases, "
                               "nor the norms' gains)", low=0.0)
    ema: float = _key(0.0, "keep an exponential moving average of the weights with this decay "
                      "(e.g. 0.999; 0 = off): evaluations score it too, and the better one is "
                      "saved and used", low=0.0, high=1.0, high_open=True)
    clip: float = _key(5.0, "gradient clipping threshold (0 = off)", low=0.0)
    clip_mode: str = _key("norm", "clip the global norm or each value", choices=("norm", "value"))
    # run length, logging, speed
    time: Optional[str] = _key(None, "train for this long (90s, 10m, 1h30m) with a model and "
                               "recipe charrnn chooses for the corpus and this machine; the "
                               "keys you give win (docs/time.md)", duration=True)
    steps: int = _key(1000, "total training steps (windows), or auto: as many as fit the "
                      "time limit, measured at the start", low=1, auto=True)
    time_limit: Optional[float] = _key(None, "end by this many seconds of wall time: no step "
                                       "starts that would end, with the closing evaluation, "
                                       "past it",
                                       low=0.0, low_open=True)
    eval_every: int = _key(200, "evaluate and checkpoint every N steps", low=1)
    patience: int = _key(0, "stop after N evaluations without a better validation loss "
                         "(0 = never)", low=0)
    sample_length: int = _key(200, "characters of sample shown at each evaluation", low=0)
    seed: int = _key(0, "random seed", low=0)
    out: str = _key("run", "run directory")
    keep_last: int = _key(0, "also keep the N most recent periodic checkpoints "
                          "RUN/step-NNNNNN.npz (0 = none)", low=0)
    threads: Optional[int] = _key(None, "threads for a training step (none: every CPU this "
                                  "process may use)", low=1, high=4096)


# What `--resume` may change: options that steer the optimisation, the logging and the speed.
# Everything else decides what the checkpoint's arrays mean (model shape, batch layout, split,
# optimizer slots, seed) and must stay as it was; `out` is always the checkpoint's folder.
RESUMABLE = ("lr", "clip", "clip_mode", "steps", "time_limit", "eval_every", "sample_length",
             "keep_last", "lr_schedule", "warmup_steps", "lr_min", "lr_decay", "lr_decay_every",
             "lr_decay_frac", "patience", "eval_chars", "cache_dir", "threads")


def _types():
    """key -> (base type, whether None is allowed), read from TrainConfig's annotations."""
    found = {}
    for key, hint in typing.get_type_hints(TrainConfig).items():
        args = typing.get_args(hint)
        base = next(a for a in args if a is not type(None)) if args else hint
        found[key] = (base, type(None) in args)
    return found


TYPES = _types()
FIELDS = {f.name: f for f in fields(TrainConfig)}


def coerce(key, value):
    """Check and convert one value to the type of field `key`; errors name the key.

    The one type check of a config value. Numbers may come as strings (YAML 1.1 reads 1e-3 as
    one, and flags are strings); floats must be finite; an int must be a whole number; a boolean
    is never a number.
    """
    if key not in TYPES:
        raise CharrnnError(f"unknown config key {key!r} (known: {', '.join(sorted(TYPES))})")
    base, optional = TYPES[key]
    if value == AUTO and FIELDS[key].metadata["auto"]:
        return AUTO
    if value is None:
        if optional:
            return None
        raise CharrnnError(f"config key {key!r} must not be empty")
    try:
        if FIELDS[key].metadata["duration"]:
            seconds_of(value)
            return str(value).strip().lower() if isinstance(value, str) else f"{value:g}s"
        if base is str:
            if isinstance(value, os.PathLike):  # out=Path(...) from Python
                value = os.fspath(value)
            if not isinstance(value, str):
                raise ValueError
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError
        if base is int and isinstance(value, int):
            return value
        number = float(value)
        if not math.isfinite(number):
            raise ValueError
        if base is int:
            if not number.is_integer():
                raise ValueError
            return int(number)
        return number
    except (ValueError, OverflowError):
        raise CharrnnError(f"config key {key!r} must be {type_name(key)}, "
                           f"got {value!r}") from None


def type_name(key):
    base, optional = TYPES[key]
    if FIELDS[key].metadata["duration"]:
        return "a duration such as 90s, 10m or 1h30m" + (" or empty" if optional else "")
    return base.__name__ + (" or auto" if FIELDS[key].metadata["auto"] else "") + (
        " or empty" if optional else "")


def describe_range(key):
    """'positive', 'in [0, 1)', 'at least 1' ... for the key's range, or '' when it has none."""
    meta = FIELDS[key].metadata
    low, high, whole = meta["low"], meta["high"], TYPES[key][0] is int
    if low is not None and high is not None and not whole:
        return (f"in {'(' if meta['low_open'] else '['}{low:g}, {high:g}"
                f"{')' if meta['high_open'] else ']'}")
    if low is None:
        return ""
    if (low == 0 and meta["low_open"]) or (whole and low == 1):
        text = "positive"
    elif low == 0:
        text = "0 or more"
    else:
        text = f"more than {low:g}" if meta["low_open"] else f"at least {low:g}"
    return text + (f" and at most {high}" if high is not None else "")


def check_value(key, value):
    """The key's choices and range (a value already of the key's type)."""
    meta = FIELDS[key].metadata
    if value is None or (value == AUTO and meta["auto"]):
        return value
    if meta["choices"] is not None and value not in meta["choices"]:
        raise CharrnnError(f"config key {key!r} must be one of {', '.join(meta['choices'])}, "
                           f"got {value!r}")
    low, high = meta["low"], meta["high"]
    below = low is not None and (value <= low if meta["low_open"] else value < low)
    above = high is not None and (value >= high if meta["high_open"] else value > high)
    if below or above:
        if describe_range(key) == "0 or more":  # plainer than "must be 0 or more"
            raise CharrnnError(f"config key {key!r} must not be negative, got {value!r}")
        raise CharrnnError(f"config key {key!r} must be {describe_range(key)}, got {value!r}")
    return value


def validate(cfg):
    """Every key's choices and range, then the rules that tie keys together."""
    for key in FIELDS:
        check_value(key, getattr(cfg, key))
    if cfg.steps == AUTO and cfg.time_limit is None:
        raise CharrnnError("steps: auto needs a time_limit, the wall time the steps must fit in")
    if cfg.time is not None and seconds_of(cfg.time) < MIN_TIME:
        raise CharrnnError(f"config key 'time' must be at least {MIN_TIME}s, got {cfg.time}: "
                           f"choosing the model takes a few seconds of it")
    if cfg.eval_chars == 1:  # one character predicts nothing: its loss would read as 0
        raise CharrnnError("config key 'eval_chars' must be 0 (all) or at least 2, got 1")
    if cfg.stack == "plain" and (cfg.expand != 1 or cfg.mlp != 0):
        raise CharrnnError(f"config keys 'expand' ({cfg.expand}) and 'mlp' ({cfg.mlp}) shape "
                           f"the residual stack: set stack: residual, or leave them at 1 and 0")
    if cfg.weight_drop > 0 and not has_recurrent_weights(cfg.cell):
        raise CharrnnError(f"config key 'weight_drop' drops hidden-to-hidden weights, and "
                           f"{cfg.cell} has none (its gates read the input only): use rnn, "
                           f"lstm or gru, or leave weight_drop at 0")
    if cfg.lr_min > cfg.lr:
        raise CharrnnError(f"config key 'lr_min' ({cfg.lr_min!r}) must not exceed lr ({cfg.lr!r})")
    return cfg


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: PyYAML's own check below names it
                break
            if repeated:
                raise CharrnnError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text, name="config"):
    """YAML text -> dict of raw values (safe_load semantics, duplicate keys refused)."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise CharrnnError(f"{name} is not valid YAML: {' '.join(str(e).split())}") from None
    except CharrnnError as e:  # a duplicate key: say in which file
        raise CharrnnError(f"{name}: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CharrnnError(f"{name} must be a mapping of keys to values, got {type(data).__name__}")
    return data


def build(file_values=None, overrides=None, base=None):
    """Defaults (or base, a TrainConfig), then the file's values, then the non-None overrides
    -> a validated TrainConfig."""
    values = to_dict(base) if base is not None else {}
    if not isinstance(file_values or {}, dict):
        raise CharrnnError(f"a config must be a mapping of keys to values, got "
                           f"{type(file_values).__name__}")
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    for source in (file_values or {}, given):
        for key, value in source.items():
            values[str(key)] = coerce(str(key), value)
    if values.get("time") is not None and base is None:
        # a timed run: the time is its limit and steps fit it, unless given (timeplan.py)
        explicit = set(map(str, file_values or {})) | set(given)
        if "time_limit" not in explicit:
            values["time_limit"] = seconds_of(values["time"])
        if "steps" not in explicit:
            values["steps"] = AUTO
    return validate(TrainConfig(**values))


def given_keys(source=None, overrides=None):
    """The keys a config source (as load takes it) and the non-None overrides set."""
    if source is None or isinstance(source, dict):
        keys = set(source or {})
    elif isinstance(source, TrainConfig):
        keys = set(FIELDS)
    else:
        keys = set(_read(source))
    return {str(k) for k in keys} | {k for k, v in (overrides or {}).items() if v is not None}


def load(source=None, overrides=None, base=None):
    """A validated TrainConfig from source, then overrides (None values are skipped), over base
    (a TrainConfig) or the defaults. source: None, the path of a YAML file, a dict of keys to
    values, or a TrainConfig."""
    if source is None or isinstance(source, dict):
        file_values = source or {}
    elif isinstance(source, TrainConfig):
        file_values = to_dict(source)
    else:
        file_values = _read(source)
    return build(file_values, overrides, base)


def _read(path):
    """A YAML config file -> its dict of raw values."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError, TypeError, ValueError) as e:
        raise CharrnnError(f"cannot read config {path}: {e}") from None
    return parse_yaml(text, name=f"config {path}")


def to_dict(cfg):
    return dataclasses.asdict(cfg)


def dump(cfg):
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
