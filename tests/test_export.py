"""charrnn export: the ONNX file gives Model.trace's probabilities, samples the text `charrnn
sample` prints (through the loop of docs/export.md, run as written), carries its vocabulary and
passes onnx's full check, for every cell and both stacks; bad input gets one line and no file."""
import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import given

import charrnn
from charrnn import checkpoint, config, model as model_mod, onnxgraph
from clihelp import SHAKESPEARE, assert_one_line_error, run, without_package
from test_properties import damage, damages, examples
from viz_browser import CHROMIUM, Browser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CELLS = ("rnn", "lstm", "gru", "mingru", "minlstm")
# each case its own layer count, and in the residual stack its own widths, so that every count
# and both MLP settings go through the export
SIZES = {
    "plain": {"rnn": {"layers": 1}, "lstm": {"layers": 2}, "gru": {"layers": 3},
              "mingru": {"layers": 2}, "minlstm": {"layers": 3}},
    "residual": {"rnn": {"layers": 2, "mlp": 2}, "lstm": {"layers": 2, "expand": 2},
                 "gru": {"layers": 3, "mlp": 2}, "mingru": {"layers": 2, "expand": 2, "mlp": 2},
                 "minlstm": {"layers": 1, "expand": 2, "mlp": 4}},
}
CASES = [(cell, stack, dtype) for stack in SIZES for cell in CELLS
         for dtype in ("float32", "float64")]
TOLERANCE = {"float32": 1e-5, "float64": 1e-9}  # on each next-character probability
# onnxruntime-web's dist/ folder (npm install onnxruntime-web), for the page of docs/export.md
ORT_WEB = os.environ.get("CHARRNN_ORT_WEB", "")
ORT_WEB_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.mjs")


def case_id(case):
    return "-".join(case)


@pytest.fixture(scope="module")
def onnx():
    return pytest.importorskip("onnx", reason="export needs onnx: pip install '.[export]'")


@pytest.fixture(scope="module")
def ort():
    return pytest.importorskip("onnxruntime",
                               reason="running the file needs onnxruntime: pip install '.[test]'")


@pytest.fixture(scope="module")
def text():
    with open(SHAKESPEARE, encoding="utf-8") as f:
        return f.read(20_500)[20_000:]  # 500 characters the models never saw whole


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """case -> the best.npz of a tiny run of that cell, stack and dtype (trained once)."""
    runs = {}

    def get(cell, stack, dtype):
        if (cell, stack, dtype) not in runs:
            out = tmp_path_factory.mktemp(f"{cell}-{stack}-{dtype}")
            charrnn.train(SHAKESPEARE, os.path.join(ROOT, "configs", "tiny.yaml"), out=out,
                          progress=False, cell=cell, stack=stack, dtype=dtype, hidden_size=16,
                          steps=40, eval_every=40, lr=1e-2, sample_length=0,
                          **SIZES[stack][cell])
            runs[cell, stack, dtype] = out / "best.npz"
        return runs[cell, stack, dtype]
    return get


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory, onnx):
    """(case, window) -> (Model, the path of its exported .onnx file)."""
    files = {}

    def get(case, window=False):
        if (case, window) not in files:
            path = tmp_path_factory.mktemp("onnx") / "model.onnx"
            charrnn.export(trained(*case), path, window=window)
            files[case, window] = charrnn.load(trained(*case)), path
        return files[case, window]
    return get


def session(ort, path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def softmax(logits):
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def zero_state(model, N):
    spec = model.spec
    return {f"{name}0": np.zeros((spec.layers, N, spec.cell_size), spec.dtype)
            for name in spec.cell_module.STATE_NAMES}


def run_steps(sess, model, ids):
    """ids (T, N) through the step graph one step at a time, the state carried -> logits
    (T, N, V) and the last state (a list: h, and c for the LSTM)."""
    state, out = zero_state(model, ids.shape[1]), []
    for row in ids.astype(np.int64):
        logits, *new = sess.run(None, {"ids": row, **state})
        state = dict(zip(state, new))
        out.append(logits)
    return np.array(out), list(state.values())


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_step_graph_gives_the_probabilities_of_trace(case, exported, ort, text):
    model, path = exported(case)
    trace = model.trace(text)  # probs (500, V)
    probs = softmax(run_steps(session(ort, path), model, trace.ids[:, None])[0])[:, 0]
    assert probs.shape == trace.probs.shape == (500, len(model.vocab))
    error = float(np.abs(probs - trace.probs).max())
    assert error < TOLERANCE[case[2]], error


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_window_graph_gives_the_probabilities_of_trace(case, exported, ort, text):
    model, path = exported(case, window=True)
    trace = model.trace(text)
    ids = trace.ids.astype(np.int64)
    logits, *state = session(ort, path).run(None, {"ids": ids[:, None], **zero_state(model, 1)})
    assert logits.shape == (500, 1, len(model.vocab))
    error = float(np.abs(softmax(logits[:, 0]) - trace.probs).max())
    assert error < TOLERANCE[case[2]], error
    # the state after the window is the step graph's after the same characters
    step_model, step_path = exported(case)
    _, step_state = run_steps(session(ort, step_path), step_model, ids[:, None])
    assert len(state) == len(step_state) == len(model.spec.cell_module.STATE_NAMES)
    for a, b in zip(state, step_state):
        assert a.shape == (model.spec.layers, 1, model.spec.cell_size)
        assert np.abs(a - b).max() < TOLERANCE[case[2]]


def test_the_batch_is_any_number_of_streams(exported, ort, text):
    """Three texts side by side in one step graph, each as trace gives it alone."""
    model, path = exported(("lstm", "residual", "float64"))
    texts = [text[:100], text[100:200], text[200:300]]
    ids = np.stack([model.trace(t).ids for t in texts], axis=1)  # (100, 3)
    probs = softmax(run_steps(session(ort, path), model, ids)[0])
    for k, t in enumerate(texts):
        error = float(np.abs(probs[:, k] - model.trace(t).probs).max())
        assert error < 1e-9, (k, error)


def docs_blocks(lang):
    """The ```lang blocks of docs/export.md, in order."""
    with open(os.path.join(ROOT, "docs", "export.md"), encoding="utf-8") as f:
        return re.findall(rf"```{lang}\n(.*?)```", f.read(), re.S)


def docs_loop():
    """The Python block of docs/export.md and the sample(...) call its last line prints."""
    (code,) = docs_blocks("python")
    call = re.fullmatch(r"print\(sample\((.*)\)\)", code.strip().splitlines()[-1]).group(1)
    return code, call


def test_the_docs_loop_is_short_and_reads_only_onnxruntime_and_numpy():
    code, call = docs_loop()
    assert len([line for line in code.splitlines() if line.strip()]) <= 36
    assert set(re.findall(r"^import (\w+)", code, re.M)) == {"json", "numpy", "onnxruntime"}
    assert "charrnn" not in code
    assert "top_k=" in call and "temperature=" in call and "prime=" in call and "seed=" in call


def run_docs_loop(path, tmp_path, monkeypatch, capsys):
    """docs/export.md's sampling loop run as written in a folder holding path as model.onnx ->
    (what it printed, the arguments of its sample call)."""
    code, call = docs_loop()
    (tmp_path / "model.onnx").write_bytes(path.read_bytes())
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/export.md", "exec"), {"__name__": "__main__"})
    return capsys.readouterr().out, call


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_the_docs_loop_samples_what_charrnn_samples(case, exported, ort, tmp_path, monkeypatch,
                                                   capsys):
    """The block as written, in a folder holding the case's model.onnx, prints the text
    Model.sample gives for its call's options and seed (charrnn sample's text)."""
    model, path = exported(case)
    printed, call = run_docs_loop(path, tmp_path, monkeypatch, capsys)
    expected = eval(f"model.sample({call})", {"model": model})
    assert printed == expected + "\n" and len(expected) == len("ROMEO:") + 300


def test_charrnn_sample_prints_the_docs_loops_text(exported, trained, ort, tmp_path,
                                                   monkeypatch, capsys):
    case = ("gru", "plain", "float32")
    _, path = exported(case)
    printed, call = run_docs_loop(path, tmp_path, monkeypatch, capsys)
    assert call == '300, prime="ROMEO:", temperature=0.8, top_k=10, seed=1'
    result = run("sample", "--ckpt", trained(*case), "--length", 300, "--prime", "ROMEO:",
                 "--temperature", 0.8, "--top-k", 10, "--seed", 1)
    assert result.exit_code == 0 and result.stdout == printed


@pytest.mark.parametrize("case", [("lstm", "plain", "float32"), ("minlstm", "residual", "float64")],
                         ids=case_id)
def test_metadata_and_names(case, exported, onnx, ort):
    model, path = exported(case)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 17
    # shape inference follows the graph through: each layer's new h is [N, H] of the file's type
    inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    shapes = {v.name: ([d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
                       v.type.tensor_type.elem_type) for v in inferred.graph.value_info}
    elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(case[2]))
    for k in range(model.spec.layers):
        assert shapes[f"l{k}.h"] == (["N", model.spec.cell_size], elem)
    meta = session(ort, path).get_modelmeta().custom_metadata_map
    assert json.loads(meta["vocab"]) == list(model.vocab)  # the characters, in id order
    assert "".join(json.loads(meta["vocab"])) == model.vocab
    spec = model.spec
    assert (meta["cell"], meta["stack"], meta["dtype"]) == case
    assert int(meta["layers"]) == spec.layers and int(meta["cell_size"]) == spec.cell_size
    assert int(meta["vocab_size"]) == len(model.vocab) and meta["model"] == str(spec)
    assert float(meta["validation_loss"]) == model.checkpoint.best_val
    assert meta["charrnn_version"] and int(meta["step"]) == model.checkpoint.step
    assert model.vocab[int(meta["start_id"])] == "\n"
    sess = session(ort, path)
    H, L = spec.cell_size, spec.layers
    names = spec.cell_module.STATE_NAMES
    assert {i.name: i.shape for i in sess.get_inputs()} == {
        "ids": ["N"], **{f"{n}0": [L, "N", H] for n in names}}
    assert {o.name: o.shape for o in sess.get_outputs()} == {
        "logits": ["N", len(model.vocab)], **{f"{n}1": [L, "N", H] for n in names}}


def test_any_vocabulary_round_trips(onnx, ort, tmp_path):
    """Control characters, quotes, a backslash, accents and a character beyond 16 bits: the
    metadata gives them back in id order, and the start id is the newline's."""
    vocab = "".join(sorted("\x00\t\n \"'\\aé€\u2028𝄞"))
    cfg = config.build({"cell": "gru", "hidden_size": 4})
    params = model_mod.init_params(model_mod.spec_of(cfg, len(vocab)), np.random.default_rng(0))
    ck = checkpoint.Checkpoint(config=cfg, vocab=vocab, params=params)
    charrnn.export(charrnn.Model(ck), tmp_path / "model.onnx")
    meta = session(ort, tmp_path / "model.onnx").get_modelmeta().custom_metadata_map
    assert json.loads(meta["vocab"]) == list(vocab)
    assert vocab[int(meta["start_id"])] == "\n"
    assert "validation_loss" not in meta  # never evaluated


def test_a_model_beyond_what_one_onnx_file_holds_is_refused(onnx, tmp_path):
    huge = type("Huge", (), {"params": {"Wy": np.broadcast_to(np.float32(0), (2**29,))}})
    with pytest.raises(charrnn.CharrnnError, match="2 GB an ONNX file holds"):
        onnxgraph.export(huge, tmp_path / "model.onnx")
    assert os.listdir(tmp_path) == []


def test_the_command_writes_a_checked_file_and_says_what_it_holds(trained, onnx, tmp_path):
    ckpt = trained("lstm", "plain", "float32")
    out = tmp_path / "model.onnx"
    result = run("export", "--ckpt", ckpt, "-o", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr.startswith(f"wrote {out} (")
    assert "ids [N], h0 [2, N, 16], c0 [2, N, 16] -> logits [N, 65], h1 [2, N, 16], c1 [2, N, " \
           "16]" in result.stderr
    onnx.checker.check_model(str(out), full_check=True)
    assert os.listdir(tmp_path) == ["model.onnx"]
    window = run("export", "--ckpt", ckpt, "-o", tmp_path / "window.onnx", "--window")
    assert window.exit_code == 0 and "the window graph: ids [T, N], h0 [2, N, 16]" in window.stderr
    assert "logits [T, N, 65]" in window.stderr
    assert onnx.load(str(tmp_path / "window.onnx")).graph.node[0].op_type == "Scan"


@pytest.fixture
def served(tmp_path):
    """tmp_path served over HTTP on this machine (onnxruntime-web fetches its files, which a
    page opened as a file may not) -> its URL."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(not os.path.exists(CHROMIUM) or not ORT_WEB or not all(
    os.path.exists(os.path.join(ORT_WEB, f)) for f in ORT_WEB_FILES),
    reason="needs /usr/bin/chromium and onnxruntime-web's dist/ folder in CHARRNN_ORT_WEB "
           "(npm install onnxruntime-web)")
@pytest.mark.parametrize("case", [("lstm", "plain", "float32"), ("minlstm", "residual", "float64")],
                         ids=case_id)
def test_the_docs_page_samples_what_charrnn_samples_in_chromium(case, exported, tmp_path,
                                                                served):
    """docs/export.md's page as written, beside the model, the meta.json its command writes and
    onnxruntime-web, in headless Chromium: given NumPy's uniforms for seed 1 it writes
    Model.sample's text, and on its own a sample of the model's characters."""
    model, path = exported(case)
    (tmp_path / "model.onnx").write_bytes(path.read_bytes())
    (page,) = docs_blocks("html")
    (tmp_path / "sample.html").write_text(page, encoding="utf-8")
    for name in ORT_WEB_FILES:
        (tmp_path / name).write_bytes(open(os.path.join(ORT_WEB, name), "rb").read())
    (command,) = [block.strip() for block in docs_blocks("sh") if "> meta.json" in block]
    subprocess.run(command.replace("python ", f"{sys.executable} ", 1), shell=True, check=True,
                   cwd=tmp_path)
    with Browser(timeout=60) as b:
        b.send("Page.navigate", {"url": f"{served}/sample.html"})
        deadline = time.monotonic() + 60
        while not b.eval('document.getElementById("text")?.textContent'):
            assert time.monotonic() < deadline and not [m for m in b.console
                                                        if m[0] == "exception"], b.console
            time.sleep(0.2)
        shown = b.eval('document.getElementById("text").textContent')
        assert shown.startswith("ROMEO:") and len(shown) == 306 and set(shown) <= set(model.vocab)
        u = json.dumps(np.random.default_rng(1).random(300).tolist())
        text = b.eval(f'(() => {{ const u = {u}; let k = 0; '
                      f'return sample(300, "ROMEO:", 0.8, 10, () => u[k++]); }})()')
        assert text == model.sample(300, prime="ROMEO:", temperature=0.8, top_k=10, seed=1)
        assert b.eval('sample(50, "", 0)') == model.sample(50, temperature=0)
        assert not [m for m in b.console if m[0] == "exception"], b.console


# ---- bad input: one line, exit 1 (2 for a usage error), nothing written -----------------------

@pytest.fixture
def kept(tmp_path):
    """An output path holding an earlier file that a failed export must leave as it was."""
    out = tmp_path / "model.onnx"
    out.write_bytes(b"an earlier export")
    yield out
    assert out.read_bytes() == b"an earlier export"
    assert os.listdir(tmp_path) == ["model.onnx"]  # no temporary file left behind


def test_a_damaged_checkpoint(trained, kept, tmp_path_factory):
    damaged = tmp_path_factory.mktemp("bad") / "damaged.npz"
    damaged.write_bytes(trained("gru", "plain", "float32").read_bytes()[:5000])
    assert_one_line_error(run("export", "--ckpt", damaged, "-o", kept),
                          "checkpoint", "not a readable charrnn .npz file")


@examples(30)
@given(damages)
def test_any_damage_is_refused_in_one_line_or_exports_the_same_file(trained, tmp_path_factory,
                                                                    how):
    """A checkpoint damaged any way (a flipped bit, cut short, zeroed, spliced, extended): one
    line and no file, or, where it still reads, the very file its intact copy exports."""
    ckpt = trained("gru", "residual", "float32")
    folder = tmp_path_factory.mktemp("damaged")
    raw = ckpt.read_bytes()
    (folder / "damaged.npz").write_bytes(damage(raw, raw, *how))
    result = run("export", "--ckpt", folder / "damaged.npz", "-o", folder / "model.onnx")
    if result.exit_code == 0:
        clean = run("export", "--ckpt", ckpt, "-o", folder / "clean.onnx")
        assert clean.exit_code == 0
        assert (folder / "model.onnx").read_bytes() == (folder / "clean.onnx").read_bytes()
    else:
        assert_one_line_error(result)
        assert sorted(os.listdir(folder)) == ["damaged.npz"]


def test_a_foreign_checkpoint(kept, tmp_path_factory):
    foreign = tmp_path_factory.mktemp("bad") / "foreign.npz"
    np.savez(foreign, weights=np.ones(3))
    assert_one_line_error(run("export", "--ckpt", foreign, "-o", kept), "checkpoint")


def test_a_missing_checkpoint(kept, tmp_path_factory):
    missing = tmp_path_factory.mktemp("bad") / "none.npz"
    assert_one_line_error(run("export", "--ckpt", missing, "-o", kept),
                          "does not exist")


def test_an_output_that_cannot_be_written(trained, onnx, tmp_path):
    ckpt = trained("rnn", "plain", "float32")
    assert_one_line_error(run("export", "--ckpt", ckpt, "-o", tmp_path / "no" / "m.onnx"),
                          "could not write", "No such file or directory")
    assert_one_line_error(run("export", "--ckpt", ckpt, "-o", tmp_path), "is a directory")
    assert os.listdir(tmp_path) == []


def test_an_unknown_option_is_a_usage_error(trained, kept):
    result = run("export", "--ckpt", trained("rnn", "plain", "float32"), "-o", kept, "--fast")
    assert result.exit_code == 2 and result.stderr.splitlines()[-1].startswith("Error: ")


def test_without_onnx_the_command_says_how_to_get_it(trained, kept, monkeypatch):
    without_package(monkeypatch, "onnx")
    assert_one_line_error(run("export", "--ckpt", trained("rnn", "plain", "float32"), "-o",
                              kept), "pip install 'charrnn[export]'")
