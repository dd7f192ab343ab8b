"""charrnn viz: the page's data in Python, and the page itself in a headless Chromium.

The browser tests open each cell's page from file:// (tests/viz_browser.py drives Chromium over
its DevTools pipe) and check what the page shows against Model.trace: the colours of a unit, the
hover box's guesses, the saturation points, and the JavaScript forward pass of --live against
NumPy. They skip where /usr/bin/chromium is absent; CI installs it. Each saves a screenshot in
its temporary folder.
"""
import dataclasses
import math
import os
import re

import numpy as np
import pytest
from click.testing import CliRunner

import charrnn
import charrnn.viz as viz
from charrnn import inference
from charrnn.cli import main
from charrnn.viz import features, pack
from viz_browser import CHROMIUM, Browser

CORPUS = os.path.join(os.path.dirname(__file__), "..", "data", "tinyshakespeare.txt")
CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "tiny.yaml")

# every cell, and the residual stack with wider cells and an MLP (embedding, norms, branches)
MODELS = {"rnn": dict(cell="rnn", layers=1), "lstm": dict(cell="lstm", layers=2),
          "gru": dict(cell="gru", layers=2), "minlstm": dict(cell="minlstm", layers=2),
          "mingru-residual": dict(cell="mingru", layers=2, stack="residual", expand=2, mlp=2),
          "gru-residual": dict(cell="gru", layers=2, stack="residual")}

browser_only = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                  reason=f"needs Chromium at {CHROMIUM}")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """name -> the best.npz of a tiny model trained for 60 steps (two layers when gated)."""
    found = {}
    for name, options in MODELS.items():
        out = tmp_path_factory.mktemp(f"viz-{name}")
        result = charrnn.train(CORPUS, CONFIG, out=str(out), steps=60, eval_every=60,
                               sample_length=0, progress=False, **options)
        found[name] = os.path.join(result.run_dir, "best.npz")
    return found


@pytest.fixture(scope="module")
def models(checkpoints):
    return {name: charrnn.load(path) for name, path in checkpoints.items()}


@pytest.fixture(scope="module")
def text():
    with open(CORPUS, encoding="utf-8") as f:
        return f.read()[-700:]  # the end of the validation split: speeches, capitals, newlines


# ---- the data, in Python ---------------------------------------------------------------------

def test_text_features():
    f = features.text_features('ab "c(d\n[e]) f"\nG')
    assert f["position in line"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0]
    assert f["inside quotes"].tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert f["inside brackets"].tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 1, 0, 0, 0, 0, 0, 0]
    assert np.flatnonzero(f["start of word"]).tolist() == [0, 4, 6, 9, 13, 16]
    assert np.flatnonzero(f["after newline"]).tolist() == [8, 16]
    assert np.flatnonzero(f["upper case"]).tolist() == [16]


def test_ranking_finds_planted_units():
    """Units built to equal a feature (with a little noise) come first for that feature, in the
    layer and state they were planted in."""
    text = 'He said "yes, my lord" (and then) "no".\nAnd so "we" part.\n' * 8
    f = features.text_features(text)
    rng = np.random.default_rng(0)
    L, H = len(text), 16
    layers = [{"h": rng.uniform(-1, 1, (L, H)), "c": rng.uniform(-1, 1, (L, H))},
              {"h": rng.uniform(-1, 1, (L, H)), "c": rng.uniform(-1, 1, (L, H))}]
    layers[1]["c"][:, 11] = f["inside quotes"] + rng.normal(0, 0.05, L)
    layers[0]["h"][:, 3] = -f["position in line"] / 40 + rng.normal(0, 0.05, L)
    ranked = features.rank_units(text, layers)
    best = {}
    for e in ranked:
        best.setdefault((e["layer"], e["feature"]), e)
    quotes, position = best[(1, "inside quotes")], best[(0, "position in line")]
    assert (quotes["state"], quotes["unit"]) == ("c", 11) and quotes["r"] > 0.95
    assert (position["state"], position["unit"]) == ("h", 3) and position["r"] < -0.95
    assert ranked[0] in (quotes, position)  # the two planted units top the whole list
    assert [abs(e["r"]) for e in ranked] == sorted((abs(e["r"]) for e in ranked), reverse=True)


def dequantise(codes, lo):
    """The values uint8 codes stand for, as the page computes them."""
    return lo + codes.astype(np.float64) * pack.STEP


def test_quantised_values_are_within_half_a_step():
    values = np.linspace(-1, 1, 1001)
    back = dequantise(pack.quantise(values, -1.0, 1.0), -1.0)
    assert np.abs(back - values).max() <= pack.STEP / 2 + 1e-12


def test_page_data_and_cli(checkpoints, models, text, tmp_path, monkeypatch):
    model, ckpt = models["lstm"], checkpoints["lstm"]
    meta, arrays = viz.page_data(model, text, chars=300)
    assert meta["text"] == text[:300] and not any(k.startswith("w.") for k in arrays)
    assert arrays["a1.c"].shape == (model.spec.hidden_size, 300)
    path = tmp_path / "text.txt"
    path.write_text(text, encoding="utf-8")
    out = tmp_path / "page.html"
    result = CliRunner().invoke(main, ["viz", "--ckpt", ckpt, str(path), "-o",
                                       str(out), "--chars", "200"])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"wrote {out} (") and out.stat().st_size > 0
    path.write_text("Hello \u00e9\u2603", encoding="utf-8")
    result = CliRunner().invoke(main, ["viz", "--ckpt", ckpt, str(path)])
    assert result.exit_code == 1 and "'\u00e9'" in result.stderr and "'\u2603'" in result.stderr
    path.write_text("", encoding="utf-8")
    result = CliRunner().invoke(main, ["viz", "--ckpt", ckpt, str(path)])
    assert result.exit_code == 1 and "empty" in result.stderr
    path.write_text(text, encoding="utf-8")
    monkeypatch.setattr(viz, "LIVE_LIMIT", 1000)
    result = CliRunner().invoke(main, ["viz", "--ckpt", ckpt, str(path), "--live"])
    assert result.exit_code == 1 and "--live would embed" in result.stderr


# ---- the page, in Chromium -------------------------------------------------------------------

def expected_colour(scale, v):
    """The page's colour for value v, computed here from the same stops (SCALES)."""
    stops = viz.SCALES[scale]
    if v <= stops[0][0]:
        return stops[0][1]
    for (x0, c0), (x1, c1) in zip(stops, stops[1:]):
        if v <= x1:
            t = (v - x0) / (x1 - x0)
            return [a + t * (b - a) for a, b in zip(c0, c1)]
    return stops[-1][1]


def colours(b, where):
    rgb = b.eval(f"Array.from(document.querySelectorAll({where!r}), "
                 "s => getComputedStyle(s).backgroundColor)")
    # "rgb(r, g, b)", or "rgba(0, 0, 0, 0)" where there is no background
    return np.array([[float(x) for x in re.findall(r"[\d.]+", c)[:3]] for c in rgb])


def probs64(model, ids):
    """Model.trace's probabilities computed in float64 from the same float32 weights."""
    spec = dataclasses.replace(model.spec, dtype="float64")
    params = {k: v.astype(np.float64) for k, v in model.params.items()}
    logits, _ = inference.trace(params, spec, ids)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@browser_only
@pytest.mark.parametrize("name", sorted(MODELS))
def test_page_in_chromium(models, text, name, tmp_path):
    model = models[name]
    cell = model.spec.cell
    page = tmp_path / "viz.html"
    viz.write_page(model, text, page, chars=600, live=True)
    shown = text[:600]
    tr = model.trace(shown)
    H, top = model.spec.cell_size, model.spec.layers - 1
    with Browser() as b:
        b.open(page)
        # every character is there, in order
        spans = b.eval("Array.from(document.querySelectorAll('#text span'), s => s.textContent)")
        assert len(spans) == len(shown)
        assert all(s == ("\u21b5\n" if ch == "\n" else ch) for s, ch in zip(spans, shown))

        # the unit picker: the next button, the arrow key and the state picker change the
        # colours to the chosen unit's values (within the quantisation)
        before = colours(b, "#text span")
        b.eval(f"charrnnViz.select({top}, 'h', 4)")
        b.eval("document.getElementById('next').click()")
        b.key("ArrowRight", "ArrowRight", 39)
        assert b.eval("document.getElementById('unit').value") == "6"
        for state in viz.STATES:
            if state not in tr.layers[top]:
                continue
            b.eval(f"(s => {{ s.value = {state!r}; s.dispatchEvent(new Event('change')); }})"
                   f"(document.getElementById('state'))")
            lo = viz.STATES[state][0]
            v = viz.shown_states(tr.layers[top])[state][:, 6]
            want = [expected_colour("gate" if lo == 0 else "diverging",
                                    dequantise(pack.quantise(x, lo, 1.0), lo)) for x in v]
            got = colours(b, "#text span")
            assert np.abs(got - np.array(want)).max() <= 1, state
        assert np.abs(got - before).max() > 0

        # the loss toggle colours each character by the bits of surprise at it
        b.eval("document.getElementById('by-loss').click()")
        got = colours(b, "#text span")[1:]
        want = [expected_colour("loss", x / math.log(2)) for x in tr.loss]
        assert np.abs(got - np.array(want)).max() <= 1
        b.eval("document.getElementById('by-loss').click()")

        # the hover box: the 5 guesses of trace, and what came with its bits
        for t in (3, 250, len(shown) - 2):
            b.hover(*b.eval(f"""(s => {{ s.scrollIntoView({{block: 'center'}});
                const r = s.getBoundingClientRect();
                return [r.left + r.width / 2, r.top + r.height / 2];
            }})(document.querySelectorAll('#text span')[{t}])"""))
            # mouse events reach the page with the next frame, after the command returns
            b.eval(f"new Promise(done => {{ const wait = () => document.querySelector("
                   f"'#text span.cur[data-t=\"{t}\"]') ? done() : setTimeout(wait, 10); "
                   f"wait(); }})")
            guesses = b.eval("Array.from(document.querySelectorAll('#box .guess'), "
                             "g => [g.dataset.char, +g.dataset.p])")
            order = np.argsort(-tr.probs[t], kind="stable")[:5]
            assert [g[0] for g in guesses] == [model.vocab[i] for i in order]
            assert np.allclose([g[1] for g in guesses], tr.probs[t, order], atol=1e-4)
            actual = b.eval("(a => [a.dataset.char, +a.dataset.bits])"
                            "(document.querySelector('#box .actual'))")
            assert actual[0] == shown[t + 1]
            assert actual[1] == pytest.approx(tr.loss[t] / math.log(2), abs=1e-3)
            assert b.eval("!document.getElementById('box').hidden")

        # gate saturation: one point per unit and gate, where the fractions put it
        gates = features.SATURATION_GATES.get(cell, ())
        for k in range(model.spec.layers):
            n = b.eval(f"document.querySelectorAll('#saturation svg[data-layer=\"{k}\"] "
                       f"circle[data-unit]').length")
            assert n == H * len(gates)
        if gates:
            g = gates[-1]
            cx = b.eval(f"+document.querySelector('#saturation svg[data-layer=\"{top}\"] "
                        f"circle[data-gate=\"{g}\"][data-unit=\"2\"]').getAttribute('cx')")
            frac = (tr.layers[top][g][:, 2] < features.LOW).mean()
            assert cx == pytest.approx(frac * 200, abs=0.06)

        # --live: the page's own forward pass gives NumPy's probabilities
        prime = shown[:80]
        js = np.array(b.eval(f"charrnnViz.liveProbs({prime!r}).map(r => Array.from(r))"))
        ids = tr.ids[:80]
        diff32 = np.abs(js - tr.probs[:80]).max()
        diff64 = np.abs(js - probs64(model, ids)).max()
        print(f"\n{name}: JS vs Model.trace (float32) {diff32:.2e}, vs float64 {diff64:.2e}")
        assert diff32 < 1e-5 and diff64 < 1e-9

        # Generate at temperature 0 writes what sample() writes, coloured by the chosen unit
        b.eval("""(() => { const d = document;
            d.getElementById('prime').value = 'ROMEO:';
            d.getElementById('temperature').value = '0';
            d.getElementById('length').value = '30';
            d.getElementById('generate').click(); })()""")
        b.eval("new Promise(done => { const wait = () => document.getElementById('generate')"
               ".textContent === 'Generate' ? done() : setTimeout(wait, 20); wait(); })")
        written = b.eval("document.getElementById('live-out').textContent")
        assert written == model.sample(30, prime="ROMEO:", temperature=0)
        v = viz.shown_states(model.trace(written).layers[top])["h"][:, 6]
        b.eval(f"charrnnViz.select({top}, 'h', 6)")
        got = colours(b, "#live-out span")
        assert np.abs(got - np.array([expected_colour("diverging", x) for x in v])).max() <= 1

        b.eval("window.scrollTo(0, 0)")
        b.screenshot(tmp_path / f"viz-{name}.png")
        errors = [c for c in b.console if c[0] in ("error", "exception", "assert")]
        assert errors == [] and b.requests == []
