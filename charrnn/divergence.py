"""The rule that stops a diverging run: a loss far above what a model that knows nothing scores.

A model that predicts every character as equally likely scores ln V nats per character, and a
fresh model starts there (its output layer starts near zero). A run whose loss climbs to several
times that has diverged: its weights are being thrown about, not fitted, and every later step
and every checkpoint of it is wasted. char-rnn stops at three times its first loss; so does
charrnn, with two changes. The first loss is raised to ln V when it is lower (a resumed run
starts far below ln V, and spikes of a healthy run on resuming would otherwise count from
there), and to FLOOR_NATS for tiny vocabularies, where ln V is so small (ln 2 = 0.69) that a
healthy run's early wobble could reach three times it.

A non-finite loss is model.py's overflow and is refused before this rule (run.py); this rule is
for the finite losses that grow without bound, which no NaN check sees.
benchmarks/divergence_margin.py measures how far below the limit the shipped configs stay.
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
