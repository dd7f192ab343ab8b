"""What the page ranks and plots: simple features of a text, the units whose activation tracks
them, and how often each gate saturates.

Shape letters: L characters, H units. A feature is one number per character, computed from the
text alone; a unit's activation at t is its value after reading character t.
"""
import numpy as np

FEATURES = {
    "position in line": "characters since the last newline",
    "inside quotes": "after an odd number of double quotes",
    "inside brackets": "depth of ( [ { not yet closed",
    "start of word": "a letter after a non-letter",
    "after newline": "the first character of a line",
    "upper case": "an upper-case letter",
}

SATURATION_GATES = {"lstm": ("i", "f", "o"), "gru": ("r", "z"), "mingru": ("z",),
                    "minlstm": ("i",)}
"""The sigmoid gates of each cell (g and n are candidates, not gates in [0, 1]; minlstm's
normalised i is its one gate, the share kept being 1 - i)."""

LOW, HIGH = 0.1, 0.9  # a gate below LOW is left-saturated, above HIGH right-saturated


def text_features(text):
    """text (L characters) -> {feature name: (L,) float64}, the features of FEATURES."""
    L = len(text)
    position, quotes, depth = np.zeros(L), np.zeros(L), np.zeros(L)
    col, inside, d = 0, False, 0
    for t, ch in enumerate(text):
        col = 0 if t and text[t - 1] == "\n" else col + (t > 0)
        if ch == '"':
            inside = not inside
        d = d + 1 if ch in "([{" else max(d - 1, 0) if ch in ")]}" else d
        position[t], quotes[t], depth[t] = col, inside, d
    letter = np.array([ch.isalpha() for ch in text])
    start = letter & ~np.concatenate([[False], letter[:-1]])
    after_nl = np.array([t > 0 and text[t - 1] == "\n" for t in range(L)])
    upper = np.array([ch.isupper() for ch in text])
    return {"position in line": position, "inside quotes": quotes, "inside brackets": depth,
            "start of word": start.astype(float), "after newline": after_nl.astype(float),
            "upper case": upper.astype(float)}


def correlations(acts, feature):
    """Pearson correlation of each column of acts (L, H) with feature (L,) -> (H,); 0 where
    either is constant (a correlation is undefined there, and nothing is tracked)."""
    a = acts - acts.mean(axis=0)
    f = feature - feature.mean()
    norm = np.sqrt((a * a).sum(axis=0) * (f @ f))
    r = np.zeros(acts.shape[1])
    np.divide(f @ a, norm, out=r, where=norm > 1e-12)
    return r


def rank_units(text, layers, per_feature=3):
    """The units worth looking at: for each layer and feature, the per_feature (state, unit)
    pairs with the largest absolute correlation, all sorted by it.

    layers: one dict per layer of state name -> (L, H) activations (as Trace.layers, with c
    already squashed if wanted). Returns dicts {layer, state, unit, feature, r}.
    """
    found = []
    for k, states in enumerate(layers):
        for name, feature in text_features(text).items():
            best = []
            for state, acts in states.items():
                r = correlations(np.asarray(acts, dtype=np.float64), feature)
                best += [(abs(r[u]), state, int(u), float(r[u]))
                         for u in np.argsort(-np.abs(r))[:per_feature] if r[u] != 0]
            best.sort(key=lambda b: -b[0])
            found += [{"layer": k, "state": state, "unit": u, "feature": name, "r": r}
                      for _, state, u, r in best[:per_feature]]
    return sorted(found, key=lambda e: -abs(e["r"]))


def saturation(cell, layers):
    """Per layer, {gate: (fraction of characters below LOW (H,), above HIGH (H,))} for the
    cell's sigmoid gates; empty dicts for the RNN, which has none."""
    gates = SATURATION_GATES.get(cell, ())
    return [{g: ((states[g] < LOW).mean(axis=0), (states[g] > HIGH).mean(axis=0))
             for g in gates} for states in layers]
