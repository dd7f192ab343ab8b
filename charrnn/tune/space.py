"""The search space of a sweep (SPACE.yaml): parsing and checking it, drawing a trial's values.

A space is a config with some keys searched: it is checked whole, through the same config check
a config file gets, before Optuna is imported or anything is written, so a space that would make
every trial fail is refused with the key named (and needs no optional extra to say so).
"""
import itertools
import os
from dataclasses import dataclass

from .. import config as config_mod
from ..errors import CharrnnError

MAX_CORNERS = 4096  # combinations of the searched keys' ends checked together, at most


@dataclass
class Space:
    """fixed: key -> value (any TrainConfig key but out); searched: key -> a list of choices or a
    range {"low", "high", "step", "log"} with values of the key's type."""
    fixed: dict
    searched: dict

    def as_dict(self):
        return {"fixed": self.fixed, "searched": self.searched}

    def suggest(self, trial):
        """One trial's values of the searched keys, drawn through Optuna."""
        values = {}
        for key, spec in self.searched.items():
            if isinstance(spec, list):
                values[key] = trial.suggest_categorical(key, spec)
            elif config_mod.TYPES[key][0] is int:
                values[key] = trial.suggest_int(key, spec["low"], spec["high"],
                                                step=spec.get("step", 1),
                                                log=spec.get("log", False))
            else:
                values[key] = trial.suggest_float(key, spec["low"], spec["high"],
                                                  step=spec.get("step"), log=spec.get("log", False))
        return values


def _value(key, value, name):
    try:
        return config_mod.check_value(key, config_mod.coerce(key, value))
    except CharrnnError as e:
        raise CharrnnError(f"{name}: {e}") from None


def _range(key, spec, name):
    """A {low, high[, step][, log]} mapping for a numeric key, checked and converted."""
    where = f"{name}: key {key!r}"
    base = config_mod.TYPES[key][0]
    if base not in (int, float):
        raise CharrnnError(f"{where} is a {base.__name__}: search it with a list of choices, "
                           f"not a range")
    unknown = sorted(map(str, set(spec) - {"low", "high", "step", "log"}))
    if unknown:
        raise CharrnnError(f"{where}: unknown range field {unknown[0]!r} (a range has low, high "
                           f"and optionally step or log)")
    if "low" not in spec or "high" not in spec:
        raise CharrnnError(f"{where}: a range needs both low and high")
    out = {"low": _value(key, spec["low"], name), "high": _value(key, spec["high"], name)}
    if out["low"] is None or out["high"] is None:
        raise CharrnnError(f"{where}: low and high must not be empty")
    if out["low"] >= out["high"]:
        raise CharrnnError(f"{where}: the range is empty (low {out['low']!r} must be below high "
                           f"{out['high']!r}); a single value is a fixed key")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise CharrnnError(f"{where}: log must be true or false, got {log!r}")
    if log:
        if out["low"] <= 0:
            raise CharrnnError(f"{where}: a log range needs low above 0, got {out['low']!r}")
        out["log"] = True
    if "step" in spec:
        try:
            step = config_mod.coerce(key, spec["step"])
        except CharrnnError:
            raise CharrnnError(f"{where}: step must be {base.__name__}, got "
                               f"{spec['step']!r}") from None
        if step is None or step <= 0:
            raise CharrnnError(f"{where}: step must be positive, got {spec['step']!r}")
        if log and step != 1:
            raise CharrnnError(f"{where}: a range cannot have both log and step")
        span = (out["high"] - out["low"]) / step
        if abs(span - round(span)) > 1e-9 * max(1.0, abs(span)):
            raise CharrnnError(f"{where}: high - low ({out['high'] - out['low']!r}) must be a "
                               f"multiple of step {step!r}")
        out["step"] = step
    return out


def _choices(key, values, name):
    if not values:
        raise CharrnnError(f"{name}: key {key!r} has an empty list of choices")
    choices = [_value(key, v, name) for v in values]
    for i, v in enumerate(choices):
        if v in choices[:i]:
            raise CharrnnError(f"{name}: key {key!r} lists the choice {v!r} twice")
    return choices


def _ends(spec):
    """The values of a searched key that bound what a trial can draw: every choice, or a range's
    low and high."""
    return spec if isinstance(spec, list) else [spec["low"], spec["high"]]


def _check_whole(fixed, searched, name):
    """Every trial's config must pass the one config check: the fixed keys together with each
    combination of the searched keys' ends (when there are more than MAX_CORNERS combinations,
    each key's ends with the others at their first), so that the rules tying keys together
    (steps: auto needs time_limit, lr_min <= lr, ...) are checked as a trial's config is."""
    keys = list(searched)
    ends = [_ends(searched[k]) for k in keys]
    total = 1
    for values in ends:
        total *= len(values)
    if total <= MAX_CORNERS:
        combos = itertools.product(*ends)
    else:
        first = [values[0] for values in ends]
        combos = (first[:i] + [v] + first[i + 1:] for i, values in enumerate(ends) for v in values)
    for combo in combos:
        trial = dict(zip(keys, combo))
        try:
            config_mod.build({**fixed, **trial})
        except CharrnnError as e:
            drawn = ", ".join(f"{k} {v!r}" for k, v in trial.items())
            raise CharrnnError(f"{name}: a trial with {drawn} would be refused: {e}") from None


def parse_space(text, name="space"):
    """SPACE.yaml's text -> Space. Every value is checked as a config value of its key is: an
    unknown key, a wrong type, a value out of range or an empty range is a one-line CharrnnError;
    then the space is checked whole (_check_whole)."""
    return from_mapping(config_mod.parse_yaml(text, name=name), name)


def from_mapping(data, name="space"):
    """A dict of SPACE.yaml's form (fixed values; lists of choices; {low, high} ranges) -> Space."""
    if not isinstance(data, dict):
        raise CharrnnError(f"{name} must be a mapping of config keys to values, choices or "
                           f"ranges, got {type(data).__name__}")
    fixed, searched = {}, {}
    for key, spec in data.items():
        key = str(key)
        if key not in config_mod.TYPES:
            raise CharrnnError(f"{name}: unknown config key {key!r} (known: "
                               f"{', '.join(sorted(config_mod.TYPES))})")
        if key == "out":
            raise CharrnnError(f"{name}: key 'out' is set by charrnn tune (each trial trains "
                               f"in DIR/trial-NNNN); leave it out")
        if isinstance(spec, list):
            searched[key] = _choices(key, spec, name)
        elif isinstance(spec, dict):
            searched[key] = _range(key, spec, name)
        else:
            fixed[key] = _value(key, spec, name)
    if not searched:
        raise CharrnnError(f"{name} searches nothing: give at least one key a list of choices "
                           f"or a range {{low, high}}")
    _check_whole(fixed, searched, name)
    return Space(fixed, searched)


def load_space(source):
    """A Space from source: a Space, a dict of SPACE.yaml's form, or the path of a SPACE.yaml."""
    if isinstance(source, Space):
        _check_whole(source.fixed, source.searched, "space")
        return source
    if isinstance(source, dict):
        return from_mapping(source)
    if not isinstance(source, (str, os.PathLike)):
        raise CharrnnError(f"space must be a SPACE.yaml path, a dict or a Space, got "
                           f"{type(source).__name__}")
    try:
        with open(source, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise CharrnnError(f"cannot read space {source}: {e}") from None
    return parse_space(text, name=f"space {source}")
