"""Ctrl-C and SIGTERM during training become a request to stop, honoured between steps.

The first signal only sets a flag that the training loop reads after each step. A step is never
cut in half (its in-place update would leave the weights half changed), and the loop saves
last.npz before it returns. Later signals are acknowledged and otherwise ignored until the loop
is done, so a second Ctrl-C cannot break the save. Exit codes follow the shell: 128 + signal.

When several processes train one model, each turns what it received into votes that the step's
collective sums, so that all stop after the same step, whichever got the signal first.
"""
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """Context manager: while active, `signum` is the first stop signal received, else None."""

    def __init__(self, echo=None):
        self.echo = echo or (lambda text: None)
        self.signum = None
        self._previous = {}

    def votes(self, out_of_time):
        """This process's votes to stop before the next step: whether its clock says the time
        limit has passed, then, for each of SIGNALS, whether it is the first signal it got."""
        return [int(out_of_time)] + [int(self.signum == s) for s in SIGNALS]

    def _handle(self, signum, frame):
        if self.signum is None:
            self.signum = signum
            self.echo(f"{signal.Signals(signum).name}: stopping after this step; "
                      f"saving last.npz")
        else:
            self.echo("still stopping: waiting for last.npz to be written")

    def __enter__(self):
        # signal handlers can only be set from the main thread; elsewhere nothing is caught
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            # None: the handler was set outside Python, which cannot be put back; use the default
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        self._previous = {}
        return False


def voted_signal(votes):
    """The first of SIGNALS that some process voted with (votes as StopRequests.votes gives
    them, summed over the processes), else None."""
    if votes is None:
        return None
    return next((s for s, n in zip(SIGNALS, votes[1:]) if n), None)
