"""The `charrnn` command line: thin Click wrappers that parse, call the library and print.

Generated text goes to stdout; progress, logs and errors go to stderr. A CharrnnError becomes
one line `Error: ...` and exit code 1 (cli_group.py); Click's usage errors exit 2.
"""
import dataclasses
import json
import sys

import click

from . import api, checkpoint, config as config_mod, corpus as corpus_mod, data, distributed, \
    evaluate, report, rundir, runtime, sample as sample_mod, training, \
    tune as tune_mod
from .cli_group import CharrnnCommands
from .errors import CharrnnError
from .loss import bits

CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.group(cls=CharrnnCommands, context_settings=CONTEXT)
@click.version_option(package_name="charrnn")
def main():
    """Character-level RNN / LSTM / GRU language models in NumPy."""


class ConfigValue(click.ParamType):
    """A `train` flag's value, converted by config.coerce: the same type check a config file's
    value gets (a wrong type is a usage error, exit 2). Ranges are checked with the whole config
    by config.validate, for a flag and a file alike (exit 1)."""

    def __init__(self, key):
        self.key = key
        self.name = config_mod.type_name(key)

    def convert(self, value, param, ctx):
        try:
            return config_mod.coerce(self.key, value)
        except CharrnnError as e:
            self.fail(str(e).replace(f"config key {self.key!r}", "it"), param, ctx)


def _train_options(f):
    """One flag per TrainConfig key, generated from the schema: name, type, choices, help, and
    the default shown in -h. Flags default to None, meaning 'from the config file or default'."""
    for f_ in reversed(dataclasses.fields(config_mod.TrainConfig)):
        meta = f_.metadata
        typ = click.Choice(meta["choices"]) if meta["choices"] else ConfigValue(f_.name)
        default = "none" if f_.default is None else f_.default
        f = click.option("--" + f_.name.replace("_", "-"), f_.name, type=typ, default=None,
                         help=f"{meta['help']}  [default: {default}]")(f)
    return f


# train runs on every rank of an MPI job, data-parallel, and so does its dry run: a `time`
# measures the paces of the processes the run would train on (Command)
@main.command(context_settings=CONTEXT, parallel=True)
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
              help="start a new run in a run directory that already holds one (its checkpoints "
                   "and log are removed)")
@_train_options
@click.pass_context
def train(ctx, corpus, config_path, dry_run, resume_path, init_path, overwrite, **overrides):
    """Train a model on CORPUS: UTF-8 text files, or folders of them (read in sorted order)."""
    if dry_run:
        return _dry_run(corpus, config_path, overrides, resume_path, init_path)
    runtime.keep_freed_memory()  # each step reuses the last step's arrays, not fresh pages
    try:
        result = api.train(list(corpus), config_path, resume=resume_path,
                               init_from=init_path, overwrite=overwrite, **overrides)
    except training.Stopped as stopped:
        last = rundir.RunDir(stopped.result.run_dir).last
        if distributed.world().leader:
            click.echo(f"interrupted at step {stopped.result.step}: saved {last}; continue with "
                       f"--resume {last}", err=True)
        ctx.exit(128 + stopped.result.stopped_by)
    if distributed.world().leader:
        click.echo(f"done: step {result.step}, best validation loss {result.best_val:.4f} "
                   f"nats/char ({bits(result.best_val):.3f} bits/char); checkpoints in "
                   f"{result.run_dir}", err=True)


def _dry_run(paths, config_path, overrides, resume_path, init_path):
    """charrnn.plan's report: with `time`, the model and recipe its rules choose and why, then
    the run's size and memory, on stdout; its warnings on stderr. Under an MPI launcher every
    rank plans (the paces are the ranks'), rank 0 prints."""
    plan = api.plan(list(paths), config_path, resume=resume_path, init_from=init_path,
                    **overrides)
    if not distributed.world().leader:
        return
    for line in plan.choices + plan.report:
        click.echo(line)
    sys.stdout.flush()  # a full disk is then the one line printed, before the notes below
    for warning in plan.warnings:
        click.echo(f"Warning: {warning}", err=True)
    click.echo("dry run: nothing was trained or written", err=True)


@main.command(context_settings=CONTEXT)
@click.option("--ckpt", required=True, type=click.Path(dir_okay=False), help="checkpoint (.npz)")
@click.option("--length", default=500, show_default=True, type=int)
@click.option("--temperature", default=1.0, show_default=True, type=float,
              help="0 picks the most likely character every time")
@click.option("--top-k", default=0, show_default=True, type=int,
              help="sample only among the K most likely characters (0 = all)")
@click.option("--top-p", default=1.0, show_default=True, type=float,
              help="sample only among the most likely characters whose probabilities add up to "
                   "P, in (0, 1]")
@click.option("--prime", default="", help="text to start from (it is printed first)")
@click.option("--prime-file", type=click.Path(dir_okay=False),
              help="start from the text of this UTF-8 file instead")
@click.option("--stop", default="", help="end a sample once it has generated this text")
@click.option("--num-samples", default=1, show_default=True, type=click.IntRange(min=1),
              help="independent samples; each is preceded by a line '=== sample K/N ===' when "
                   "N > 1")
@click.option("--seed", default=None, type=int, help="random seed (default: unpredictable)")
def sample(ckpt, length, temperature, top_k, top_p, prime, prime_file, stop, num_samples, seed):
    """Generate text from a checkpoint; the text streams to stdout."""
    if prime and prime_file:
        raise click.UsageError("--prime and --prime-file cannot be used together")
    model = api.load(ckpt)
    if prime_file:
        prime = corpus_mod.read_text(prime_file)
    rng = sample_mod.make_rng(seed)  # one generator: sample k+1 continues where k ended
    out = sys.stdout
    for k in range(num_samples):
        chars = model.stream(length, prime, temperature, top_k, top_p, stop or None, seed=rng)
        if num_samples > 1:
            out.write(f"=== sample {k + 1}/{num_samples} ===\n")
        for i, ch in enumerate(chars):
            out.write(ch)
            if ch == "\n" or i % 64 == 0:
                out.flush()
        out.write("\n")
        out.flush()


@main.command("eval", context_settings=CONTEXT)
@click.option("--ckpt", required=True, type=click.Path(dir_okay=False), help="checkpoint (.npz)")
@click.argument("textfile", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.option("--windows", type=click.IntRange(min=1), metavar="W",
              help="nanoGPT's protocol: random windows of W characters, each from a zero state "
                   "(W=256 is its shakespeare_char figure)")
@click.option("--num-windows", type=click.IntRange(min=1), metavar="K",
              help=f"with --windows: how many windows  [default: {evaluate.NUM_WINDOWS:,}]")
@click.option("--seed", type=click.IntRange(min=0), metavar="S",
              help="with --windows: which windows  [default: 0]")
@click.option("--val", "val_only", is_flag=True,
              help="score only TEXTFILE's validation split: its last val_frac (the "
                   "checkpoint's), as training split it")
def eval_cmd(ckpt, textfile, as_json, windows, num_windows, seed, val_only):
    """Loss of a checkpoint's model on TEXTFILE, from a zero state, the state carried (or, with
    --windows, the mean over random windows each scored from a zero state)."""
    if windows is None and (num_windows is not None or seed is not None):
        raise CharrnnError("--num-windows and --seed choose the windows of --windows; "
                           "give --windows W too")
    model = api.load(ckpt)
    ids = corpus_mod.load(textfile, vocab=model.vocab).ids
    if val_only:
        ids = data.split(ids, model.config.val_frac)[1]
    if windows is None:
        result = model.score(ids)
    else:
        result = model.score(ids, windows=windows,
                             num_windows=num_windows or evaluate.NUM_WINDOWS, seed=seed or 0)
    if as_json:
        click.echo(json.dumps(result))
    else:
        where = (f" in {result['num_windows']:,} random windows of {result['window']:,} "
                 f"(seed {result['seed']}), each from a zero state" if windows else "")
        click.echo(f"{result['loss_nats']:.4f} nats/char, {result['bits_per_char']:.4f} "
                   f"bits/char, perplexity {result['perplexity']:.3f}, {result['chars']:,} "
                   f"characters scored{where}")


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

    RUN is a run directory (or a file in it: its metrics.jsonl, best.npz, ...). Needs
    matplotlib: pip install 'charrnn[plot]'.
    """
    from . import plot as plot_mod
    output = plot_mod.plot_run(run, output, warn=lambda text: click.echo(text, err=True))
    click.echo(f"wrote {output}", err=True)


@main.command(context_settings=CONTEXT)
@click.option("--ckpt", required=True, type=click.Path(dir_okay=False), help="checkpoint (.npz)")
@click.argument("textfile", type=click.Path(dir_okay=False))
@click.option("-o", "--output", default="viz.html", show_default=True,
              type=click.Path(dir_okay=False), help="HTML file to write")
@click.option("--chars", default=3000, show_default=True, type=click.IntRange(min=1),
              help="show the first this many characters of TEXTFILE")
@click.option("--live", is_flag=True,
              help="also embed the weights, so the page can write text itself (up to 25 MB)")
def viz(ckpt, textfile, output, chars, live):
    """Write one self-contained HTML page of what each unit does over TEXTFILE.

    The text coloured by any unit's activation, the model's guesses at each character, the
    units that track features of the text and the gates' saturation; it works offline.
    """
    from . import viz as viz_mod
    model = api.load(ckpt)
    text = corpus_mod.read_text(textfile, what="text file")
    size = viz_mod.write_page(model, text, output, chars=chars, live=live)
    shown = f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 2**10:.0f} KB"
    click.echo(f"wrote {output} ({shown})", err=True)


@main.command("export", context_settings=CONTEXT)
@click.option("--ckpt", required=True, type=click.Path(dir_okay=False), help="checkpoint (.npz)")
@click.option("-o", "--output", required=True, type=click.Path(),
              help="the ONNX file to write (replaced whole, or left as it was)")
@click.option("--window", is_flag=True,
              help="the window graph (ids [T, N] -> logits [T, N, V]) instead of one step")
def export_cmd(ckpt, output, window):
    """Write a checkpoint's model as an ONNX file, for ONNX Runtime in any language.

    The step graph takes ids [N] and every layer's state (h0 [layers, N, H], c0 for the LSTM)
    and gives the next character's logits [N, V] and the new state (h1, c1); the vocabulary
    and the model's sizes are in its metadata (docs/export.md). Needs the onnx package: pip
    install 'charrnn[export]'.
    """
    done = api.export(ckpt, output, window=window)

    def listed(values):
        return ", ".join(f"{name} [{', '.join(map(str, shape))}]"
                         for name, shape in values.items())
    shown = f"{done.size / 2**20:.1f} MB" if done.size >= 2**20 else f"{done.size / 2**10:.0f} KB"
    click.echo(f"wrote {done.path} ({shown}), the {done.graph} graph: {listed(done.inputs)} -> "
               f"{listed(done.outputs)}", err=True)


@main.command("tune", context_settings=CONTEXT, refusal=(
    "charrnn tune runs each trial in one process; instead of mpiexec, start one `charrnn tune` "
    "per machine with a shared --storage (docs/parallel.md)"))
@click.argument("corpus", nargs=-1, type=click.Path())
@click.option("--space", type=click.Path(dir_okay=False),
              help="SPACE.yaml: fixed config keys, and searched ones (a list of choices, or "
                   "{low, high} with optional log or step)")
@click.option("--trials", type=click.IntRange(min=1),
              help="finished trials the study should have, counted over all its workers")
@click.option("--out", type=click.Path(file_okay=False),
              help="the sweep's folder: trial-NNNN/ runs, journal.log, best.yaml")
@click.option("--study", "study_name", help="study name  [default: charrnn]")
@click.option("--storage", help="an Optuna storage URL (postgresql://...) or a journal file, "
                                "shared by the workers  [default: DIR/journal.log]")
@click.option("--pruner", type=click.Choice(tune_mod.PRUNERS), default="median",
              show_default=True, help="stops hopeless trials at an evaluation")
@click.option("--pruner-startup", type=click.IntRange(min=0), default=5, show_default=True,
              help="median: complete trials before any pruning")
@click.option("--pruner-warmup", type=click.IntRange(min=0), default=0, show_default=True,
              help="steps of a trial before it may be pruned")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="seeds the sampler and each trial's run")
@click.option("--report", "report_dir", type=click.Path(file_okay=False),
              help="print the table of the sweep in this folder and write its best.yaml again; "
                   "train nothing")
@click.pass_context
def tune_cmd(ctx, corpus, space, trials, out, study_name, storage, pruner, pruner_startup,
             pruner_warmup, seed, report_dir):
    """Sweep hyperparameters with Optuna: trials on CORPUS until the study has --trials.

    Start the same command on several machines (with a shared --storage) to share one study.
    Needs Optuna: pip install 'charrnn[tune]'.
    """
    if report_dir is not None:
        if corpus or space or trials or out:
            raise click.UsageError("--report takes no CORPUS, --space, --trials or --out")
        rep = tune_mod.report(report_dir, study=study_name, storage=storage)
        tune_mod.write_best(rep, report_dir)
    else:
        missing = [name for name, v in (("CORPUS", corpus), ("--space", space),
                                        ("--trials", trials), ("--out", out)) if not v]
        if missing:
            raise click.UsageError(f"missing {', '.join(missing)} (or --report DIR)")
        try:
            rep = tune_mod.sweep(list(corpus), space, out, trials, study=study_name,
                                 storage=storage, pruner=pruner, pruner_startup=pruner_startup,
                                 pruner_warmup=pruner_warmup, seed=seed,
                                 log=lambda text: click.echo(text, err=True))
        except tune_mod.SweepStopped as stopped:
            click.echo(str(stopped), err=True)
            ctx.exit(128 + stopped.signum)
    for line in tune_mod.table_lines(rep):
        click.echo(line)
