"""Ctrl-C and SIGTERM during training become a request to stop, honoured between steps.

The first signal only sets a flag that the training loop reads after each step. A step is never
cut in half (its in-place update would leave the weights half changed), and the loop saves
last.npz before it returns. Later signals are acknowledged and otherwise ignored until the loop
is done, so a second Ctrl-C cannot break the save. Exit codes follow the shell: 128 + signal.

When several processes train one model, each turns what it received into a vote that the step's
collective sums, so that all stop after the same step, whichever got the signal first: the time
limit, which each process reads off its own clock, is agreed the same way.
"""
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)
TIME_LIMIT = "time limit"
# why a run may stop before a step, in a vote's order: the first that any process voted wins
SIGNAL_NAMES = tuple(s.name for s in SIGNALS)
REASONS = (TIME_LIMIT,) + SIGNAL_NAMES
NO_VOTE = (0,) * len(REASONS)


class StopRequests:
    """Context manager: while active, `signum` is the first stop signal received, else None."""

    def __init__(self, echo=None):
        self.echo = echo or (lambda text: None)
        self.signum = None
        self._previous = {}

    def vote(self, out_of_time):
        """This process's vote to stop before the next step, a count for each of REASONS:
        whether its clock says the time limit has passed, then whether each signal is the first
        it got."""
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


def agreed(votes):
    """Why the run stops, from votes (StopRequests.vote's counts summed over the processes): the
    first of REASONS that some process voted for, else None."""
    return next((reason for reason, n in zip(REASONS, votes) if n), None)
