"""The recurrent cells, by config name. Each module has the same functional interface:
param_shapes(D, H), init(rng, D, H, dtype), forward(p, x, state) -> (hs, state, cache),
backward(p, cache, dhs, dstate) -> (grads, dx, dstate0), step(p, a, state) -> state,
and STATE_NAMES / GATES (gate width G = GATES * H of the input projection)."""
from . import gru, lstm, rnn

CELLS = {"rnn": rnn, "lstm": lstm, "gru": gru}
