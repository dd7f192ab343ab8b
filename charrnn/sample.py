"""Generating text from a trained model, one character at a time (batch 1)."""
import itertools
import math
import numbers

import numpy as np

from . import inference, model, runtime
from .errors import CharrnnError


def check_options(length, temperature, top_k, top_p):
    """The sampling options' types and ranges; a bad one is a CharrnnError naming it."""
    def whole(name, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise CharrnnError(f"{name} must be a whole number, 0 or more, got {value!r}")

    def finite(name, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not math.isfinite(value):
            raise CharrnnError(f"{name} must be a finite number, got {value!r}")

    whole("length", length)
    whole("top_k", top_k)
    finite("temperature", temperature)
    if temperature < 0:
        raise CharrnnError(f"temperature must be 0 or more, got {temperature!r}")
    finite("top_p", top_p)
    if not 0 < top_p <= 1:
        raise CharrnnError(f"top_p must be in (0, 1], got {top_p!r}")


def make_rng(seed):
    """The generator for seed: None (unpredictable), a whole number 0 or more, or an
    np.random.Generator, used as it is. Any other seed is a CharrnnError, where numpy would
    raise a ValueError or TypeError of its own."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
                             or seed < 0):
        raise CharrnnError(f"seed must be a whole number, 0 or more, got {seed!r}")
    return np.random.default_rng(seed)


def next_id(logits, temperature, top_k, top_p, rng, u=None):
    """Draw one id from logits (V,). temperature 0 is argmax; top_k / top_p (0 = off) restrict
    the draw to the k most likely ids / the smallest set whose probability reaches top_p.
    u is the uniform draw in [0, 1) to use, by default rng.random()."""
    if temperature == 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64)
    if temperature != 1:
        z /= temperature
    if top_k and top_k < len(z):
        cut = np.partition(z, -top_k)[-top_k]
        z = np.where(z >= cut, z, -np.inf)
    z -= z.max()
    probs = np.exp(z, out=z)
    if top_p and top_p < 1.0:
        order = np.argsort(-probs)
        cum = np.cumsum(probs[order])
        keep = order[:int(np.searchsorted(cum, top_p * cum[-1])) + 1]
        kept = np.zeros_like(probs)
        kept[keep] = probs[keep]
        probs = kept
    cum = np.cumsum(probs, out=probs)
    u = rng.random() if u is None else u
    return int(min(cum.searchsorted(u * cum[-1], side="right"), len(cum) - 1))


def _uniforms(rng, n, chunk=256):
    """n uniform draws, taken from rng in chunks: the same numbers as n calls of rng.random(),
    at a fraction of the per-call cost."""
    while n > 0:
        yield from rng.random(min(n, chunk)).tolist()
        n -= chunk


def generate(params, spec, vocab, length, rng, temperature=1.0, top_k=0, top_p=0.0, prime="",
             threads=runtime.ONE_THREAD):
    """Yield `length` new characters, one at a time, after feeding prime (ids, any length).

    Without a prime the model starts from a zero state and a newline (or the first character of
    the vocabulary when it has no newline), as at the start of a paragraph. threads: the
    layout the prime is read on (runtime.Threads); the characters after it are made one at a time.
    """
    step = inference.stepper(params, spec)
    state = model.zero_state(spec, 1)
    if len(prime) > 1:
        # the prime's state in window passes rather than character by character
        state = inference.advance(params, spec, np.asarray(prime[:-1]), state, threads)
    last = int(prime[-1]) if len(prime) else vocab.find("\n") if "\n" in vocab else 0
    draws = _uniforms(rng, length) if temperature != 0 else itertools.repeat(None, length)
    for u in draws:
        out, state = step(last, state)
        last = next_id(out, temperature, top_k, top_p, rng, u)
        yield vocab[last]


def until(chars, stop):
    """Pass chars through and end right after the first time they spell out stop (included)."""
    tail = ""
    for ch in chars:
        yield ch
        tail = (tail + ch)[-len(stop):]
        if tail == stop:
            return
