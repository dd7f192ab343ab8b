"""Generating text from a trained model, one character at a time (batch 1)."""
import numpy as np

from . import model


def next_id(logits, temperature, top_k, top_p, rng):
    """Draw one id from logits (V,). temperature 0 is argmax; top_k / top_p (0 = off) restrict
    the draw to the k most likely ids / the smallest set whose probability reaches top_p."""
    if temperature == 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    if top_k and top_k < len(z):
        cut = np.partition(z, -top_k)[-top_k]
        z = np.where(z >= cut, z, -np.inf)
    probs = np.exp(z - z.max())
    if top_p and top_p < 1.0:
        order = np.argsort(-probs)
        cum = np.cumsum(probs[order])
        keep = order[:int(np.searchsorted(cum, top_p * cum[-1])) + 1]
        kept = np.zeros_like(probs)
        kept[keep] = probs[keep]
        probs = kept
    cum = np.cumsum(probs)
    return int(min(np.searchsorted(cum, rng.random() * cum[-1], side="right"), len(cum) - 1))


def generate(params, spec, vocab, length, rng, temperature=1.0, top_k=0, top_p=0.0, prime=""):
    """Yield `length` new characters, one at a time, after feeding prime (ids, any length).

    Without a prime the model starts from a zero state and a newline (or the first character of
    the vocabulary when it has no newline), as at the start of a paragraph.
    """
    table = model.input_table(params)
    state = model.zero_state(spec, 1)
    if len(prime) > 1:
        # the prime's state in one window pass rather than character by character
        _, state = model.logits(params, spec, np.asarray(prime[:-1]).reshape(-1, 1), state)
    last = int(prime[-1]) if len(prime) else vocab.find("\n") if "\n" in vocab else 0
    for _ in range(length):
        out, state = model.step(params, spec, table, np.array([last]), state)
        last = next_id(out[0], temperature, top_k, top_p, rng)
        yield vocab[last]


def until(chars, stop):
    """Pass chars through and end right after the first time they spell out stop (included)."""
    tail = ""
    for ch in chars:
        yield ch
        tail = (tail + ch)[-len(stop):]
        if tail == stop:
            return
