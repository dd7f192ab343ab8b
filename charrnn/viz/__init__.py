"""`charrnn viz`: one self-contained HTML page of what each unit of a model does over a text.

    import charrnn, charrnn.viz
    model = charrnn.load("runs/lstm/best.npz")
    charrnn.viz.write_page(model, open("play.txt").read(), "viz.html", chars=3000, live=True)

The page is page.html with viz.css, its scripts (net.js, live.js, saturation.js, viz.js) and the
data inlined: it works from file:// with no network request (its Content-Security-Policy forbids
every one). The data is Model.trace's, quantised (pack.py), with the ranked units and gate
saturation of features.py; with live=True also the float32 weights, which net.js runs forward in
float64 to write text in the page.
"""
import json
import math
import re
from importlib import resources

import numpy as np

from .. import atomic, inference, runtime
from ..api import Model
from ..arguments import PathLike, checked
from ..errors import CharrnnError
from ..positionwise import NORM_EPS
from ..loss import bits
from . import features, pack

LIVE_LIMIT = 25 * 2**20
"""The most bytes of weights --live embeds: beyond it the page would be slow to open."""

STATES = {  # name -> (lo, hi, what the picker says); c is shown squashed, as tanh(c)
    "h": (-1.0, 1.0, "h, hidden state"), "c": (-1.0, 1.0, "c, cell state as tanh(c)"),
    "i": (0.0, 1.0, "i, input gate"), "f": (0.0, 1.0, "f, forget gate"),
    "o": (0.0, 1.0, "o, output gate"), "g": (-1.0, 1.0, "g, cell candidate"),
    "r": (0.0, 1.0, "r, reset gate"), "z": (0.0, 1.0, "z, update gate"),
    "n": (-1.0, 1.0, "n, candidate"),
}

SCALES = {  # colour scales: [value, [r, g, b]] stops, linear in between, clamped at the ends
    "diverging": [[-1.0, [67, 147, 195]], [0.0, [247, 247, 247]], [1.0, [214, 96, 77]]],
    "gate": [[0.0, [247, 247, 247]], [1.0, [65, 171, 93]]],
    "loss": [[0.0, [247, 247, 247]], [8.0, [241, 105, 19]]],  # bits
}

TOP = 5  # guesses shown for the next character


def shown_states(layer):
    """A trace layer's arrays as the page shows them: c squashed by tanh into (-1, 1)."""
    return {name: np.tanh(a) if name == "c" else a for name, a in layer.items()}


def page_data(model, text, chars=3000, live=False):
    """What the page needs -> (meta, arrays): meta a JSON-ready dict, arrays {name: array} for
    pack.pack. The first `chars` characters of text are traced; weights are added with live."""
    if chars < 1:
        raise CharrnnError(f"chars must be 1 or more, got {chars}")
    text = text[:chars]
    if not text:
        raise CharrnnError("the text is empty")
    spec = model.spec
    if live:
        size = sum(p.size for p in model.params.values()) * 4
        if size > LIVE_LIMIT:
            raise CharrnnError(f"--live would embed {size / 2**20:.1f} MB of weights, more than "
                               f"the {LIVE_LIMIT // 2**20} MB a page can carry; leave it out")
    runtime.check_memory(page_bytes(model, len(text), live),
                         f"the page of {len(text):,} characters", "show fewer with --chars")
    tr = model.trace(text, top=TOP)
    layers = [shown_states(layer) for layer in tr.layers]
    arrays = {}
    for k, states in enumerate(layers):
        for name, a in states.items():
            lo, hi, _ = STATES[name]
            # unit-major (H, L): a unit's values over the text are contiguous for the page
            arrays[f"a{k}.{name}"] = pack.quantise(a.T, lo, hi)
    arrays["top_ids"] = tr.top_ids.astype(np.uint16)
    arrays["top_p"] = np.rint(tr.top_probs * 65535).astype(np.uint16)
    arrays["loss_bits"] = bits(tr.loss).astype(np.float32)
    if live:
        for name, p in model.params.items():
            arrays["w." + name] = p.astype(np.float32)
    ck = model.checkpoint
    sat = features.saturation(spec.cell, layers)
    meta = {
        "cell": spec.cell, "layers": spec.layers, "hidden": spec.cell_size,
        "width": spec.hidden_size, "stack": spec.stack, "mlp": spec.mlp,
        "norm_eps": NORM_EPS,
        "vocab": model.vocab, "text": text, "step": int(ck.step),
        "val_loss": _val_loss(ck),
        "mean_loss": float(tr.loss.mean()) if len(tr.loss) else None,
        "states": [[name, *STATES[name]] for name in layers[0]],
        "step_size": pack.STEP, "scales": SCALES, "live": bool(live),
        "units": features.rank_units(text, layers),
        "features": features.FEATURES,
        "saturation": [{g: [np.round(lo, 5).tolist(), np.round(hi, 5).tolist()]
                        for g, (lo, hi) in s.items()} for s in sat],
        "saturation_bounds": [features.LOW, features.HIGH],
    }
    return meta, arrays


def page_bytes(model, L, live=False):
    """About the bytes the page of L characters needs at its peak: the trace (top TOP guesses
    only, Model.trace_bytes); two float64 copies of one state (the features' correlations);
    and the packed arrays (one byte per activation, the guesses and the loss) about six times
    over: their bytes, joined, deflated, base64, in the page's text and its UTF-8."""
    _, layers = inference.trace(model.params, model.spec, np.zeros(1, dtype=np.int64))
    values = sum(a.size for layer in layers for a in layer.values())
    packed = L * (values + TOP * 4 + 4)
    weights = sum(p.size for p in model.params.values()) * 4 * 6 if live else 0
    return (model.trace_bytes(L, TOP) + 2 * 8 * L * model.spec.cell_size + 6 * packed
            + 16 * L + weights)


def _val_loss(ck):
    """The validation loss of the evaluation that saved the checkpoint (for a last.npz, not
    always the best), or None before any."""
    val = (ck.record or {}).get("val_loss", ck.best_val)
    return float(val) if val is not None and math.isfinite(val) else None


def render_page(model, text, chars=3000, live=False):
    """The page's HTML, as a str."""
    meta, arrays = page_data(model, text, chars, live)
    meta["index"], blob = pack.pack(arrays)
    files = resources.files(__name__)
    parts = {
        "title": f"charrnn viz: {model.spec}, step {meta['step']}",
        "css": files.joinpath("viz.css").read_text(encoding="utf-8"),
        "js": files.joinpath("viz.js").read_text(encoding="utf-8"),
        "net_js": files.joinpath("net.js").read_text(encoding="utf-8"),
        "live_js": files.joinpath("live.js").read_text(encoding="utf-8"),
        "saturation_js": files.joinpath("saturation.js").read_text(encoding="utf-8"),
        # "</script" or "<!--" in the text would end or upset the script element: \u003c is
        # the same JSON string
        "meta": json.dumps(meta, ensure_ascii=False).replace("<", "\\u003c"),
        "blob": blob,
    }
    page = files.joinpath("page.html").read_text(encoding="utf-8")
    return re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], page)


@checked
def write_page(model: Model, text: str, path: PathLike, chars: int = 3000, live: bool = False):
    """Write the page for the first `chars` characters of text to path; returns its size in
    bytes. Characters outside the model's vocabulary, an empty text or weights over LIVE_LIMIT
    with live raise CharrnnError."""
    data = render_page(model, text, chars, live).encode("utf-8")
    atomic.write_atomic(path, lambda f: f.write(data))  # whole or not at all, as every file
    return len(data)
