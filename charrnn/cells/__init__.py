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
cell must equal its plain version in charrnn/reference/ (tests/test_reference.py).

rnn, lstm and gru also give their passes in pieces, which forward and backward run over the
whole window and the wavefront (charrnn/wavefront.py) a chunk of steps at a time:

    Forward(p, x, state): .project(steps, threads)   the input side of those steps, every row
                          .loop(rows, steps)         the recurrence on rows over consecutive
                                                     steps, in order, once the earlier are done
                          .result() -> (hs, state, cache);  .hs (T, N, H) as the loop fills it
    Backward(p, cache, dstate): .loop(rows, dhs, steps)   the same, last steps first
                          .input_grad(steps, out)    out[steps] = dLoss/dx (dense input), once
                                                     loop has done those steps
                          .result(threads, dx=True) -> (grads, dx or None, dstate0)
"""
from . import gru, lstm, mingru, minlstm, rnn

CELLS = {"rnn": rnn, "lstm": lstm, "gru": gru, "mingru": mingru, "minlstm": minlstm}
