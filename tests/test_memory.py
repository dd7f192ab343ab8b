"""Memory that a text cannot blow up: every command that makes arrays per character of a text
(viz, eval, sample's prime, Model.trace) works in windows, and what must still grow with the
text is estimated first and refused in one line that names the figure and what lowers it.

The commands run under an address-space limit (RLIMIT_AS, as `prlimit --as` sets it) on a model
of a vocabulary of 5,000: there a (L, V) array of 20,000 characters is 400-800 MB, more than the
limit leaves; before the windows, OpenBLAS gave up there and the process died.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import charrnn
from charrnn import inference, model as model_mod, runtime
from clihelp import ROOT, one_line_error, run

resource = pytest.importorskip("resource", reason="address-space limits are POSIX")
LIMIT = 600 * 2**20  # bytes of address space: Python, NumPy and OpenBLAS take about 200 MB
V = 5000


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """(checkpoint of an LSTM 1 x 16 over V characters, a text of 20,000 of them)."""
    folder = tmp_path_factory.mktemp("big-vocab")
    alphabet = np.array([chr(0x4E00 + i) for i in range(V)])
    rng = np.random.default_rng(0)
    text = folder / "text.txt"
    text.write_text("".join(alphabet) + "".join(alphabet[rng.integers(0, V, 20_000 - V)]),
                    encoding="utf-8")
    done = run("train", text, "--cell", "lstm", "--hidden-size", 16, "--layers", 1, "--steps", 1,
               "--batch-size", 2, "--seq-len", 10, "--eval-every", 1, "--eval-chars", 100,
               "--sample-length", 0, "--out", folder / "run")
    assert done.exit_code == 0, done.output
    return folder / "run" / "last.npz", text


def limited(args, cwd):
    """`python ARGS` with its address space limited to LIMIT."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, preexec_fn=limit,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": ROOT, "OPENBLAS_NUM_THREADS": "1"})


@pytest.mark.parametrize("command", ["viz", "eval", "sample"])
def test_a_long_text_of_a_big_vocabulary_fits_a_small_limit(big, tmp_path, command):
    ckpt, text = big
    args = {"viz": ["viz", "--ckpt", ckpt, text, "--chars", 20_000, "-o", "page.html"],
            "eval": ["eval", "--ckpt", ckpt, text],
            "sample": ["sample", "--ckpt", ckpt, "--prime-file", text, "--length", 20,
                       "--num-samples", 3, "--seed", 1]}[command]
    done = limited(["-m", "charrnn", *args], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    if command == "viz":
        assert (tmp_path / "page.html").stat().st_size > 0


def test_a_trace_too_big_for_the_limit_is_refused_before_it_starts(big, tmp_path):
    """Model.trace's (L, V) probabilities are the answer itself: over the limit, a CharrnnError
    with the figures and the way out; top=K, which keeps K a character, fits."""
    ckpt, text = big
    code = ("import sys, charrnn; m = charrnn.load(sys.argv[1]); t = open(sys.argv[2]).read()\n"
            "print(m.trace(t, top=5).top_ids.shape)\n"
            "try:\n    m.trace(t)\nexcept charrnn.CharrnnError as e:\n    print(e)\n")
    done = limited(["-c", code, ckpt, text], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    shape, refusal = done.stdout.splitlines()
    assert shape == "(20000, 5)"
    assert refusal.startswith("a trace of 20,000 characters needs about ") and "MB" in refusal
    assert "available here: trace a shorter text, or pass top=K" in refusal


def test_viz_refuses_in_one_line_naming_chars(big, tmp_path, monkeypatch):
    ckpt, text = big
    monkeypatch.setattr(runtime, "available_memory", lambda: 20 * 2**20)
    failed = run("viz", "--ckpt", ckpt, text, "--chars", 20_000, "-o", tmp_path / "page.html")
    one_line_error(failed, "the page of 20,000 characters needs about", "than the 20 MB",
                   "--chars")
    assert not (tmp_path / "page.html").exists()


def test_available_memory_sees_the_address_space_limit(tmp_path):
    code = "from charrnn import runtime; print(runtime.available_memory())"
    done = limited(["-c", code], tmp_path)
    room = int(done.stdout)
    assert 0 < room < LIMIT


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_windows_give_the_trace_of_one_pass(monkeypatch, cell):
    """Model.trace in windows of 7 characters: the probabilities, losses and activations of one
    pass over the text, to rounding; its top=K the first K of a stable sort."""
    spec = model_mod.ModelSpec(cell, 11, 6, 2, dtype="float64")
    params = model_mod.init_params(spec, np.random.default_rng(3))
    ck = type("Ck", (), {"vocab": "abcdefghij\n", "spec": spec, "weights": params,
                         "config": charrnn.TrainConfig()})()
    m = charrnn.Model(ck)
    text = "".join(np.random.default_rng(4).choice(list("abcdefghij\n"), 40))
    whole = m.trace(text)
    logits, layers = inference.trace(params, spec, m._ids(text))
    monkeypatch.setattr(inference, "TEXT_WINDOW", 7)
    windowed, top = m.trace(text), m.trace(text, top=3)
    np.testing.assert_allclose(windowed.probs, whole.probs, rtol=1e-12)
    np.testing.assert_allclose(windowed.loss, whole.loss, rtol=1e-12)
    for a, b in zip(windowed.layers, layers):
        for name in a:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-12, atol=1e-15)
    expected = np.argsort(-windowed.probs, axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(top.top_ids, expected)
    assert top.probs is None
    # the prime's state in windows: the state of one pass
    state = inference.advance(params, spec, m._ids(text), model_mod.zero_state(spec, 1))
    _, one = inference.logits(params, spec, m._ids(text).reshape(-1, 1),
                              model_mod.zero_state(spec, 1))
    for a, b in zip(state, one):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=1e-12)


def test_most_likely_is_a_stable_sorts_first_k():
    from charrnn.api import most_likely
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        k = int(rng.integers(1, n + 1))
        p = rng.integers(0, 4, size=(6, n)).astype(float)  # many ties
        np.testing.assert_array_equal(most_likely(p, k),
                                      np.argsort(-p, axis=1, kind="stable")[:, :k])


def test_eval_of_a_text_too_long_to_hold_is_refused(big, monkeypatch):
    ckpt, text = big
    monkeypatch.setattr(runtime, "available_memory", lambda: 1000)
    failed = run("eval", "--ckpt", ckpt, text)
    one_line_error(failed, "the 20,000 characters of", "needs about", "score a part of the text")
