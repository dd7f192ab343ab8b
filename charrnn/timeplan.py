"""`time: 30m`: the rules that choose a model and a recipe for a corpus, a machine and a time.

The rules see three things: the time, the corpus (its training characters and vocabulary) and
the machine's pace for each candidate model, in characters a second, measured by the caller
(schedule.plan_time times a few real training steps of each). They turn the time into a
budget of training characters per candidate and choose from that budget alone, so the
constants below hold on any machine: they were derived from sweeps that trained for a fixed
number of characters (benchmarks/sweep_time_rules.py; the data in
benchmarks/data/time-rules.jsonl, the derivation in docs/time.md). Keys the user gives are
taken as they are and the rules choose the rest around them.

Pure: no I/O, no clock; `measure` is handed in.
"""
import dataclasses
import math

from . import config as config_mod, model
from .dropconnect import has_recurrent_weights

WIDTHS = (64, 128, 192, 256, 384, 512, 768, 1024)  # the candidates, narrowest first
# The widest candidate whose budget gives each of its weights at least this many training
# characters is chosen. A wider model learns more from each character but, slower, sees fewer:
# in the sweeps, compared at equal time, the winner gave each weight 6 to 22 characters and
# the next wider one, which lost, 0.8 to 1.6 (docs/time.md)
CHARS_PER_WEIGHT = 4.0
# below this many characters of training *text* a weight, a model learns its text by heart
# rather than its language: report.warnings says so before any run, and the rules never choose
# such a model (unless even the narrowest is one). Not higher: on tiny Shakespeare `--time 30m`'s
# 2 x 512 GRU (0.40 a weight) reached 1.4564, below best.yaml's 2 x 384 (0.70) at 1.4618-1.4654,
# and on verse (210,000 characters, 4M of training) 2 x 384 at 0.14 a weight still beat 2 x 128
# at 1.07 by 0.13 nats, losing only to 2 x 256 at 0.31 (docs/time.md)
TEXT_PER_WEIGHT = 0.1
# the share of the time that trains: the rest measures the candidates, runs steps: auto's
# probe, the evaluations and the saves
TRAINING_SHARE = 0.85
# above this many passes over the training text the model starts to memorise it; dropout then
# rises with the passes (docs/time.md: at 4 passes dropout 0.3 cost 0.08 nats, at 19 it gained
# 0.004, and configs/best.yaml's 0.35 beat 0.25 at ~22)
DROPOUT_FROM_EPOCHS = 6.0
DROPOUT_PER_DOUBLING = 0.1  # dropout added for each doubling of the passes beyond that
DROPOUT_MAX = 0.4
# the recipe of each budget, smallest first: (budget in characters it holds from, batch,
# window, lr, warm-up steps); each is a measured config's (docs/time.md)
RECIPES = ((0, 32, 100, 3e-3, 50),            # the sweeps' own
           (8_000_000, 64, 100, 3e-3, 50),    # configs/gru.yaml's
           (24_000_000, 128, 50, 4e-3, 100))  # configs/best.yaml's
# the recipe's keys, for the rules' own choices: a GRU of two layers with Adam and a cosine
BASE = dict(cell="gru", layers=2, stack="plain", optimizer="adam", lr_schedule="cosine",
            clip=5.0, steps=config_mod.AUTO)
LR_MIN_SHARE = 1 / 60  # the cosine ends at this share of lr (3e-3 -> 5e-5, the configs')
REGULARIZERS = ("weight_drop", "weight_decay", "ema", "dropout_mode")
# where a model memorises its text, the two regularizers that paid there are on too: recurrent
# DropConnect and a moving average of the weights. Memorising needs many passes, or fewer over a
# large budget: at 34 passes over two 100,000-character texts (3M characters), on top of the
# rule's dropout, weight_drop 0.2 gained 0.024 and 0.057 nats and ema 0.99 0.014 and 0.029, in
# both seeds; at 16 passes over tiny Shakespeare's 1M (16M characters, the model 0.31 nats below
# validation in training without them) the two together gained 0.014; at 16 passes over
# 100,000-character excerpts of Shakespeare and code (1.4M characters, the models still
# learning) they cost 0.02-0.04, and at 4 passes weight_drop cost 0.03-0.06 (RESULTS.md, "The
# regularizers at a long budget" and "... between the two budgets"). weight_decay 0.1 gained
# 0.008, not in every seed: it stays off
REGULARIZE_FROM_EPOCHS = 30.0
# 14 passes and 8M characters: over all of tiny Shakespeare the two cost 0.03 nats at 12 passes
# (12M characters, --time 10m's 2 x 384 on a fast day: 1.4912 against 1.4588, its training
# loss 0.17 below validation without them) and gained 0.014 at 16 (16M, the half hour's
# 2 x 512), so they turn on between the two; the half hour (14.5-16 passes as the machine's
# pace moves from day to day, more on a faster machine) keeps them (RESULTS.md, "The
# regularizers at 12 passes")
REGULARIZE_LARGE_FROM_EPOCHS, LARGE_BUDGET = 14.0, 8_000_000
LONG_BUDGET = {"weight_drop": 0.2, "ema": 0.99}
EVALUATIONS = 10  # evaluations a run makes, about
# the batch each candidate's pace is measured at, unless the user gave one: the middle tier's
# (the run's own, smaller or larger, differs by some 10-20% in pace; steps: auto then fits it)
MEASURE_BATCH, MEASURE_WINDOW = 64, 100


@dataclasses.dataclass
class Plan:
    """What the rules chose: config `values` (the user's keys included, as given) and one line
    of `reasons` per choice."""
    values: dict
    reasons: list


def choose(seconds, train_chars, vocab_size, given, measure):
    """-> the Plan for a run of `seconds` on a corpus of train_chars training characters and
    vocab_size characters.

    given: the config keys the user gave, with their values (they win). measure(values) -> the
    pace in characters a second of a training step of the config `values` on this machine.
    """
    values = {**BASE, **given}
    width, pace, reasons = _width(seconds, train_chars, vocab_size, values, given, measure)
    values["hidden_size"] = width
    budget = pace * seconds * TRAINING_SHARE
    epochs = budget / train_chars
    reasons.append(_recipe(values, given, budget))
    reasons.append(_dropout(values, given, epochs))
    reasons.extend(_regularizers(values, given, epochs, budget))
    steps = budget / (values["batch_size"] * values["seq_len"])
    values.setdefault("eval_every", max(10, round(steps / EVALUATIONS, -1)))
    # an evaluation scores at most a fiftieth of the budget, so ten of them cost ~2% of the run
    values.setdefault("eval_chars", int(min(1_000_000, max(100_000, budget / 50))))
    values["time_limit"] = given.get("time_limit", seconds)
    return Plan(values, [f"corpus: {train_chars:,} training characters, vocabulary of "
                         f"{vocab_size}"] + reasons)


def weights(values, vocab_size):
    """The number of weights of the model that config `values` describe."""
    cfg = config_mod.load({**values, "steps": 1, "time": None, "time_limit": None})
    return sum(math.prod(s) for s in model.param_shapes(model.spec_of(cfg, vocab_size)).values())


def _width(seconds, train_chars, vocab_size, values, given, measure):
    """-> (hidden_size, its pace, reason lines): the widest candidate whose budget gives every
    weight CHARS_PER_WEIGHT characters and whose text gives it TEXT_PER_WEIGHT (the narrowest
    when none does), measured narrowest first up to the first that falls short."""
    shape = {**values, "batch_size": given.get("batch_size", MEASURE_BATCH),
             "seq_len": given.get("seq_len", MEASURE_WINDOW), "dropout": 0.0}
    if "hidden_size" in given:
        pace = measure({**shape, "hidden_size": given["hidden_size"]})
        return given["hidden_size"], pace, [f"hidden_size {given['hidden_size']} (yours): "
                                            f"{pace:,.0f} chars/s here"]
    chosen, seen = None, []
    for width in WIDTHS:
        candidate = {**shape, "hidden_size": width}
        n_weights = weights(candidate, vocab_size)
        text = train_chars / n_weights  # characters of the corpus's training text a weight
        if chosen is not None and text < TEXT_PER_WEIGHT:
            seen.append(f"{values['layers']} x {width} not measured: its text gives each weight "
                        f"{text:.2f} characters")
            break
        pace = measure(candidate)
        per_weight = pace * seconds * TRAINING_SHARE / n_weights
        seen.append(f"{values['layers']} x {width} {values['cell']} {pace:,.0f} chars/s, "
                    f"{per_weight:,.1f} a weight")
        if chosen is not None and per_weight < CHARS_PER_WEIGHT:
            break
        chosen = (width, pace, per_weight, text)
        if per_weight < CHARS_PER_WEIGHT or text < TEXT_PER_WEIGHT:  # the narrowest falls short
            break
    width, pace, per_weight, text = chosen
    return width, pace, [
        f"hidden_size {width}: the widest model whose {seconds:g} s give each weight at least "
        f"{CHARS_PER_WEIGHT:g} training characters ({per_weight:,.1f}) and whose text at least "
        f"{TEXT_PER_WEIGHT:g} ({text:,.2f}); measured here: " + "; ".join(seen)]


def _recipe(values, given, budget):
    """Batch, window, rate and warm-up from the budget's tier (RECIPES); -> the reason."""
    _, batch, window, lr, warmup = [r for r in RECIPES if budget >= r[0]][-1]
    for key, value in (("batch_size", batch), ("seq_len", window), ("lr", lr),
                       ("warmup_steps", warmup)):
        values.setdefault(key, value)
    values.setdefault("lr_min", min(values["lr"] * LR_MIN_SHARE, values["lr"]))
    yours = [k for k in ("batch_size", "seq_len", "lr", "warmup_steps", "lr_min",
                         "lr_schedule") if k in given]
    return (f"batch {values['batch_size']} x {values['seq_len']}, lr {values['lr']:g} with "
            f"{values['warmup_steps']} warm-up steps and a {values['lr_schedule']} schedule to "
            f"{values['lr_min']:g}: the recipe measured for a budget of {budget / 1e6:,.1f}M "
            f"characters" + (f" ({', '.join(yours)} yours)" if yours else ""))


def _regularizers(values, given, epochs, budget):
    """weight_drop and ema where the budget makes the model memorise its text (weight_drop only
    for a cell with hidden-to-hidden weights), the rest off; -> the reasons."""
    reasons, on = [], []
    memorises = (epochs >= REGULARIZE_FROM_EPOCHS
                 or (epochs >= REGULARIZE_LARGE_FROM_EPOCHS and budget >= LARGE_BUDGET))
    if memorises:
        for key, value in LONG_BUDGET.items():
            if key in given or (key == "weight_drop"
                                and not has_recurrent_weights(values["cell"])):
                continue
            values[key] = value
            on.append(f"{key} {value:g}")
    if on:
        reasons.append(f"{' and '.join(on)}: {epochs:,.1f} passes over the text, "
                       f"{budget / 1e6:,.1f}M characters (they paid from "
                       f"{REGULARIZE_FROM_EPOCHS:g} passes, or {REGULARIZE_LARGE_FROM_EPOCHS:g} "
                       f"over {LARGE_BUDGET / 1e6:g}M characters, docs/time.md)")
    off = [k for k in REGULARIZERS if k not in values]  # values holds the given keys too
    if off:
        reasons.append(f"{', '.join(off)} left off: "
                       + ("they cost more than they gained at these passes and budget"
                          if not memorises else "smaller gains or none, not in every seed")
                       + " (docs/time.md)")
    return reasons


def _dropout(values, given, epochs):
    """Dropout from the passes over the text the budget makes; -> the reason."""
    if "dropout" in given:
        return f"dropout {given['dropout']:g} (yours); {epochs:,.1f} passes over the text"
    rate = 0.0
    if epochs > DROPOUT_FROM_EPOCHS:
        doublings = math.log2(epochs / DROPOUT_FROM_EPOCHS)
        rate = min(DROPOUT_MAX, DROPOUT_PER_DOUBLING * (1 + doublings))
    values["dropout"] = round(rate, 2)
    return (f"dropout {values['dropout']:g}: {epochs:,.1f} passes over the training text "
            + (f"(below {DROPOUT_FROM_EPOCHS:g} dropout only slows it)" if rate == 0 else
               "(it would memorise the text)"))

