"""The training config: typed defaults written once, overridden by a YAML file, then by flags.

Unknown keys, duplicate keys and values of the wrong type are errors naming the key. YAML 1.1
reads `1e-3` as a string, so numbers are coerced to the field's type.
"""
import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Optional

import yaml

from .cells import CELLS
from .errors import CharrnnError
from .optim import LR_SCHEDULES, OPTIMIZERS


@dataclass
class TrainConfig:
    # model
    cell: str = "rnn"
    hidden_size: int = 256
    layers: int = 1
    dropout: float = 0.0
    dtype: str = "float32"
    # data
    batch_size: int = 64
    seq_len: int = 100
    val_frac: float = 0.1
    eval_chars: int = 1_000_000  # validation characters scored per evaluation (0: all)
    cache_dir: Optional[str] = None  # where corpus ids are cached (None: ~/.cache/charrnn)
    # optimisation
    optimizer: str = "adam"
    lr: float = 2e-3
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    lr_min: float = 0.0  # cosine: the floor reached at `steps`
    lr_decay: float = 0.5  # step: multiply the learning rate by this ...
    lr_decay_every: int = 1000  # ... every this many steps after warmup
    clip: float = 5.0
    clip_mode: str = "norm"
    # run length and logging
    steps: int = 1000
    time_limit: Optional[float] = None
    eval_every: int = 200
    patience: int = 0  # stop after this many evaluations without a new best (0: never)
    sample_length: int = 200
    seed: int = 0
    out: str = "run"
    keep_last: int = 0


CHOICES = {
    "cell": tuple(CELLS),
    "dtype": ("float32", "float64"),
    "optimizer": OPTIMIZERS,
    "clip_mode": ("norm", "value"),
    "lr_schedule": LR_SCHEDULES,
}
POSITIVE = ("hidden_size", "layers", "batch_size", "seq_len", "lr", "steps", "eval_every",
            "lr_decay_every")
NON_NEGATIVE = ("clip", "sample_length", "seed", "keep_last", "warmup_steps", "lr_min", "patience",
                "eval_chars")
# What `--resume` may change: options that steer the optimisation and the logging. Everything
# else decides what the checkpoint's arrays mean (model shape, batch layout, split, optimizer
# slots, seed) and must stay as it was; `out` is always the checkpoint's folder.
RESUMABLE = ("lr", "clip", "clip_mode", "steps", "time_limit", "eval_every", "sample_length",
             "keep_last", "lr_schedule", "warmup_steps", "lr_min", "lr_decay", "lr_decay_every",
             "patience", "eval_chars", "cache_dir")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise CharrnnError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _field_type(f):
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return t.replace("Optional[", "").rstrip("]"), "Optional" in str(f.type)


def coerce(key, value):
    """Check and convert one value to the type of field `key`; errors name the key."""
    by_name = {f.name: f for f in fields(TrainConfig)}
    if key not in by_name:
        raise CharrnnError(f"unknown config key {key!r} (known: {', '.join(sorted(by_name))})")
    type_name, optional = _field_type(by_name[key])
    if value is None:
        if optional:
            return None
        raise CharrnnError(f"config key {key!r} must not be empty")
    try:
        if type_name == "int":
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ValueError
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            value = int(number)
        elif type_name == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ValueError
            value = float(value)
            if not math.isfinite(value):
                raise ValueError
        elif type_name == "str":
            if not isinstance(value, str):
                raise ValueError
    except ValueError:
        raise CharrnnError(f"config key {key!r} must be {type_name}, got {value!r}") from None
    return value


def validate(cfg):
    for key, options in CHOICES.items():
        if getattr(cfg, key) not in options:
            raise CharrnnError(f"config key {key!r} must be one of {', '.join(options)}, "
                               f"got {getattr(cfg, key)!r}")
    for key in POSITIVE:
        if getattr(cfg, key) <= 0:
            raise CharrnnError(f"config key {key!r} must be positive, got {getattr(cfg, key)!r}")
    for key in NON_NEGATIVE:
        if getattr(cfg, key) < 0:
            raise CharrnnError(f"config key {key!r} must not be negative, got {getattr(cfg, key)!r}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise CharrnnError(f"config key 'dropout' must be in [0, 1), got {cfg.dropout!r}")
    if not 0.0 < cfg.val_frac < 1.0:
        raise CharrnnError(f"config key 'val_frac' must be in (0, 1), got {cfg.val_frac!r}")
    if cfg.time_limit is not None and cfg.time_limit <= 0:
        raise CharrnnError(f"config key 'time_limit' must be positive, got {cfg.time_limit!r}")
    if not 0.0 < cfg.lr_decay <= 1.0:
        raise CharrnnError(f"config key 'lr_decay' must be in (0, 1], got {cfg.lr_decay!r}")
    if cfg.eval_chars == 1:  # one character predicts nothing: its loss would read as 0
        raise CharrnnError("config key 'eval_chars' must be 0 (all) or at least 2, got 1")
    if cfg.lr_min > cfg.lr:
        raise CharrnnError(f"config key 'lr_min' ({cfg.lr_min!r}) must not exceed lr ({cfg.lr!r})")
    return cfg


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
    for source in (file_values or {}, {k: v for k, v in (overrides or {}).items() if v is not None}):
        for key, value in source.items():
            values[str(key)] = coerce(str(key), value)
    return validate(TrainConfig(**values))


def load(path=None, overrides=None, base=None):
    """Read the YAML file at path (optional) and apply overrides, over base if given."""
    file_values = {}
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise CharrnnError(f"cannot read config {path}: {e}") from None
        file_values = parse_yaml(text, name=f"config {path}")
    return build(file_values, overrides, base)


def to_dict(cfg):
    return dataclasses.asdict(cfg)


def dump(cfg):
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
