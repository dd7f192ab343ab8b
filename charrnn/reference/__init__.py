"""The cells and the whole language model, written the plain textbook way.

This is the readable oracle: explicit one-hot vectors, a Python loop over time, one equation per
line, slow on purpose. The fast cells in charrnn/cells and the model in charrnn/model.py (and
charrnn/residual.py) must equal it (tests/test_reference.py checks this in float64).

    cells.py      the RNN, the LSTM, the GRU; sigmoid, tanh, one_hot
    min_cells.py  minGRU and minLSTM, whose gates read the input only
    blocks.py     RMS normalisation, GELU and an affine map, for the residual stack
    model.py      the whole model in both stacks, with dropout and weight-drop masks; WINDOWS,
                  every cell by name
    optim.py      AdamW's update (decoupled weight decay) and the moving average of the weights

Shape letters: T time, N batch, D input width, H hidden, V vocabulary. Arrays are time-major,
x (T, N, D) and hs (T, N, H). A cell's state is a tuple: (h,), or (h, c) for the LSTM, each
(N, H). Every *_forward returns a cache that only its own *_backward reads.

The arguments come in the fast cells' order, so the two read side by side: a window's
`*_forward(p, x, state) -> (hs, final state, cache)` and
`*_backward(p, cache, dhs, dstate) -> (grads, dx, dstate0)`; a step's
`*_step_forward(p, x, h_prev, ...)` and `*_step_backward(p, cache, dh, ...) -> (grads, dx, ...)`.
"""
from .blocks import (affine_backward, affine_forward, gelu_backward, gelu_forward,  # noqa: F401
                     rms_norm_backward, rms_norm_forward)
from .cells import (gru_backward, gru_forward, gru_step_backward, gru_step_forward,  # noqa: F401
                    lstm_backward, lstm_forward, lstm_step_backward, lstm_step_forward, one_hot,
                    rnn_backward, rnn_forward, rnn_step_backward, rnn_step_forward, sigmoid,
                    tanh)
from .min_cells import (mingru_backward, mingru_forward, mingru_step_backward,  # noqa: F401
                        mingru_step_forward, minlstm_backward, minlstm_forward,
                        minlstm_step_backward, minlstm_step_forward)
from .model import WINDOWS, model_backward, model_forward  # noqa: F401
from .optim import adamw_step, ema_step  # noqa: F401
