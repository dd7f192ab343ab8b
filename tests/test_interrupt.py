"""Stop requests (interrupt.py): a signal becomes a vote honoured between steps, the votes of a
group agree on one reason, the handlers go back as they were. The runs that a real Ctrl-C or
SIGTERM stops are tests/test_resume.py's and test_api.py's."""
import os
import signal

from charrnn import interrupt


def test_a_signal_is_a_vote_and_the_handlers_go_back():
    before = {s: signal.getsignal(s) for s in interrupt.SIGNALS}
    lines = []
    with interrupt.StopRequests(lines.append) as requests:
        assert requests.vote(False) == list(interrupt.NO_VOTE)
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)  # a second signal: acknowledged, not a new reason
        assert requests.vote(False) == [0, 0, 1]
        assert requests.vote(True) == [1, 0, 1]
    assert lines == ["SIGTERM: stopping after this step; saving last.npz",
                     "still stopping: waiting for last.npz to be written"]
    assert {s: signal.getsignal(s) for s in interrupt.SIGNALS} == before


def test_summed_votes_agree_on_the_first_reason():
    assert interrupt.agreed(interrupt.NO_VOTE) is None
    assert interrupt.agreed([0, 2, 1]) == "SIGINT"  # one process got each: SIGINT comes first
    assert interrupt.agreed([1, 0, 1]) == interrupt.TIME_LIMIT
    assert interrupt.agreed([0, 0, 3]) == "SIGTERM"
