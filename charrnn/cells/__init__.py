"""The recurrent cells, by config name: the classic rnn, lstm and gru, and mingru and minlstm,
whose gates read the input only (all that is left in time is an elementwise scan). Each module
has the same functional interface:

    param_shapes(D, H) -> {name: shape}
    init(rng, D, H, dtype) -> params
    forward(p, x, state, threads) -> (hs, state, cache)
    backward(p, cache, dhs, dstate, threads) -> (grads, dx, dstate0)
    step_params(p) -> q                 (the weights step reads, made once before generation)
    step(q, a, state) -> state          (one generation step; a = x q[Wx] + q[b] already looked up)
    activations(cache) -> {"h": (T, N, H), ...}   (what each unit computed, gates by name)
    STATE_NAMES ("h", or "h", "c"), GATES (gate width G = GATES * H), GATE_NAMES (if gated)

x is (T, N) ids or (T, N, D) floats, time-major; state a tuple of (N, H) arrays; threads the
layout the window's loops and products run on (runtime.Threads; default runtime.ONE_THREAD). A new
cell must equal its plain version in charrnn/reference/ (tests/test_reference.py)."""
from . import gru, lstm, mingru, minlstm, rnn

CELLS = {"rnn": rnn, "lstm": lstm, "gru": gru, "mingru": mingru, "minlstm": minlstm}
