"""The training config: files, flags and values that are refused in one line `Error: ...` naming
the key (nothing already saved changed), the coercion of what YAML reads as strings, the shipped
configs, and the table of keys in docs/training.md."""
import dataclasses
import os
import typing

import pytest
import yaml

from charrnn import config
from charrnn.cells import CELLS
from clihelp import (ROOT, SHAKESPEARE, TEN_STEPS, assert_one_line_error, one_line_error, run,
                     run_overwriting)


# --- config files and flags ------------------------------------------------------------------

@pytest.mark.parametrize("text, fragments", [
    ("- hidden_size\n- 12\n", ["must be a mapping", "list"]),
    ("just words\n", ["must be a mapping", "str"]),
    ("hidden_sise: 12\n", ["unknown config key 'hidden_sise'"]),
    ("lr: 0.1\nsteps: 5\nlr: 0.2\n", ["duplicate key 'lr'", "line 3", "bad.yaml"]),
    ("hidden_size: big\n", ["'hidden_size' must be int", "'big'"]),
    ("layers: 1.5\n", ["'layers' must be int"]),
    ("lr: true\n", ["'lr' must be float"]),
    ("dropout: [0.1]\n", ["'dropout' must be float"]),
    ("cell: 3\n", ["'cell' must be str"]),
    ("cell: transformer\n", ["'cell' must be one of"]),
    ("lr: .nan\n", ["'lr' must be float"]),
    ("hidden_size: 0\n", ["'hidden_size' must be positive"]),
    ("batch_size: -4\n", ["'batch_size' must be positive"]),
    ("seq_len: 0\n", ["'seq_len' must be positive"]),
    ("layers: -1\n", ["'layers' must be positive"]),
    ("steps: 0\n", ["'steps' must be positive"]),
    ("eval_every: 0\n", ["'eval_every' must be positive"]),
    ("keep_last: -2\n", ["'keep_last' must not be negative"]),
    ("time_limit: 0\n", ["'time_limit' must be positive"]),
    ("dropout: 1\n", ["'dropout' must be in [0, 1)"]),
    ("val_frac: 0\n", ["'val_frac' must be in (0, 1)"]),
    ("stack: dense\n", ["'stack' must be one of plain, residual"]),
    ("mlp: 4\n", ["'expand' (1) and 'mlp' (4)", "stack: residual"]),
    ("stack: residual\nexpand: 0\n", ["'expand' must be positive"]),
    ("stack: residual\nmlp: -1\n", ["'mlp' must be 0 or more and at most 64"]),
    ("lr: [1, 2\n", ["not valid YAML"]),
    ("lr: !!python/object/apply:os.system ['touch PWNED']\n", ["not valid YAML"]),
    ("!!python/object:collections.OrderedDict {}\n", ["not valid YAML"]),
])
def test_bad_config_file(corpus, unchanged, tmp_path, monkeypatch, text, fragments):
    monkeypatch.chdir(tmp_path)  # where a `touch PWNED` would land if the tag were obeyed
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    result = run_overwriting("train", corpus, "--config", path, "--out", unchanged)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "PWNED").exists()


def test_config_file_not_utf8_or_a_directory(corpus, unchanged, tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"cell: r\xe9seau\n")
    assert_one_line_error(run_overwriting("train", corpus, "--config", path, "--out", unchanged),
                          "cannot read config")
    assert run_overwriting("train", corpus, "--config", tmp_path, "--out", unchanged).exit_code == 2


def test_numbers_yaml_reads_as_strings_are_coerced(tmp_path):
    assert yaml.safe_load("lr: 1e-3")["lr"] == "1e-3"  # YAML 1.1: no dot, so not a float
    path = tmp_path / "sci.yaml"
    path.write_text("lr: 1e-3\nhidden_size: 3.2e1\nsteps: '10'\n")
    cfg = config.load(path)
    assert (cfg.lr, cfg.hidden_size, cfg.steps) == (0.001, 32, 10)
    assert isinstance(cfg.lr, float) and isinstance(cfg.hidden_size, int)


def test_flag_values_are_checked_like_the_file(corpus, unchanged):
    assert_one_line_error(run_overwriting("train", corpus, *TEN_STEPS, "--out", unchanged,
                                          "--hidden-size", -3),
                          "'hidden_size' must be positive")
    assert run_overwriting("train", corpus, *TEN_STEPS, "--out", unchanged,
                           "--lr", "fast").exit_code == 2


def test_model_too_large_for_memory(corpus, unchanged):
    result = run_overwriting("train", corpus, *TEN_STEPS, "--out", unchanged,
                             "--hidden-size", 10**6)
    assert_one_line_error(result, "out of memory")


def test_sizes_beyond_any_machine_are_refused_by_name(corpus, unchanged):
    result = run_overwriting("train", corpus, *TEN_STEPS, "--out", unchanged,
                             "--hidden-size", 10**10)
    assert_one_line_error(result, "'hidden_size' must be positive and at most 1048576")


@pytest.mark.parametrize("text, fragments", [
    ("time_limit: abc\n", ["'time_limit' must be float or empty", "'abc'"]),
    ("time_limit: [60]\n", ["'time_limit' must be float or empty"]),
    ("cache_dir: 5\n", ["'cache_dir' must be str or empty", "5"]),
    ("cache_dir: [a, b]\n", ["'cache_dir' must be str or empty"]),
    ("threads: 1.5\n", ["'threads' must be int or empty"]),
])
def test_keys_that_may_be_empty_are_type_checked(corpus, unchanged, tmp_path, text, fragments):
    """Issue 15, point 3: Optional[...] keys were not checked at all (a TypeError traceback)."""
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    assert_one_line_error(run_overwriting("train", corpus, "--config", path, "--out", unchanged),
                          *fragments)


def test_optional_float_written_as_1e3_is_coerced(corpus, tmp_path):
    path = tmp_path / "sci.yaml"
    path.write_text("time_limit: 1e3\ncache_dir: ~\n", encoding="utf-8")  # YAML 1.1: a string
    cfg = config.load(path)
    assert cfg.time_limit == 1000.0 and isinstance(cfg.time_limit, float)
    assert cfg.cache_dir is None
    result = run_overwriting("train", corpus, "--config", path, "--dry-run")
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output


def _float_keys():
    hints = typing.get_type_hints(config.TrainConfig)
    return [f.name for f in dataclasses.fields(config.TrainConfig)
            if float in (hints[f.name], *typing.get_args(hints[f.name]))]


NON_FINITE = ["nan", ".nan", ".NaN", "inf", ".inf", "-.inf", "1e400", "-1e999"]


@pytest.mark.parametrize("key", _float_keys())
def test_non_finite_config_values_are_refused(corpus, unchanged, tmp_path, key):
    """Issue 15, point 4, for config files and train flags: every float key must be finite."""
    path = tmp_path / "bad.yaml"
    for value in NON_FINITE:
        path.write_text(f"{key}: {value}\n", encoding="utf-8")
        assert_one_line_error(run_overwriting("train", corpus, "--config", path,
                                              "--out", unchanged),
                              f"'{key}' must be float")
        flag = run_overwriting("train", corpus, "--dry-run", "--" + key.replace("_", "-"),
                               value.strip("."))
        assert flag.exit_code == 2 and "must be float" in flag.output, (value, flag.output)


# --- shipped configs, the schedule keys and the docs -----------------------------------------

SHIPPED = sorted(f for f in os.listdir(os.path.join(ROOT, "configs"))
                 if f.endswith(".yaml") and not f.startswith("space-")) + sorted(
    os.path.join("candidates", f) for f in os.listdir(os.path.join(ROOT, "configs", "candidates")))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_are_valid(name, tmp_path):
    """Every run config in configs/ loads and passes a dry run on the shipped corpus."""
    path = os.path.join(ROOT, "configs", name)
    result = run("train", SHAKESPEARE, "--config", path, "--dry-run", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert config.load(path).cell in CELLS


def test_schedule_config_is_checked(tmp_path):
    one_line_error(run("train", SHAKESPEARE, "--lr-decay", 1.5, "--out", tmp_path), "lr_decay")
    one_line_error(run("train", SHAKESPEARE, "--lr", 0.001, "--lr-min", 0.01, "--out", tmp_path),
                   "lr_min")
    one_line_error(run("train", SHAKESPEARE, "--eval-chars", 1, "--out", tmp_path), "eval_chars")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr_schedule: linear\n")
    one_line_error(run("train", SHAKESPEARE, "--config", bad, "--out", tmp_path), "lr_schedule")


def _docs_table():
    """key -> its default as the table of keys in docs/training.md shows it; a row may hold
    several keys (`a`, `b` | 1, 2)."""
    def value(text):
        if text == "none":
            return None
        if text.startswith("`"):
            return text.strip("`")
        return float(text) if "." in text else int(text)

    shown = {}
    with open(os.path.join(ROOT, "docs", "training.md"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("| `"):
                keys, defaults = line.split("|")[1:3]
                keys = [key.strip().strip("`") for key in keys.split(",")]
                defaults = [value(default.strip()) for default in defaults.split(",")]
                assert len(keys) == len(defaults) and not set(keys) & set(shown), line
                shown.update(zip(keys, defaults))
    return shown


def test_the_docs_table_shows_every_key_with_its_default():
    """Every TrainConfig key is in docs/training.md's table with its default as written (0.0 for
    a float, 0 for an int), and the table has no key the schema lacks."""
    shown = _docs_table()
    assert set(config.FIELDS) - set(shown) == set(), "keys the docs do not show"
    assert set(shown) - set(config.FIELDS) == set(), "keys the schema does not have"
    for key, field in config.FIELDS.items():
        assert (shown[key], type(shown[key])) == (field.default, type(field.default)), key
