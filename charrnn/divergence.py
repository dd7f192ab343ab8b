"""The rule that stops a diverging run: a loss far above what a model that knows nothing scores.

Why this rule: a model that predicts every character as equally likely scores ln V nats per
character, and a fresh model starts there (its output layer starts near zero). A loss several
times that means weights thrown about, not fitted: every later step and checkpoint is wasted,
and a high rate can keep such a loss finite (no NaN check sees it) for the whole run. char-rnn
stops at three times its first loss; so does charrnn, with the first loss raised to ln V when
it is lower (a resumed run starts far below ln V, and would otherwise be held to its own
start) and to FLOOR_NATS for a vocabulary of a few characters, where ln V is so small (ln 2 =
0.69) that a healthy run's early wobble could reach three times it. run.py applies it to every
step's training loss and to each evaluation's validation loss (there with the training loss
past it too, since a model that memorised a small text scores its validation split badly
without diverging). benchmarks/divergence_margin.py measures the shipped configs' margin.
"""
import math

FACTOR = 3.0  # the limit, in multiples of the reference loss: char-rnn's
FLOOR_NATS = 1.0  # the reference loss's least value, nats/char (ln V is below it for V <= 2)


def limit(vocab_size, first_loss):
    """The loss in nats/char above which a run has diverged: FACTOR x max(ln V, the first
    training loss of this invocation, FLOOR_NATS). vocab_size: V; first_loss: nats/char."""
    return FACTOR * max(math.log(vocab_size), first_loss, FLOOR_NATS)


def diverged(loss, loss_limit):
    """Whether a loss (nats/char) is above loss_limit (limit's), or is not a number."""
    return not loss <= loss_limit


def message(what, loss, loss_limit, lr, clip):
    """The one line that ends a diverged run. what: which loss ("training loss at step 12",
    "validation loss at step 100"); lr, clip: the run's settings, named in what to lower."""
    clip_hint = f"--clip (now {clip:g})" if clip else "set a --clip (now off)"
    return (f"the run diverged: {what} is {loss:.4g} nats/char, above the limit of "
            f"{loss_limit:.4g} ({FACTOR:g} x the largest of ln V, the first loss and "
            f"{FLOOR_NATS:g}); the diverged model was not saved and the saved checkpoints are "
            f"kept; lower --lr (now {lr:g}) or {clip_hint}")
