"""Decoupled weight decay with Adam (AdamW) and the moving average of the weights, written the
plain textbook way, one parameter at a time and returning new arrays: what charrnn/optim.py's
in-place updates must equal."""
import numpy as np


def adamw_step(p, g, m, v, t, lr, weight_decay, decayed, betas=(0.9, 0.999), eps=1e-8):
    """Update number t (1 for the first) of one parameter p with gradient g and Adam's moments
    m, v (Loshchilov & Hutter, "Decoupled weight decay regularization", algorithm 2, as
    torch.optim.AdamW computes it):

    p' = p (1 - lr weight_decay)           when decayed (a weight matrix), else p' = p
    m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2           the moments never see the decay
    p_new = p' - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

    Returns (p_new, m, v).
    """
    b1, b2 = betas
    if decayed:
        p = p * (1.0 - lr * weight_decay)
    m = b1 * m + (1.0 - b1) * g
    v = b2 * v + (1.0 - b2) * g * g
    m_hat = m / (1.0 - b1 ** t)
    v_hat = v / (1.0 - b2 ** t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


def ema_step(ema, p, decay, step):
    """The moving average after update number step (1 for the first):

    d = min(decay, (1 + step) / (10 + step))     low at first, so the random start fades fast
    ema_new = d ema + (1 - d) p
    """
    d = min(decay, (1.0 + step) / (10.0 + step))
    return d * ema + (1.0 - d) * p
