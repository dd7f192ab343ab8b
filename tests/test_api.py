"""The library, `import charrnn`: the same text, scores and runs as the CLI, the same refusals,
and a process left as it was found."""
import dataclasses
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time
import typing

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import charrnn
from charrnn import arguments, evaluate, runtime
from clihelp import SHAKESPEARE, TINY, run

QUIET = dict(progress=False, sample_length=0)
TEXT = "KING RICHARD III:\nNow is the winter of our discontent\nMade glorious summer."


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "small.txt"
    with open(SHAKESPEARE, encoding="utf-8") as f:
        path.write_text(f.read(200000), encoding="utf-8")  # every letter of TEXT occurs
    return path


@pytest.fixture(scope="module", params=["rnn", "lstm", "gru", "mingru", "minlstm-residual"])
def trained(request, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    cell, _, stack = request.param.partition("-")
    shape = dict(stack="residual", expand=2, mlp=2) if stack else {}
    charrnn.train(corpus, TINY, out=out, cell=cell, layers=2, steps=30, eval_every=30, **shape,
                  **QUIET)
    return out / "best.npz"


@pytest.mark.parametrize("options", [
    dict(length=300, seed=3),
    dict(length=200, prime="ROMEO:", temperature=0.7, top_k=8, seed=5),
    dict(length=200, prime="KING", top_p=0.9, stop="\n", seed=11),
    dict(length=50, temperature=0, seed=None),
])
def test_sample_equals_the_cli(trained, options):
    model = charrnn.load(trained)
    text = model.sample(**options)
    flags = []
    for key, value in options.items():
        if value is not None:
            flags += [f"--{key.replace('_', '-')}", value]
    result = run("sample", "--ckpt", trained, *flags)
    assert result.exit_code == 0, result.output
    assert result.stdout == text + "\n"
    assert "".join(model.stream(**options)) == text
    assert text.startswith(options.get("prime", ""))


def test_score_equals_eval_json(trained, tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    result = run("eval", "--ckpt", trained, path, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == charrnn.load(trained).score(TEXT)


def test_a_model_runs_on_the_layout_it_was_trained_with(trained):
    """Model.threads is the layout of the run's thread count; score passes it down (the bits of
    evaluate.score on that layout), and another layout set on the model agrees to rounding."""
    model = charrnn.load(trained)
    assert model.config.threads >= 1 and model.threads.n == model.config.threads
    ids = model._ids(TEXT)
    total, n = evaluate.score(model.params, model.spec, ids, n_streams=1,
                              threads=runtime.Threads(model.config.threads))
    assert model.score(TEXT)["loss_nats"] == total / n
    model.threads = runtime.Threads(3)
    assert model.score(TEXT)["loss_nats"] == pytest.approx(total / n, rel=1e-5)


def test_trace_loss_is_the_score_and_its_layers_are_named(trained):
    model = charrnn.load(trained)
    trace = model.trace(TEXT)
    L, V, H = len(TEXT), len(model.vocab), model.spec.cell_size
    assert trace.probs.shape == (L, V) and trace.loss.shape == (L - 1,)
    np.testing.assert_allclose(trace.probs.sum(axis=1), 1.0, rtol=1e-6)
    ids = trace.ids
    np.testing.assert_allclose(trace.loss, -np.log(trace.probs[np.arange(L - 1), ids[1:]]),
                               rtol=1e-6)
    assert trace.loss.mean() == pytest.approx(model.score(TEXT)["loss_nats"], rel=1e-6)
    names = {"rnn": {"h"}, "lstm": {"h", "c", "i", "f", "o", "g"}, "gru": {"h", "r", "z", "n"},
             "mingru": {"h", "z", "n"}, "minlstm": {"h", "i", "n"}}
    assert len(trace.layers) == model.spec.layers
    for layer in trace.layers:
        assert set(layer) == names[model.spec.cell]
        assert all(a.shape == (L, H) for a in layer.values())
        # the names are the equations' names: h follows from them
        if model.spec.cell == "lstm":
            np.testing.assert_allclose(layer["h"], layer["o"] * np.tanh(layer["c"]), atol=1e-6)
        h_prev = np.vstack([np.zeros((1, H)), layer["h"][:-1]])
        if model.spec.cell == "gru":
            expect = (1 - layer["z"]) * layer["n"] + layer["z"] * h_prev
            np.testing.assert_allclose(layer["h"], expect, atol=1e-6)
        if model.spec.cell == "mingru":
            expect = (1 - layer["z"]) * h_prev + layer["z"] * layer["n"]
            np.testing.assert_allclose(layer["h"], expect, atol=1e-6)
        if model.spec.cell == "minlstm":
            expect = (1 - layer["i"]) * h_prev + layer["i"] * layer["n"]
            np.testing.assert_allclose(layer["h"], expect, atol=1e-5)


def test_bad_options_and_text_raise_charrnn_errors(trained):
    model = charrnn.load(trained)
    assert issubclass(charrnn.CharrnnError, Exception)
    for bad in (dict(temperature=float("nan")), dict(temperature=float("inf")),
                dict(top_p=0), dict(top_p=float("nan")), dict(length=-1)):
        with pytest.raises(charrnn.CharrnnError):
            model.sample(**bad)
    with pytest.raises(TypeError, match="top_k must be int"):  # a value of the wrong kind
        model.sample(top_k=1.5)
    with pytest.raises(charrnn.CharrnnError, match="not in the vocabulary"):
        model.score("caf\u00e9")
    with pytest.raises(charrnn.CharrnnError, match="too short"):
        model.score("a")
    with pytest.raises(charrnn.CharrnnError, match="does not exist"):
        charrnn.load("/nonexistent/best.npz")


def test_train_config_layers_defaults_file_and_keywords(corpus, tmp_path):
    result = charrnn.train(corpus, TINY, out=tmp_path / "a", steps=12, eval_every=6, **QUIET)
    assert result.step == 12 and result.run_dir == str(tmp_path / "a")
    assert result.chars == 12 * 8 * 20  # tiny.yaml: batch 8, window 20
    saved = charrnn.load(tmp_path / "a" / "last.npz").config
    assert saved.hidden_size == 32 and saved.steps == 12  # the file's value, then the keyword's
    assert isinstance(saved, charrnn.TrainConfig)
    as_dict = dataclasses.asdict(saved)
    again = charrnn.train(corpus, as_dict, out=tmp_path / "b", **QUIET)
    assert again.best_val == result.best_val  # a config passed as a dict trains the same run
    with pytest.raises(charrnn.CharrnnError, match="unknown config key 'hiden_size'"):
        charrnn.train(corpus, TINY, out=tmp_path / "c", hiden_size=3)


def snapshot(run_dir):
    return {n: (run_dir / n).read_bytes() for n in sorted(os.listdir(run_dir))}


def test_train_refuses_an_existing_run_and_another_corpus(corpus, tmp_path):
    out = tmp_path / "run"
    charrnn.train(corpus, TINY, out=out, steps=10, eval_every=5, **QUIET)
    before = snapshot(out)
    with pytest.raises(charrnn.CharrnnError, match="already holds a run"):
        charrnn.train(corpus, TINY, out=out, steps=10, eval_every=5, **QUIET)
    other = tmp_path / "other.txt"
    other.write_text(corpus.read_text(encoding="utf-8")[::-1], encoding="utf-8")
    with pytest.raises(charrnn.CharrnnError, match="different corpus"):
        charrnn.train(other, resume=out / "last.npz", steps=20, **QUIET)
    assert snapshot(out) == before  # nothing of the run changed, no lock left behind
    charrnn.train(corpus, TINY, out=out, steps=10, eval_every=5, overwrite=True, seed=7, **QUIET)
    assert charrnn.load(out / "last.npz").config.seed == 7


def test_train_leaves_signal_handlers_and_malloc_as_they_were(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "keep_freed_memory",
                        lambda: pytest.fail("a library call changed malloc's settings"))
    marker = lambda signum, frame: None  # noqa: E731
    with_marker = {s: signal.signal(s, marker) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        charrnn.train(corpus, TINY, out=tmp_path / "ok", steps=10, eval_every=5, **QUIET)
        assert all(signal.getsignal(s) is marker for s in with_marker)

        def fail(record):
            raise RuntimeError("stop here")
        with pytest.raises(RuntimeError, match="stop here"):
            charrnn.train(corpus, TINY, out=tmp_path / "err", steps=10, eval_every=5,
                          on_eval=fail, **QUIET)
        assert all(signal.getsignal(s) is marker for s in with_marker)
        assert (tmp_path / "err" / "last.npz").exists()  # saved before on_eval was called
    finally:
        for s, previous in with_marker.items():
            signal.signal(s, previous)


def test_ctrl_c_saves_last_and_raises_keyboard_interrupt(corpus, tmp_path):
    before = signal.getsignal(signal.SIGINT)
    records = []

    def ctrl_c(record):
        records.append(record)
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt) as caught:
        charrnn.train(corpus, TINY, out=tmp_path / "run", steps=50, eval_every=5,
                      on_eval=ctrl_c, **QUIET)
    assert isinstance(caught.value, charrnn.Stopped)
    assert caught.value.result.stopped_by == signal.SIGINT
    assert [r["step"] for r in records] == [5]
    assert charrnn.load(tmp_path / "run" / "last.npz").checkpoint.step == 5
    assert signal.getsignal(signal.SIGINT) is before


def test_a_second_training_into_a_folder_in_use_is_refused(corpus, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "charrnn", "train", str(corpus), "--config", TINY,
           "--sample-length", "0", "--out", str(out)]
    first = subprocess.Popen(cmd + ["--steps", "100000", "--time-limit", "60"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / ".lock").exists() or not (out / ".lock").read_text().strip():
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.05)
        second = subprocess.run(cmd + ["--steps", "10", "--overwrite"], capture_output=True,
                                text=True, timeout=60)
        assert second.returncode == 1
        assert second.stderr.strip() == f"Error: {out} is in use by process {first.pid}"
        # reading a run in progress still works
        while not (out / "last.npz").exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        info = subprocess.run([sys.executable, "-m", "charrnn", "info", str(out / "last.npz")],
                              capture_output=True, text=True, timeout=60)
        assert info.returncode == 0, info.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=60)
    assert first.returncode == 130
    assert not (out / ".lock").exists()


def test_train_flags_are_the_schema(tmp_path):
    """Every TrainConfig key is a flag of `charrnn train`, with its default shown."""
    help_text = " ".join(run("train", "-h").output.split())
    for f in dataclasses.fields(charrnn.TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = "none" if f.default is None else f.default
        assert re.search(rf"{flag}\b.*?\[default: {re.escape(str(default))}\]", help_text), flag


# ---- arguments: one type check at the edge of every public function ----------------------------

WRONG = [None, b"ROMEO:", 5, 2.5, True, [], {}, object(), "x", np.array([1.5]), -1, 10**20]


def public_calls(model, corpus, tmp):
    """name -> (function, valid arguments by name): every public call of the library."""
    import charrnn.plot
    import charrnn.tune
    import charrnn.viz
    return {
        "sample": (model.sample, dict(length=5, prime="KING", temperature=1.0, top_k=0,
                                      top_p=1.0, stop="\n", seed=1)),
        "stream": (model.stream, dict(length=5, prime="", seed=1)),
        "score": (model.score, dict(text=TEXT)),
        "trace": (model.trace, dict(text=TEXT)),
        "load": (charrnn.load, dict(path=str(model.checkpoint_path))),
        "train": (charrnn.train, dict(corpus=str(corpus), config=TINY, progress=False,
                                      overwrite=False, out=str(tmp / "run"), steps=2)),
        "plan": (charrnn.plan, dict(corpus=str(corpus), config=TINY, progress=False,
                                    steps=2)),
        "write_page": (charrnn.viz.write_page, dict(model=model, text=TEXT,
                                                    path=str(tmp / "v.html"), chars=50)),
        "plot_run": (charrnn.plot.plot_run, dict(run=str(tmp / "none"))),
        "tune.sweep": (charrnn.tune.sweep, dict(corpus=str(corpus), space={"lr": [1e-3, 2e-3]},
                                                out=str(tmp / "sweep"), trials=1,
                                                pruner="median", seed=0)),
        "tune.report": (charrnn.tune.report, dict(out=str(tmp / "sweep"))),
    }


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_a_wrong_type_to_any_public_function_is_named_before_any_work(trained, corpus,
                                                                        tmp_path, data):
    """Any one argument of any public call given a value its annotation does not admit: a
    TypeError naming that argument, before anything is written; never an error from deep in
    NumPy (an AttributeError, an IndexError ...). Every public function is checked."""
    model = charrnn.load(trained)
    model.checkpoint_path = trained
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        calls = public_calls(model, corpus, tmp)
        name = data.draw(st.sampled_from(sorted(calls)))
        fn, kwargs = calls[name]
        hints = typing.get_type_hints(fn.__wrapped__)  # every public function is @checked
        arg = data.draw(st.sampled_from(sorted(k for k in kwargs if k in hints)))
        value = data.draw(st.sampled_from(WRONG))
        if arguments.matches(value, hints[arg]):
            return  # a value of the right kind: the function's own checks take it from here
        with pytest.raises(TypeError, match=f"{arg} must be"):
            result = fn(**{**kwargs, arg: value})
            if name == "stream":
                "".join(result)
        assert not os.listdir(tmp), (name, arg, os.listdir(tmp))


def test_plan_is_the_dry_run(tmp_path):
    """charrnn.plan is what `charrnn train --dry-run` prints: with `time`, the rules' choice
    filled into the config and its reasons; without, the report alone; nothing written."""
    args = dict(threads=1, batch_size=8, seq_len=20, hidden_size=32, out=str(tmp_path / "run"))
    planned = charrnn.plan(SHAKESPEARE, progress=False, time="60s", **args)
    assert (planned.config.cell, planned.config.layers, planned.config.hidden_size) == \
        ("gru", 2, 32)
    assert planned.config.time_limit == 60 and isinstance(planned.config.dropout, float)
    assert planned.choices[0] == "time 60s: 2 x 32 gru, chosen for this corpus and machine " \
                                 "(1 thread):"
    assert planned.choices[2].startswith("  hidden_size 32 (yours): ")
    plain = charrnn.plan(SHAKESPEARE, TINY, progress=False, out=str(tmp_path / "run"))
    assert plain.choices == [] and plain.config == charrnn.config.load(
        TINY, {"out": str(tmp_path / "run")})
    printed = run("train", SHAKESPEARE, "--config", TINY, "--dry-run", "--out", tmp_path / "run")
    assert printed.exit_code == 0
    assert printed.stdout.splitlines() == plain.report
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("call", [
    lambda m: m.sample(prime=b"ROMEO:"), lambda m: m.sample(stop=5),
    lambda m: m.sample(prime=None), lambda m: m.score(None),
    lambda m: __import__("charrnn.viz").viz.write_page(m, None, "x.html")])
def test_the_calls_of_the_issue_name_their_argument(trained, call):
    with pytest.raises(TypeError, match=r"(prime|stop|text) must be (str|Union)"):
        call(charrnn.load(trained))
