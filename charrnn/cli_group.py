"""The Click group every `charrnn` command runs in: where an error becomes one line `Error: ...`
and an exit code (a usage error 2, a CharrnnError or an out-of-memory 1, Ctrl-C outside training
130, a failed write to a full disk or a closed stdout 1), and where the one rule for a command
under an MPI launcher is applied (Command): train on every rank (its dry run too), tune
refused, any other on rank 0 alone, the other ranks quiet."""
import errno
import io
import os
import sys

import click

from . import distributed
from .errors import CharrnnError


class _ClosedStream(io.TextIOBase):
    """sys.stdout when file descriptor 1 was closed (`>&-`), where Python sets it to None and
    every write would vanish or fail as an AttributeError: a write is the OSError a closed
    descriptor gives, which ends the command with one line like any other failed write."""

    def writable(self):
        return True

    def write(self, text):
        raise OSError(errno.EBADF, "standard output is closed")


class Command(click.Command):
    """A charrnn command, run under an MPI launcher by the one rule of
    distributed.single_process: on rank 0 alone, the other ranks waiting for it (until
    distributed.leader_done) and ending with exit code 0; unless `parallel`, a command every
    rank runs (train, data-parallel), or `refusal`, the line with which the command refuses to
    run under a launcher."""

    def __init__(self, *args, parallel=False, refusal=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.parallel, self.refusal = parallel, refusal

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            e.ctx = e.ctx or ctx  # the parser's own errors (a flag without its value) name none
            raise

    def invoke(self, ctx):
        # after parsing, so every rank meets a usage error alike (CharrnnCommands.main)
        if self.parallel:
            return super().invoke(ctx)
        if not distributed.single_process(self.refusal):
            return None
        try:
            return super().invoke(ctx)
        finally:
            distributed.leader_done()


class UsageLine(click.UsageError):
    """A usage error (an unknown flag, a missing argument, a value of the wrong type) shown as
    one line, `Error: <Click's message> (see 'charrnn CMD -h')`, in place of Click's usage
    block; the exit code stays Click's 2."""

    def show(self, file=None):
        path = self.ctx.command_path if self.ctx is not None else "charrnn"
        click.echo(f"Error: {self.format_message()} (see '{path} -h')", file=file, err=True)


def _one_line(e):
    """e as a UsageLine; `charrnn CMD` with no arguments, which shows the help, left as it is."""
    if isinstance(e, getattr(click.exceptions, "NoArgsIsHelpError", ())):
        return e
    return UsageLine(e.format_message(), e.ctx)


class CharrnnCommands(click.Group):
    """Turns CharrnnError into Click's one-line error and every usage error into one line
    (UsageLine), wherever a command raises them."""

    command_class = Command

    def make_context(self, *args, **kwargs):
        try:  # the group's own options: `charrnn --bogus`
            return super().make_context(*args, **kwargs)
        except click.UsageError as e:
            raise _one_line(e) from None

    def main(self, *args, standalone_mode=True, **kwargs):
        if sys.stdout is None:
            sys.stdout = _ClosedStream()
        try:
            if not standalone_mode or distributed.launcher_rank() == 0:
                return super().main(*args, standalone_mode=standalone_mode, **kwargs)
            # another rank of an MPI job: rank 0 shows usage errors, this one exits with their
            # code. What rank 0 prints to stdout is the job's (--help, --version, a report);
            # no other rank's stdout may add to it.
            sys.stdout = open(os.devnull, "w", encoding="utf-8")
            try:
                code = super().main(*args, standalone_mode=False, **kwargs)
            except click.ClickException as e:
                sys.exit(e.exit_code)
            except click.exceptions.Abort:
                sys.exit(1)
            sys.exit(code if isinstance(code, int) else 0)
        except OSError as e:  # a write before any command ran: --version, --help
            if e.errno == errno.EPIPE:
                raise
            click.echo(f"Error: {_io_error(e)}", err=True)
            sys.exit(1)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as e:  # a command's name, its arguments, or its own checks
            raise _one_line(e) from None
        except distributed.GroupError as e:
            if not e.shown:  # another rank of an MPI job reports it: once is enough
                ctx.exit(1)
            raise click.ClickException(str(e)) from None
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
            raise click.ClickException(_io_error(e)) from None


def _io_error(e):
    """The one line for a failed write or read: stdout closed (`>&-`), or e.g. redirected to a
    full disk. The text still buffered for stdout would fail again at exit with a second
    message, so it is sent to /dev/null first."""
    if e.errno == errno.EBADF and isinstance(sys.stdout, _ClosedStream):
        return "cannot write to standard output: it is closed (>&-); redirect it to a file instead"
    _silence_stdout()
    where = f" ({e.filename})" if e.filename else ""
    return f"input/output failed{where}: {e.strerror or e}"


def _silence_stdout():
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # no real stdout (e.g. under a test runner): nothing will be flushed to it
