"""Property-based tests: whatever a user hands charrnn (a config file, a damaged checkpoint or
corpus cache, a number for any option, a flag or value no command takes), the answer is success
or one line `Error: ...`, exit 1 (a usage error: exit 2), never a traceback, a hang or a silently
wrong result.

The example counts keep this file to a minute of the default suite, and the examples are the
same every run (derandomised), so that CI is reproducible. To hunt for new failures, run it with
CHARRNN_HYPOTHESIS=explore: random examples, ten times as many.
"""
import dataclasses
import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import click
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from charrnn import config, corpus, data
from charrnn.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = [f.name for f in dataclasses.fields(config.TrainConfig)]
EXPLORE = os.environ.get("CHARRNN_HYPOTHESIS") == "explore"
# a model that trains in milliseconds; evaluations at steps 2 and 4
TINY = ["--hidden-size", "8", "--batch-size", "4", "--seq-len", "10", "--eval-every", "2",
        "--sample-length", "0", "--val-frac", "0.1", "--seed", "3"]


def examples(n):
    # no shrinking in the default suite: a failure is reported as found, at once
    phases = list(Phase) if EXPLORE else [Phase.explicit, Phase.reuse, Phase.generate]
    return settings(max_examples=n * 10 if EXPLORE else n, derandomize=not EXPLORE, phases=phases,
                    deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="charrnn")


def assert_clean_outcome(result):
    """Success, or one line `Error: ...` with exit 1, or 2 for a usage error."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.exception, result.output)
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        return
    lines = [line for line in result.stderr.split("\n")  # as clihelp.assert_one_line_error
             if line.strip() and not line.startswith("Warning: ")]
    assert result.exit_code in (1, 2), result.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr


def arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def text(shakespeare_excerpt):
    return shakespeare_excerpt(3000)


@pytest.fixture(scope="module")
def run_dir(text, tmp_path_factory):
    """A finished 4-step run: last.npz at step 4, best.npz, and step-000002.npz to splice with."""
    out = tmp_path_factory.mktemp("run")
    result = invoke("train", text, *TINY, "--steps", 4, "--keep-last", 2, "--out", out)
    assert result.exit_code == 0, result.output
    return out


# --- (a) config files of every YAML type ------------------------------------------------------

# YAML written as source, so that its own readings come into play: 1e3 and 2020-01-01 as YAML
# 1.1 reads them, tags, anchors, syntax errors
RAW_YAML = ["1e3", "1e-3", "nan", ".nan", ".NaN", "inf", ".inf", "-.inf", "1e400", "0x10", "0o17",
            "1_000", "+5", "-0", "yes", "no", "on", "~", "null", "2020-01-01",
            "2001-12-14t21:59:43.10-05:00", "12:30:00", "'7'", "\"3\"", "3.5e-1", "!!binary aGk=",
            "!!set {a, b}", "!!float 1", "!!int '7'", "*nothing", "[", "{", "- 1", "? a", "|",
            "!!python/name:os.system", "[1, [2, [3]]]", "{a: {b: c}}", "''", "\"\\x00\"",
            "12345678901234567890123456789", "-99999999999999999999", "4.9e-324", "1.7e308"]

values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**80, 2**80),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
              st.dates(), st.datetimes()),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=6)


def as_yaml(value):
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix(
        "\n...").removesuffix("...").strip()


entries = st.tuples(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)),
                    st.one_of(st.sampled_from(RAW_YAML), values.map(as_yaml)))


@examples(150)
@given(st.lists(entries, max_size=6))
def test_any_config_file_is_accepted_or_refused_in_one_line(text, tmp_path, lines):
    path = tmp_path / "config.yaml"
    path.write_text("".join(f"{json.dumps(k)}: {v}\n" for k, v in lines), encoding="utf-8")
    assert_clean_outcome(invoke("train", text, "--config", path, "--dry-run"))


# --- (b) damaged checkpoints ------------------------------------------------------------------

def damage(raw, other, how, a, b, byte):
    """raw damaged one way: a and b are fractions of its length, byte a value."""
    i, j = sorted((int(a * len(raw)), int(b * len(raw))))
    if how == "flip":
        out = bytearray(raw)
        if out:
            out[min(i, len(out) - 1)] ^= 1 << (byte % 8)
        return bytes(out)
    if how == "truncate":
        return raw[:i]
    if how == "zero":
        return raw[:i] + bytes(j - i) + raw[j:]
    if how == "set":
        return raw[:i] + bytes([byte]) * (j - i) + raw[j:]
    if how == "splice":  # the start of one file, the end of the other
        return raw[:i] + other[int(b * len(other)):]
    if how == "extend":
        return raw + bytes([byte]) * (j - i + 1)
    raise ValueError(how)


damages = st.tuples(st.sampled_from(["flip", "truncate", "zero", "set", "splice", "extend"]),
                    st.floats(0, 1), st.floats(0, 1), st.integers(0, 255))


def digest(arrs):
    """key -> a short hash of its dtype, shape and bytes; the config without `out`."""
    found = {}
    for k, v in arrs.items():
        if k == "config":
            v = np.array(json.dumps({**json.loads(str(v)), "out": None}))
        found[k] = hashlib.sha256(f"{v.dtype} {v.shape}".encode() + v.tobytes()).hexdigest()[:16]
    return found


def outputs(ckpt, text, resume_dir):
    """What sample, eval, info and train --resume make of ckpt; for the resume, the digest of
    the last.npz it leaves, without its timing."""
    found = {"sample": invoke("sample", "--ckpt", ckpt, "--length", 30, "--seed", 5),
             "eval": invoke("eval", "--ckpt", ckpt, text, "--json"),
             "info": invoke("info", ckpt, "--json")}
    found["resume"] = invoke("train", text, "--resume", resume_dir / "last.npz", "--steps", 6)
    for result in found.values():
        assert_clean_outcome(result)
    done = {k: r.stdout for k, r in found.items() if r.exit_code == 0 and k != "resume"}
    if found["resume"].exit_code == 0:
        done["resume"] = digest({k: v for k, v in arrays(resume_dir / "last.npz").items()
                                 if k != "elapsed"})
    return done


def outputs_of(raw, text, run_dir):
    """outputs() for a run_dir whose last.npz holds raw."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "run"
        shutil.copytree(run_dir, copy)
        (copy / "last.npz").write_bytes(raw)
        return outputs(copy / "last.npz", text, copy)


@pytest.fixture(scope="module")
def clean_outputs(text, run_dir):
    """The outputs of the two intact files that the damaged ones are made of."""
    found = [outputs_of((run_dir / name).read_bytes(), text, run_dir)
             for name in ("last.npz", "step-000002.npz")]
    for outs in found:
        assert set(outs) == {"sample", "eval", "info", "resume"}
    return found


@examples(40)
@given(damages)
def test_damaged_checkpoint_is_refused_or_reads_the_same(text, run_dir, clean_outputs, how):
    raw = (run_dir / "last.npz").read_bytes()
    other = (run_dir / "step-000002.npz").read_bytes()
    found = outputs_of(damage(raw, other, *how), text, run_dir)
    # a damaged file that still loads must read as one of the files it was made of (a splice
    # can give back the other whole): the same text, scores, summary and resumed run; anything
    # else would be a silently wrong result
    for name, value in found.items():
        if name == "info":
            value = json.loads(value)
            assert value in [json.loads(outs["info"]) for outs in clean_outputs], value
        else:
            assert value in [outs[name] for outs in clean_outputs], name


# any value in any one key: a checkpoint is checked whole, key by key
values = st.one_of(
    st.integers(-2**40, 2**40).map(lambda v: np.array(v)),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda v: np.array(v)),
    st.text(max_size=20).map(lambda v: np.array(v)),
    st.lists(st.integers(0, 0x10FFFF), min_size=0, max_size=70).map(
        lambda v: np.array(v, dtype=np.uint32)),
    st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=8).map(
        lambda v: np.array(v, dtype=np.float32)))


@examples(60)
@given(st.data())
def test_any_value_in_any_key_is_refused_or_works(text, run_dir, data):
    """One key of last.npz (a scalar, the vocabulary, a weight, optimizer or carried-state
    array) given another value of any type and shape: sample, eval, info and a resume either
    work or end in one line, never a traceback (outputs() asserts it)."""
    original = arrays(run_dir / "last.npz")
    key = data.draw(st.sampled_from(sorted(original)))
    same_shape = st.floats(-10, 10).map(
        lambda v: np.full(original[key].shape, v, dtype=original[key].dtype))
    value = data.draw(values | same_shape if original[key].dtype.kind == "f" else values)
    buffer = io.BytesIO()
    np.savez(buffer, **{**original, key: value})
    outputs_of(buffer.getvalue(), text, run_dir)


# --- (c) damaged corpus caches ----------------------------------------------------------------

@examples(100)
@given(damages)
def test_damaged_cache_is_rebuilt_and_reads_the_text(text, tmp_path_factory, how):
    cache = tmp_path_factory.mktemp("cache")
    first = corpus.open_corpus([text], cache_dir=cache, warn=pytest.fail)
    expected = np.array(first.ids)
    del first
    (name,) = os.listdir(cache)
    path = cache / name
    raw = path.read_bytes()
    other = os.path.join(ROOT, "data", "tinyshakespeare.txt")
    with open(other, "rb") as f:
        bad = damage(raw, f.read(len(raw)), *how)
    path.write_bytes(bad)
    warnings = []
    again = corpus.open_corpus([text], cache_dir=cache, warn=warnings.append)
    np.testing.assert_array_equal(again.ids, expected)
    assert data.decode(again.ids, again.vocab) == text.read_text(encoding="utf-8")
    assert len(warnings) == (bad != raw)
    if warnings:
        assert warnings[0] == f"Warning: corpus cache {path} did not match its checksum; rebuilt"
    assert path.read_bytes() == raw  # rebuilt as it was
    shutil.rmtree(cache)


# --- (d) numbers for every numeric option -----------------------------------------------------

NUMBER_TEXT = ["nan", "-nan", "inf", "-inf", "1e3", "1e400", "-0", "0x1f", "1_0", " 5", "",
               "abc", "1.5", "-1", "0", "1", "2", "3", "99999999999999999999999"]


def _above(text, high):
    try:
        return int(text) > high  # as Click reads an int option
    except ValueError:
        return False


def numbers(low=-2**70, high=2**70):
    # small values too, so that as many examples go past the range checks as are stopped there
    return st.one_of(st.integers(-3, 12), st.floats(-1.5, 1.5), st.integers(low, high),
                     st.floats(allow_nan=True, allow_infinity=True),
                     st.sampled_from(NUMBER_TEXT)).map(str).filter(lambda t: not _above(t, high))


# caps keep a valid value from asking for hours of work (a billion characters of sample)
SAMPLE_OPTIONS = {"--length": numbers(high=60), "--temperature": numbers(),
                  "--top-k": numbers(), "--top-p": numbers(), "--num-samples": numbers(high=3),
                  "--seed": numbers()}


def some_options(options):
    # one to three at a time: with more, the first bad value hides what the others would do
    return st.dictionaries(st.sampled_from(sorted(options)), st.none(), min_size=1,
                           max_size=3).flatmap(
        lambda chosen: st.fixed_dictionaries({k: options[k] for k in chosen}))


@examples(100)
@given(some_options(SAMPLE_OPTIONS))
def test_any_number_for_a_sample_option(run_dir, options):
    args = [x for kv in options.items() for x in kv]
    result = invoke("sample", "--ckpt", run_dir / "last.npz", *args)
    assert_clean_outcome(result)
    if result.exit_code != 0:
        assert result.stdout == ""


def _numeric_keys():
    return [k for k in KEYS if config.TYPES[k][0] in (int, float)]


TRAIN_OPTIONS = {"--" + k.replace("_", "-"): numbers() for k in _numeric_keys()}


@examples(100)
@given(some_options(TRAIN_OPTIONS))
def test_any_number_for_a_train_option_dry_run(text, options):
    args = [x for kv in options.items() for x in kv]
    assert_clean_outcome(invoke("train", text, "--dry-run", *args))


# options that do not change the model's size: a real run with any of them stays small
SHAPE = {"hidden_size", "layers", "batch_size", "seq_len", "steps", "threads", "sample_length",
         "eval_every"}
RUN_OPTIONS = {"--" + k.replace("_", "-"): numbers() for k in _numeric_keys() if k not in SHAPE}


@examples(40)
@given(some_options(RUN_OPTIONS))
def test_any_number_for_a_train_option_trains_or_is_refused(text, options):
    args = [x for kv in options.items() for x in kv]
    with tempfile.TemporaryDirectory() as out:
        assert_clean_outcome(invoke("train", text, *TINY, "--steps", 4, *args, "--out", out))


# ---- usage errors: every command, one line ----------------------------------------------------

COMMANDS = sorted(main.commands)
NOT_A_NUMBER = st.text("xyzq!@", min_size=1, max_size=6)  # no int, float, "nan", "auto", choice
VALUED = ("integer", "float", "integer range", "float range", "int", "choice")


def _options(name, valued=None):
    """The long flags of command `name` (all, or only those whose value type is in valued)."""
    return sorted(opt for p in main.commands[name].params if isinstance(p, click.Option)
                  and not p.is_flag and (valued is None or p.type.name in valued)
                  for opt in p.opts if opt.startswith("--"))


def _all_flags(name):
    return {opt for p in main.commands[name].params for opt in p.opts + p.secondary_opts}


@st.composite
def usage_errors(draw):
    """-> (command path, args): an unknown command or flag, a flag without its value, or a
    value that is not of its flag's type, for any command."""
    name = draw(st.sampled_from(COMMANDS))
    kinds = ["unknown flag", "unknown command"]
    kinds += ["no value"] if _options(name) else []
    kinds += ["wrong type"] if _options(name, VALUED) else []
    kind = draw(st.sampled_from(kinds))
    if kind == "unknown command":
        return "charrnn", [draw(st.text("abcdefgh", min_size=1).filter(
            lambda c: c not in main.commands))]
    if kind == "unknown flag":
        flag = "--" + draw(st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1).filter(
            lambda f: not f.startswith("-") and "--" + f not in _all_flags(name)))
        return f"charrnn {name}", [name, flag]
    if kind == "no value":
        return f"charrnn {name}", [name, draw(st.sampled_from(_options(name)))]
    return f"charrnn {name}", [name, draw(st.sampled_from(_options(name, VALUED))),
                               draw(NOT_A_NUMBER)]


@examples(150)
@given(usage_errors())
def test_a_usage_error_is_one_line_and_exit_2(error):
    path, args = error
    result = invoke(*args)
    assert result.exit_code == 2 and result.stdout == "", (args, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, (args, result.stderr)
    assert lines[0].startswith("Error: ") and lines[0].endswith(f" (see '{path} -h')"), lines


@pytest.mark.parametrize("name", COMMANDS + [None])
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_and_version_still_work(name, flag):
    result = invoke(*([name] if name else []), flag)
    assert result.exit_code == 0 and result.stderr == "", result.output
    assert result.stdout.startswith(f"Usage: charrnn{' ' + name if name else ''} [OPTIONS]")
    version = invoke("--version")
    assert version.exit_code == 0 and version.stdout.startswith("charrnn, version ")
