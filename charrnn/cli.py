"""The `charrnn` command line: thin Click wrappers that parse, call the library and print.

Generated text goes to stdout; progress, logs and errors go to stderr. A CharrnnError becomes
one line `Error: ...` and exit code 1; Click's usage errors exit 2.
"""
import errno
import json
import os
import sys

import click
import numpy as np

from . import checkpoint, config as config_mod, corpus as corpus_mod, data, report, runtime
from .errors import CharrnnError
from .evaluate import score
from .loss import bits
from .sample import generate, until

CONTEXT = {"help_option_names": ["-h", "--help"]}


class _Group(click.Group):
    """Turns CharrnnError into Click's one-line error, wherever a command raises it."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CharrnnError as e:
            raise click.ClickException(str(e)) from None
        except MemoryError:
            # e.g. a hidden_size of 1e9 in a config: a user's mistake, not a crash
            raise click.ClickException("out of memory: the model, batch or corpus is too large "
                                       "for this machine") from None
        except KeyboardInterrupt:
            # Ctrl-C outside the training loop (which saves and exits by itself): nothing of
            # this command was saved; 130 as the shell would report it, not Click's 1
            click.echo("Interrupted.", err=True)
            ctx.exit(130)
        except OSError as e:
            if e.errno == errno.EPIPE:
                raise  # stdout closed early (`| head`): Click ends quietly
            # e.g. stdout redirected to a full disk. The text still buffered for stdout would
            # fail again at exit with a second message, so send it to /dev/null instead.
            _silence_stdout()
            where = f" ({e.filename})" if e.filename else ""
            raise click.ClickException(f"input/output failed{where}: {e.strerror or e}") from None


def _silence_stdout():
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # no real stdout (e.g. under a test runner): nothing will be flushed to it


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(package_name="charrnn")
def main():
    """Character-level RNN / LSTM / GRU language models in NumPy."""


def _echo_err(text):
    from tqdm import tqdm
    tqdm.write(text, file=sys.stderr)


TRAIN_FLAGS = [
    ("--out", "out", str, "run directory"),
    ("--steps", "steps", int, "total training steps (windows)"),
    ("--time-limit", "time_limit", float, "stop after this many seconds"),
    ("--cell", "cell", click.Choice(["rnn", "lstm", "gru"]), "recurrent cell"),
    ("--hidden-size", "hidden_size", int, "units per layer (H)"),
    ("--layers", "layers", int, "stacked recurrent layers"),
    ("--dropout", "dropout", float, "dropout between layers and before the output"),
    ("--batch-size", "batch_size", int, "parallel streams (N)"),
    ("--seq-len", "seq_len", int, "window length for truncated BPTT (T)"),
    ("--lr", "lr", float, "learning rate"),
    ("--optimizer", "optimizer", click.Choice(["adam", "adagrad", "sgd"]), "optimizer"),
    ("--clip", "clip", float, "gradient clipping threshold (0 = off)"),
    ("--clip-mode", "clip_mode", click.Choice(["norm", "value"]), "clip the global norm or each value"),
    ("--dtype", "dtype", click.Choice(["float32", "float64"]), "floating-point type"),
    ("--seed", "seed", int, "random seed"),
    ("--val-frac", "val_frac", float, "fraction of the corpus (its end) used for validation"),
    ("--eval-every", "eval_every", int, "evaluate and checkpoint every N steps"),
    ("--sample-length", "sample_length", int, "characters of sample shown at each evaluation"),
    ("--keep-last", "keep_last", click.IntRange(min=0),
     "also keep the N most recent periodic checkpoints RUN/step-NNNNNN.npz (0 = none)"),
    ("--eval-chars", "eval_chars", int,
     "score at most the first N validation characters at each evaluation (0 = all)"),
    ("--cache-dir", "cache_dir", str, "folder for the corpus id cache (default ~/.cache/charrnn)"),
    ("--lr-schedule", "lr_schedule", click.Choice(["constant", "cosine", "step"]),
     "learning-rate schedule after warmup"),
    ("--warmup-steps", "warmup_steps", int, "ramp the learning rate up linearly over N steps"),
    ("--lr-min", "lr_min", float, "cosine: the learning rate reached at --steps"),
    ("--lr-decay", "lr_decay", float, "step: multiply the learning rate by this ..."),
    ("--lr-decay-every", "lr_decay_every", int, "step: ... every N steps"),
    ("--patience", "patience", int,
     "stop after N evaluations without a better validation loss (0 = never)"),
]


def _train_options(f):
    for flag, dest, typ, help_text in reversed(TRAIN_FLAGS):
        f = click.option(flag, dest, type=typ, default=None, help=help_text)(f)
    return f


@main.command(context_settings=CONTEXT)
@click.argument("corpus", nargs=-1, required=True, type=click.Path())
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="YAML config file; flags override it")
@click.option("--dry-run", is_flag=True,
              help="print the model size, batches per epoch and a memory estimate; train nothing")
@click.option("--resume", "resume_path", type=click.Path(dir_okay=False),
              help="continue the run that saved this checkpoint, in its folder")
@click.option("--init-from", "init_path", type=click.Path(dir_okay=False),
              help="start a new run from this checkpoint's weights (fine-tuning)")
@click.option("--overwrite", is_flag=True,
              help="start a new run in a run directory that already holds one")
@_train_options
@click.pass_context
def train(ctx, corpus, config_path, dry_run, resume_path, init_path, overwrite, **overrides):
    """Train a model on CORPUS: UTF-8 text files, or folders of them (read in sorted order)."""
    from . import resume as resume_mod
    from .train import train as run_training
    if resume_path and init_path:
        raise click.UsageError("--resume and --init-from cannot be used together")
    ck = None
    if resume_path:
        ck, cfg = resume_mod.for_resume(resume_path, config_path, overrides)
    elif init_path:
        ck, cfg = resume_mod.for_init(init_path, config_path, overrides)
    else:
        cfg = config_mod.load(config_path, overrides)
    vocab = ck.vocab if ck else None
    if dry_run:
        return _dry_run(cfg, corpus, vocab)
    last = os.path.join(cfg.out, "last.npz")
    if not resume_path and not overwrite and os.path.exists(last):
        # a second `charrnn train` with the same --out must not silently replace a finished run
        raise CharrnnError(f"{cfg.out} already holds a run ({last}); continue it with "
                           f"--resume {last}, choose another --out, or pass --overwrite")
    text = corpus_mod.open_corpus(corpus, cfg.cache_dir, vocab=vocab, progress=True)
    if resume_path:
        resume_mod.check_corpus(ck, text, resume_path)
        _echo_err(resume_mod.describe(ck, cfg))
    runtime.keep_freed_memory()  # each step reuses the last step's arrays, not fresh pages
    run = run_training(cfg, text, resume=ck if resume_path else None,
                       init_from=ck if init_path else None, echo=_echo_err)
    if run.stopped_by is not None:
        last = os.path.join(cfg.out, "last.npz")
        click.echo(f"interrupted at step {run.step}: saved {last}; continue with "
                   f"--resume {last}", err=True)
        ctx.exit(128 + run.stopped_by)
    best = min(run.best_val, run.last_val)
    click.echo(f"done: step {run.step}, best validation loss {best:.4f} nats/char "
               f"({bits(best):.3f} bits/char); checkpoints in {cfg.out}", err=True)


def _dry_run(cfg, paths, vocab):
    """The first corpus pass only (nothing is cached), then the report on stdout."""
    sc = corpus_mod.scan(paths, progress=True)
    if vocab is not None:
        corpus_mod.check_vocab(sc, vocab)
    est = report.estimate(cfg, sc.chars, len(vocab or sc.vocab))
    for line in report.dry_run_lines(cfg, est, sc.source):
        click.echo(line)
    for warning in report.warnings(cfg, est):
        click.echo(f"Warning: {warning}", err=True)
    click.echo("dry run: nothing was trained or written", err=True)


@main.command(context_settings=CONTEXT)
@click.option("--ckpt", required=True, type=click.Path(dir_okay=False), help="checkpoint (.npz)")
@click.option("--length", default=500, show_default=True, type=click.IntRange(min=0))
@click.option("--temperature", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="0 picks the most likely character every time")
@click.option("--top-k", default=0, show_default=True, type=click.IntRange(min=0),
              help="sample only among the K most likely characters (0 = all)")
@click.option("--top-p", default=1.0, show_default=True,
              type=click.FloatRange(0, 1, min_open=True),
              help="sample only among the most likely characters whose probabilities add up to P")
@click.option("--prime", default="", help="text to start from (it is printed first)")
@click.option("--prime-file", type=click.Path(dir_okay=False),
              help="start from the text of this UTF-8 file instead")
@click.option("--stop", default="", help="end a sample once it has generated this text")
@click.option("--num-samples", default=1, show_default=True, type=click.IntRange(min=1),
              help="independent samples; each is preceded by a line '=== sample K/N ===' when N > 1")
@click.option("--seed", default=None, type=int, help="random seed (default: unpredictable)")
def sample(ckpt, length, temperature, top_k, top_p, prime, prime_file, stop, num_samples, seed):
    """Generate text from a checkpoint; the text streams to stdout."""
    if prime and prime_file:
        raise click.UsageError("--prime and --prime-file cannot be used together")
    ck = checkpoint.load(ckpt)
    if prime_file:
        prime = corpus_mod.read_text(prime_file)
    prime_ids = data.encode(prime, ck.vocab) if prime else np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    out = sys.stdout
    for k in range(num_samples):
        if num_samples > 1:
            out.write(f"=== sample {k + 1}/{num_samples} ===\n")
        out.write(prime)
        chars = generate(ck.params, ck.spec, ck.vocab, length, rng, temperature=temperature,
                         top_k=top_k, top_p=top_p, prime=prime_ids)
        for i, ch in enumerate(until(chars, stop) if stop else chars):
            out.write(ch)
            if ch == "\n" or i % 64 == 0:
                out.flush()
        out.write("\n")
        out.flush()


@main.command("eval", context_settings=CONTEXT)
@click.option("--ckpt", required=True, type=click.Path(dir_okay=False), help="checkpoint (.npz)")
@click.argument("textfile", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def eval_cmd(ckpt, textfile, as_json):
    """Loss of a checkpoint's model on TEXTFILE, from a zero state."""
    ck = checkpoint.load(ckpt)
    text = corpus_mod.load(textfile, vocab=ck.vocab)
    total, n = score(ck.params, ck.spec, text.ids)
    if n == 0:
        raise CharrnnError(f"{textfile} is too short to score (it needs at least 2 characters)")
    nats = total / n
    result = {"loss_nats": nats, "bits_per_char": bits(nats), "perplexity": float(np.exp(nats)),
              "chars": n}
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"{nats:.4f} nats/char, {bits(nats):.4f} bits/char, perplexity "
                   f"{result['perplexity']:.3f}, {n:,} characters scored")


@main.command(context_settings=CONTEXT)
@click.argument("ckpt", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def info(ckpt, as_json):
    """What the checkpoint CKPT holds: model, vocabulary, progress, best validation loss."""
    summary = report.checkpoint_info(checkpoint.load(ckpt))
    if as_json:
        click.echo(json.dumps(summary))
    else:
        for line in report.info_lines(summary):
            click.echo(line)


@main.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="PNG file to write  [default: RUN/loss.png]")
def plot(run, output):
    """Plot a run's train and validation loss against characters seen, as a PNG.

    RUN is a run directory (or its metrics.jsonl). Needs matplotlib: pip install 'charrnn[plot]'.
    """
    from . import plot as plot_mod
    records = plot_mod.read_metrics(run)
    run_dir = run if os.path.isdir(run) else os.path.dirname(run) or "."
    output = output or os.path.join(run_dir, "loss.png")
    plot_mod.plot_losses(records, output, title=os.path.basename(os.path.abspath(run_dir)))
    click.echo(f"wrote {output}", err=True)
