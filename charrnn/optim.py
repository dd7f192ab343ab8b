"""Optimizers (Adam, Adagrad, SGD with momentum, each with decoupled weight decay), gradient
clipping and the moving average of the weights, updating in place, and the learning-rate
schedule.

The optimizer state is a flat dict of arrays keyed `{slot}.{param name}` (e.g. `m.l0.Wx`) plus
`t`, the number of updates applied, so it saves into a checkpoint as it is.
"""
import math

import numpy as np

OPTIMIZERS = ("adam", "adagrad", "sgd")
LR_SCHEDULES = ("constant", "cosine", "step", "wsd")
SLOTS = {"adam": ("m", "v"), "adagrad": ("g2",), "sgd": ("mom",)}
SQUARES = ("v", "g2")  # slots that accumulate squared gradients: never negative
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
ADAGRAD_EPS = 1e-8
SGD_MOMENTUM = 0.9


def init_state(kind, params):
    state = {"t": np.zeros((), dtype=np.int64)}
    for slot in SLOTS[kind]:
        for name, p in params.items():
            state[f"{slot}.{name}"] = np.zeros_like(p)
    return state


def global_norm(grads):
    return float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads.values())))


def clip(grads, mode, value):
    """Clip in place: 'norm' rescales all gradients so their global L2 norm is at most value,
    'value' clamps each element to [-value, value]. Returns the global norm before clipping."""
    norm = global_norm(grads)
    if value and value > 0:
        if mode == "norm" and norm > value:
            scale = value / (norm + 1e-6)
            for g in grads.values():
                g *= scale
        elif mode == "value":
            for g in grads.values():
                np.clip(g, -value, value, out=g)
    return norm


def decays(p):
    """Whether weight decay applies to a parameter: to the weight matrices (Wx, Wh, Wy, embed,
    Wo, W1, W2: 2-D), not to the biases (b, bhn, by, bo, b1, b2) nor the norms' gains (norm,
    mlp_norm: 1-D), whose size sets no scale to keep down (as nanoGPT and AWD-LSTM's AdamW)."""
    return p.ndim >= 2


def apply(kind, params, grads, state, lr, weight_decay=0.0):
    """One update of every parameter, in place.

    adam:    m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
             p -= lr m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps)
    adagrad: g2 += g^2;  p -= lr g / sqrt(g2 + eps)          (as in min-char-rnn)
    sgd:     mom = mu mom + g;  p -= lr mom                   (PyTorch's momentum form)

    weight_decay (decoupled, Loshchilov & Hutter's AdamW): first p *= 1 - lr * weight_decay for
    the parameters that decays() picks, outside the optimizer's moments, as torch.optim.AdamW
    does; 0 leaves the update as it was, bit for bit.
    """
    state["t"] += 1
    t = int(state["t"])
    for name, p in params.items():
        g = grads[name]
        if weight_decay and decays(p):
            p *= 1 - lr * weight_decay
        if kind == "adam":
            b1, b2 = ADAM_BETAS
            m, v = state[f"m.{name}"], state[f"v.{name}"]
            # one scratch array instead of a temporary per operation: the same arithmetic in
            # the same order, so the same bits
            tmp = np.multiply(g, 1 - b1)
            m *= b1
            m += tmp
            np.multiply(g, g, out=tmp)
            tmp *= 1 - b2
            v *= b2
            v += tmp
            step = lr / (1 - b1 ** t)
            np.sqrt(v, out=tmp)
            tmp *= 1.0 / np.sqrt(1 - b2 ** t)
            tmp += ADAM_EPS
            np.divide(m, tmp, out=tmp)
            tmp *= step
            p -= tmp
        elif kind == "adagrad":
            g2 = state[f"g2.{name}"]
            g2 += g * g
            p -= lr * g / np.sqrt(g2 + ADAGRAD_EPS)
        elif kind == "sgd":
            mom = state[f"mom.{name}"]
            mom *= SGD_MOMENTUM
            mom += g
            p -= lr * mom
        else:
            raise ValueError(f"unknown optimizer {kind!r}")


def ema_update(ema, params, decay, step):
    """The moving average of the weights after update number `step` (1 for the first), in
    place: ema = d ema + (1 - d) p with d = min(decay, (1 + step) / (10 + step)), which starts
    low so that the average forgets the random initial weights within the first steps (as
    TensorFlow's ExponentialMovingAverage with num_updates) and settles at decay."""
    d = min(decay, (1 + step) / (10 + step))
    for name, p in params.items():
        e = ema[name]
        e *= d
        e += (1 - d) * p


def lr_at(step, lr, schedule="constant", total_steps=1, warmup_steps=0, lr_min=0.0, decay=0.5,
          decay_every=1000, decay_frac=0.2):
    """The learning rate of update number `step` (0 for the first): a pure function of the step,
    so a resumed run continues the schedule exactly.

    Every schedule first ramps up linearly, lr * (step + 1) / warmup_steps, for warmup_steps
    updates. After that, with s = step - warmup_steps and S = total_steps - warmup_steps:
    constant: lr
    cosine:   lr_min + (lr - lr_min) * (1 + cos(pi * min(s / S, 1))) / 2, reaching lr_min at
              total_steps and staying there
    step:     lr * decay ** (s // decay_every)
    wsd:      warmup-stable-decay: lr until the last decay_frac of S, then a straight line down
              to lr_min at total_steps. A run that does not know how far it will get can train
              at full rate for longer than under a cosine, which starts falling at once.
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    s = step - warmup_steps
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        progress = min(s / max(total_steps - warmup_steps, 1), 1.0)
        return lr_min + (lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "step":
        return lr * decay ** (s // decay_every)
    if schedule == "wsd":
        span = max(total_steps - warmup_steps, 1)
        if s >= span:
            return lr_min
        decay_start = span * (1.0 - decay_frac)
        if s <= decay_start:
            return lr
        return lr + (lr_min - lr) * (s - decay_start) / (span - decay_start)
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")
