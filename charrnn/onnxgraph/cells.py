"""One generation step of each cell as ONNX nodes: the equations of charrnn/cells/ (and of the
plain versions in charrnn/reference/), gate orders as the checkpoint stores them.

Each function takes the graph g, the cell's parameters p (name -> the initializer's name: Wh,
bhn, ...), a (N, G) the input projection x Wx + b already made, and the state, a tuple of (N, H)
values; it returns the new state, a tuple of the same kind. Shape letters: N batch, H the cell's
width, G = GATES * H.
"""


def rnn(g, p, a, state):
    """h = tanh(a + h_prev Wh)."""
    (h_prev,) = state
    return (g.op("Tanh", g.add(g.matmul(h_prev, p["Wh"]), a), out=g.at("h")),)


def lstm(g, p, a, state):
    """[i | f | o | g] = a + h_prev Wh; i, f, o = sigmoid(.), g = tanh(.);
    c = f * c_prev + i * g;  h = o * tanh(c)."""
    h_prev, c_prev = state
    a_i, a_f, a_o, a_g = g.split(g.add(g.matmul(h_prev, p["Wh"]), a), 4)
    i, f, o = (g.op("Sigmoid", x, out=g.at(name)) for x, name in zip((a_i, a_f, a_o), "ifo"))
    c = g.add(g.mul(f, c_prev), g.mul(i, g.op("Tanh", a_g, out=g.at("g"))), out=g.at("c"))
    h = g.mul(o, g.op("Tanh", c), out=g.at("h"))
    return h, c


def gru(g, p, a, state):
    """The PyTorch variant: [r | z | n] blocks of a and of h_prev Wh;
    r = sigmoid(a_r + ah_r), z = sigmoid(a_z + ah_z), n = tanh(a_n + r * (ah_n + bhn)),
    h = n + z * (h_prev - n), which is (1 - z) * n + z * h_prev."""
    (h_prev,) = state
    a_r, a_z, a_n = g.split(a, 3)
    ah_r, ah_z, ah_n = g.split(g.matmul(h_prev, p["Wh"]), 3)
    r = g.op("Sigmoid", g.add(a_r, ah_r), out=g.at("r"))
    z = g.op("Sigmoid", g.add(a_z, ah_z), out=g.at("z"))
    n = g.op("Tanh", g.add(a_n, g.mul(r, g.add(ah_n, p["bhn"]))), out=g.at("n"))
    return (g.add(n, g.mul(z, g.sub(h_prev, n)), out=g.at("h")),)


def _mix(g, z, n, h_prev):
    """h = (1 - z) * h_prev + z * n: the linear recurrence of the minimal cells."""
    keep = g.sub(g.scalar(1.0), z)
    return g.add(g.mul(z, n), g.mul(keep, h_prev), out=g.at("h"))


def mingru(g, p, a, state):
    """[z | n] blocks of a: z = sigmoid(a_z), n = tanh(a_n), h = (1 - z) h_prev + z n."""
    (h_prev,) = state
    a_z, a_n = g.split(a, 2)
    return (_mix(g, g.op("Sigmoid", a_z, out=g.at("z")), g.op("Tanh", a_n, out=g.at("n")),
                 h_prev),)


def _log_sigmoid(g, x):
    """log sigmoid(x) = min(x, 0) - log(1 + exp(-|x|)), finite for every x. (Softplus would
    say it in one operator, but ONNX Runtime has no float64 Softplus.)"""
    tail = g.op("Log", g.add(g.scalar(1.0), g.op("Exp", g.op("Neg", g.op("Abs", x)))))
    return g.sub(g.op("Min", x, g.scalar(0.0)), tail)


def minlstm(g, p, a, state):
    """[f | i | n] blocks of a; the normalised input gate i' = i / (f + i), computed as
    sigmoid(log sigmoid(a_i) - log sigmoid(a_f)) (the fast cell's form, which stays finite where
    both sigmoids round to 0); n = tanh(a_n), h = (1 - i') h_prev + i' n."""
    (h_prev,) = state
    a_f, a_i, a_n = g.split(a, 3)
    z = g.op("Sigmoid", g.sub(_log_sigmoid(g, a_i), _log_sigmoid(g, a_f)), out=g.at("i"))
    return (_mix(g, z, g.op("Tanh", a_n, out=g.at("n")), h_prev),)


STEPS = {"rnn": rnn, "lstm": lstm, "gru": gru, "mingru": mingru, "minlstm": minlstm}
